//! Aligned text tables in the style of `kubectl get`: upper-case headers, columns
//! left-aligned and separated by three spaces, no trailing padding.

/// A table under construction.
#[derive(Debug, Clone, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Self {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row; missing cells are blank, extra cells are dropped. Cells come from the
    /// bundle: they are made inert ([`crate::inert::terminal`]) before widths are measured.
    pub fn row(&mut self, cells: Vec<String>) {
        let mut cells: Vec<String> = cells
            .into_iter()
            .map(|c| match crate::inert::terminal(&c) {
                // A tab would break the alignment: shown as `cat -vT` does.
                std::borrow::Cow::Borrowed(_) if !c.contains('\t') => c,
                other => other.replace('\t', "^I"),
            })
            .collect();
        cells.resize(self.headers.len(), String::new());
        self.rows.push(cells);
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Renders the table (header included), one line per row, each ending in `\n`.
    pub fn render(&self) -> String {
        let n = self.headers.len();
        let mut width = vec![0usize; n];
        for r in std::iter::once(&self.headers).chain(&self.rows) {
            for (i, c) in r.iter().enumerate() {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let mut out = String::new();
        for r in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, c) in r.iter().enumerate() {
                line.push_str(c);
                if i + 1 < n {
                    let pad = width[i] - c.chars().count() + 3;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `-` for an absent value.
pub fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// kubectl's `HumanDuration` (k8s.io/apimachinery/pkg/util/duration), used for AGE.
pub fn human_duration(d: chrono::Duration) -> String {
    let secs = d.num_seconds();
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_without_trailing_space() {
        let mut t = Table::new(&["NAME", "IP"]);
        t.row(vec!["a".into(), "10.0.0.1".into()]);
        t.row(vec!["longer-name".into(), String::new()]);
        assert_eq!(
            t.render(),
            "NAME          IP\na             10.0.0.1\nlonger-name\n"
        );
    }

    #[test]
    fn cells_are_inert_and_aligned() {
        let mut t = Table::new(&["NAME", "IP"]);
        t.row(vec!["e\x1b[2J\r\t".into(), "1".into()]);
        t.row(vec!["b".into(), "2".into()]);
        assert_eq!(
            t.render(),
            "NAME         IP\ne^[[2J^M^I   1\nb            2\n"
        );
    }

    #[test]
    fn kubectl_ages() {
        let d = chrono::Duration::seconds;
        assert_eq!(human_duration(d(59)), "59s");
        assert_eq!(human_duration(d(22 * 60)), "22m");
        assert_eq!(human_duration(d(5 * 60 + 3)), "5m3s");
        assert_eq!(human_duration(d(6 * 86400)), "6d");
        assert_eq!(human_duration(d(6 * 86400 + 3600)), "6d1h");
        assert_eq!(human_duration(d(15 * 86400)), "15d");
        assert_eq!(human_duration(d(-5)), "<invalid>");
    }
}

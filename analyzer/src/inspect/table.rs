//! Aligned text tables in the style of `kubectl get`: upper-case headers, columns
//! left-aligned and separated by three spaces, no trailing padding.
//!
//! On a terminal a table fits its width ([`with_max_width`]): the widest columns are
//! shortened first (cells cut with `…`), never below their header or 8 characters;
//! `-o wide` and pipes get every cell whole.

use std::cell::Cell;

thread_local! {
    /// The width tables rendered on this thread must fit, if any.
    static MAX_WIDTH: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Runs `f` with tables fitted to `width` columns (None: no limit).
pub fn with_max_width<T>(width: Option<usize>, f: impl FnOnce() -> T) -> T {
    let before = MAX_WIDTH.with(|w| w.replace(width));
    let out = f();
    MAX_WIDTH.with(|w| w.set(before));
    out
}

/// Narrowest a shortened column gets (or its header, when longer).
const MIN_COLUMN: usize = 8;

/// A table under construction.
#[derive(Debug, Clone, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
    /// Columns dropped first, in this order, when the table does not fit.
    droppable: Vec<usize>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Self {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
            droppable: Vec::new(),
        }
    }

    /// Names the least important columns, dropped in this order when the table does not
    /// fit its width (before any column is shortened); `-o wide` keeps them.
    pub fn drop_first(&mut self, headers: &[&str]) {
        self.droppable = headers
            .iter()
            .filter_map(|h| self.headers.iter().position(|x| x == h))
            .collect();
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

    /// Renders the table (header included), one line per row, each ending in `\n`, fitted
    /// to the width [`with_max_width`] set, if any.
    pub fn render(&self) -> String {
        self.render_width(MAX_WIDTH.with(Cell::get))
    }

    /// Renders the table fitted to `max` columns (None: every cell whole).
    pub fn render_width(&self, max: Option<usize>) -> String {
        let mut keep: Vec<usize> = (0..self.headers.len()).collect();
        if let Some(max) = max {
            let natural: Vec<usize> = keep
                .iter()
                .map(|&i| {
                    std::iter::once(&self.headers)
                        .chain(&self.rows)
                        .map(|r| r[i].chars().count())
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let total = |keep: &[usize]| {
                keep.iter().map(|&i| natural[i]).sum::<usize>() + 3 * keep.len().saturating_sub(1)
            };
            for d in &self.droppable {
                if total(&keep) <= max {
                    break;
                }
                keep.retain(|i| i != d);
            }
        }
        if keep.len() < self.headers.len() {
            let mut t = Table::new(&[]);
            t.headers = keep.iter().map(|&i| self.headers[i].clone()).collect();
            t.rows = self
                .rows
                .iter()
                .map(|r| keep.iter().map(|&i| r[i].clone()).collect())
                .collect();
            return t.shorten_to(max);
        }
        self.shorten_to(max)
    }

    /// Renders with every column kept, the widest shortened to fit `max`.
    fn shorten_to(&self, max: Option<usize>) -> String {
        let n = self.headers.len();
        let mut width = vec![0usize; n];
        for r in std::iter::once(&self.headers).chain(&self.rows) {
            for (i, c) in r.iter().enumerate() {
                width[i] = width[i].max(c.chars().count());
            }
        }
        if let Some(max) = max {
            let floor: Vec<usize> = self
                .headers
                .iter()
                .map(|h| h.chars().count().max(MIN_COLUMN))
                .collect();
            // Shorten the widest column (the rightmost of equals) until the table fits or
            // every column is at its floor.
            loop {
                let total: usize = width.iter().sum::<usize>() + 3 * n.saturating_sub(1);
                if total <= max {
                    break;
                }
                let Some(i) = (0..n)
                    .filter(|&i| width[i] > floor[i])
                    .max_by_key(|&i| (width[i], i))
                else {
                    break;
                };
                let second = (0..n)
                    .filter(|&j| j != i)
                    .map(|j| width[j])
                    .max()
                    .unwrap_or(0);
                let cut = (total - max).min(width[i] - floor[i]);
                // Down to the next widest at most, so wide columns share the cut.
                let cut = cut.min(width[i].saturating_sub(second).max(1));
                width[i] -= cut;
            }
        }
        let cell = |c: &str, w: usize| -> String {
            if c.chars().count() > w {
                let mut s: String = c.chars().take(w.saturating_sub(1)).collect();
                s.push('…');
                s
            } else {
                c.to_string()
            }
        };
        let mut out = String::new();
        for r in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, c) in r.iter().enumerate() {
                let c = cell(c, width[i]);
                line.push_str(&c);
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
    fn tables_fit_the_width_by_shortening_the_widest_columns() {
        let mut t = Table::new(&["NAME", "IP", "COMMANDS"]);
        t.row(vec![
            "coredns-7db6d8ff4d-x8k2p".into(),
            "10.244.1.5".into(),
            "/coredns -conf /etc/coredns/Corefile -dns.port 53".into(),
        ]);
        let whole = t.render_width(None);
        assert!(whole.lines().any(|l| l.chars().count() > 60), "{whole}");
        let fit = t.render_width(Some(60));
        for l in fit.lines() {
            assert!(l.chars().count() <= 60, "{l:?} in\n{fit}");
        }
        assert!(
            fit.contains("10.244.1.5"),
            "narrow columns kept whole: {fit}"
        );
        assert!(fit.contains('…'), "{fit}");
        // Too narrow for anything: columns stop at their floor.
        let tight = t.render_width(Some(10));
        assert!(
            tight
                .lines()
                .all(|l| l.chars().count() <= 8 + 3 + 10 + 3 + 8),
            "{tight}"
        );
        assert_eq!(with_max_width(Some(60), || t.render()), fit);
        assert_eq!(t.render(), whole);
        // Least important columns go first, whole; the rest stay untouched if that fits.
        t.drop_first(&["IP"]);
        let dropped = t.render_width(Some(78));
        assert!(!dropped.contains("10.244.1.5"), "{dropped}");
        assert!(
            dropped.contains("/coredns -conf /etc/coredns/Corefile -dns.port 53"),
            "{dropped}"
        );
        assert_eq!(t.render_width(None), whole, "no limit, nothing dropped");
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

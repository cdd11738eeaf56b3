//! The text rendering of an analysis report: findings with their evidence, what was not
//! evaluated and why, the checks that passed; colour only on request.

use std::fmt::Write as _;

use crate::analyze::*;
use crate::inert::terminal as inert;
use crate::rules::Severity;

/// Longest evidence line the text, Markdown and HTML reports show (characters); JSON keeps
/// the whole line.
pub(crate) const MAX_EVIDENCE_TEXT: usize = 240;

/// An evidence line for the human formats: `[node] path:line: text`, the text cut at
/// [`MAX_EVIDENCE_TEXT`] characters (JSON keeps it whole).
pub(crate) fn evidence_line(e: &Evidence) -> String {
    let line = match (e.line, &e.text) {
        (Some(l), Some(t)) if t.chars().count() > MAX_EVIDENCE_TEXT => {
            let cut: String = t.chars().take(MAX_EVIDENCE_TEXT).collect();
            format!("{}:{l}: {cut}…", e.path)
        }
        (Some(l), Some(t)) => format!("{}:{l}: {t}", e.path),
        (Some(l), None) => format!("{}:{l}", e.path),
        (None, _) => e.path.clone(),
    };
    match &e.node {
        Some(n) => format!("[{n}] {line}"),
        None => line,
    }
}

struct Style {
    on: bool,
}

impl Style {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn severity(&self, sev: Severity) -> String {
        let label = sev.as_str().to_uppercase();
        let code = match sev {
            Severity::Critical => "1;35",
            Severity::Error => "1;31",
            Severity::Warning => "1;33",
            Severity::Info => "1;36",
        };
        self.paint(code, &label)
    }
}

pub(crate) fn counts_line(r: &Report) -> String {
    let s = &r.summary;
    let shown = r.findings.len();
    let total = s.critical + s.error + s.warning + s.info;
    let aggregated = if total == shown {
        String::new()
    } else {
        format!(" (shown as {shown}: more than {AGGREGATE_ABOVE} of one rule are aggregated)")
    };
    let rule_errors = if s.rule_errors == 0 {
        String::new()
    } else {
        format!("; {} rule error(s)", s.rule_errors)
    };
    format!(
        "{total} finding(s){aggregated}: {} critical, {} error, {} warning, {} info; {} rule evaluation(s) skipped for missing data{rule_errors}",
        s.critical, s.error, s.warning, s.info, s.not_evaluated
    )
}

/// The "and N more" line of an aggregated finding.
pub(crate) fn aggregate_line(a: &Aggregate) -> String {
    let more = a.count.saturating_sub(a.first_subjects.len());
    format!(
        "{} in all; first {}: {}{}",
        a.count,
        a.first_subjects.len(),
        a.first_subjects.join(", "),
        if more > 0 {
            format!(" (and {more} more)")
        } else {
            String::new()
        }
    )
}

/// Renders the text report; `color` enables ANSI colours. Every string from the bundle is
/// made inert ([`crate::inert::terminal`]): only the report's own colours reach the terminal.
pub fn render_text(r: &Report, color: bool) -> String {
    let st = Style { on: color };
    let mut out = String::new();
    if let Some(c) = &r.cluster {
        out.push_str(&super::cluster::render_text(c, color));
    }
    for b in r.bundles.iter().filter(|_| r.cluster.is_none()) {
        let _ = writeln!(
            out,
            "{} {}  captured {}  kernel {}  kube-proxy mode {}",
            st.paint("1", "node"),
            st.paint("1", &inert(&b.node)),
            inert(&b.captured_at),
            inert(&b.kernel),
            inert(&b.proxy_mode)
        );
    }
    let _ = writeln!(out, "{}\n", counts_line(r));
    let multi = r.bundles.len() > 1;
    for sev in Severity::ALL_DESC {
        let group: Vec<&Finding> = r.findings.iter().filter(|f| f.severity == sev).collect();
        if group.is_empty() {
            continue;
        }
        let _ = writeln!(out, "{} ({})", st.severity(sev), group.len());
        for f in group {
            let node = if multi {
                super::cluster::node_tag(&f.node)
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "  {} {}{node}",
                st.paint("1", &format!("{}:", inert(&f.rule_id))),
                inert(&f.subject)
            );
            let _ = writeln!(out, "    {}", inert(&f.message));
            if let Some(a) = &f.aggregate {
                let _ = writeln!(out, "    subjects: {}", inert(&aggregate_line(a)));
            }
            for e in &f.evidence {
                let _ = writeln!(
                    out,
                    "    {} {}",
                    st.paint("2", "|"),
                    inert(&evidence_line(e))
                );
            }
            let _ = writeln!(out, "    fix: {}", inert(&one_line(&f.remediation)));
            let _ = writeln!(out);
        }
    }
    if r.findings.is_empty() {
        let _ = writeln!(out, "No findings.\n");
    }
    if !r.not_evaluated.is_empty() {
        let _ = writeln!(out, "{}", st.paint("1", "Not evaluated (missing data):"));
        for n in &r.not_evaluated {
            let node = if multi {
                super::cluster::node_tag(&n.node)
            } else {
                String::new()
            };
            let _ = writeln!(out, "  {}{node}: {}", inert(&n.rule_id), inert(&n.reason));
        }
        let _ = writeln!(out);
    }
    if !r.rule_errors.is_empty() {
        let _ = writeln!(
            out,
            "{}",
            st.paint("1", "Rule errors (the rule failed, no answer):")
        );
        for n in &r.rule_errors {
            let node = if multi {
                super::cluster::node_tag(&n.node)
            } else {
                String::new()
            };
            let _ = writeln!(out, "  {}{node}: {}", inert(&n.rule_id), inert(&n.reason));
        }
        let _ = writeln!(out);
    }
    if !r.partial_data.is_empty() {
        let _ = writeln!(
            out,
            "{}",
            st.paint(
                "1",
                "Evaluated on partial data (no finding is not a clean bill):"
            )
        );
        for n in &r.partial_data {
            let node = if multi {
                super::cluster::node_tag(&n.node)
            } else {
                String::new()
            };
            let _ = writeln!(out, "  {}{node}: {}", n.rule_id, n.reason);
        }
        let _ = writeln!(out);
    }
    if !r.unparsed_artifacts.is_empty() {
        let _ = writeln!(out, "{}", st.paint("1", "Lines not understood:"));
        for u in &r.unparsed_artifacts {
            let node = if multi {
                format!(" [node {}]", u.node)
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "  {}{node}: {} of {} line(s), first at line {}: {}",
                u.path, u.unparsed, u.lines, u.first_line, u.reason
            );
        }
        let _ = writeln!(out);
    }
    if !r.skipped.is_empty() {
        let _ = writeln!(out, "{}", st.paint("1", "Skipped on purpose:"));
        for c in &r.skipped {
            let _ = writeln!(
                out,
                "  {} {}{}",
                inert(&c.node),
                inert(&c.path),
                if c.reason.is_empty() {
                    String::new()
                } else {
                    format!(": {}", inert(&c.reason))
                }
            );
        }
        let _ = writeln!(out);
    }
    if !r.collection_errors.is_empty() {
        let _ = writeln!(out, "{}", st.paint("1", "Collection errors:"));
        for c in &r.collection_errors {
            let _ = writeln!(
                out,
                "  {} {} ({}){}",
                inert(&c.node),
                inert(&c.path),
                inert(&c.status),
                if c.reason.is_empty() {
                    String::new()
                } else {
                    format!(": {}", inert(&c.reason))
                }
            );
        }
    }
    out
}

pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

//! The Markdown rendering of an analysis report (every bundle-controlled string escaped).

use std::fmt::Write as _;

use crate::analyze::*;
use crate::inert::{markdown as md_escape, markdown_code_block, terminal as inert};
use crate::rules::Severity;

use super::text::*;

/// A rule id or artifact path as a code span (ids are kebab-case and paths come from the
/// manifest; the escaper still guards against a backtick).
fn md_code(s: &str) -> String {
    let s = inert(s);
    if s.contains(['`', '|']) {
        md_escape(&s)
    } else {
        format!("`{s}`")
    }
}

/// Renders the Markdown report (to paste into a ticket). Every string from the bundle (or a
/// rule file) goes through [`crate::inert::markdown`]; evidence lines sit in a code block
/// whose fence they cannot close.
pub fn render_markdown(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# netsnap analysis\n");
    if let Some(c) = &r.cluster {
        out.push_str(&super::cluster::render_markdown(c, &r.findings));
    } else {
        let _ = writeln!(
            out,
            "| node | captured | kernel | kube-proxy mode |\n|---|---|---|---|"
        );
    }
    for b in r.bundles.iter().filter(|_| r.cluster.is_none()) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            md_escape(&b.node),
            md_escape(&b.captured_at),
            md_escape(&b.kernel),
            md_escape(&b.proxy_mode)
        );
    }
    let _ = writeln!(out, "\n{}\n", md_escape(&counts_line(r)));
    for sev in Severity::ALL_DESC {
        let group: Vec<&Finding> = r.findings.iter().filter(|f| f.severity == sev).collect();
        if group.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "## {} ({})\n",
            sev.as_str().to_uppercase(),
            group.len()
        );
        for f in group {
            let _ = writeln!(
                out,
                "### {} {} ({})\n",
                md_code(&f.rule_id),
                md_escape(&f.subject),
                if f.node == crate::analyze::cluster::CLUSTER_NODE {
                    "cluster".to_string()
                } else {
                    format!("node {}", md_escape(&f.node))
                }
            );
            let _ = writeln!(out, "{}\n", md_escape(&f.message));
            if let Some(a) = &f.aggregate {
                let _ = writeln!(out, "Subjects: {}\n", md_escape(&aggregate_line(a)));
            }
            if !f.evidence.is_empty() {
                let lines: Vec<String> = f.evidence.iter().map(evidence_line).collect();
                let _ = writeln!(out, "{}", markdown_code_block("text", &lines));
            }
            let _ = writeln!(out, "**Fix:** {}\n", md_escape(&one_line(&f.remediation)));
            let refs: Vec<String> = f
                .references
                .iter()
                .map(|u| {
                    let safe = u.starts_with("https://") || u.starts_with("http://");
                    if safe && !u.chars().any(|c| c.is_whitespace() || "<>`".contains(c)) {
                        format!("<{}>", inert(u))
                    } else {
                        md_escape(u)
                    }
                })
                .collect();
            let _ = writeln!(out, "References: {}\n", refs.join(", "));
        }
    }
    if !r.not_evaluated.is_empty() {
        let _ = writeln!(
            out,
            "## Not evaluated\n\n| node | rule | reason |\n|---|---|---|"
        );
        for n in &r.not_evaluated {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                md_escape(&n.node),
                md_code(&n.rule_id),
                md_escape(&n.reason)
            );
        }
        let _ = writeln!(out);
    }
    if !r.rule_errors.is_empty() {
        let _ = writeln!(
            out,
            "## Rule errors\n\n| node | rule | error |\n|---|---|---|"
        );
        for n in &r.rule_errors {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                md_escape(&n.node),
                md_code(&n.rule_id),
                md_escape(&n.reason)
            );
        }
        let _ = writeln!(out);
    }
    if !r.partial_data.is_empty() {
        let _ = writeln!(
            out,
            "## Evaluated on partial data\n\n| node | rule | what was missing |\n|---|---|---|"
        );
        for n in &r.partial_data {
            let _ = writeln!(
                out,
                "| {} | `{}` | {} |",
                md_escape(&n.node),
                n.rule_id,
                md_escape(&n.reason)
            );
        }
        let _ = writeln!(out);
    }
    if !r.unparsed_artifacts.is_empty() {
        let _ = writeln!(
            out,
            "## Lines not understood\n\n| node | artifact | lines not understood | first |\n|---|---|---|---|"
        );
        for u in &r.unparsed_artifacts {
            let _ = writeln!(
                out,
                "| {} | `{}` | {} of {} | line {}: {} |",
                md_escape(&u.node),
                u.path,
                u.unparsed,
                u.lines,
                u.first_line,
                md_escape(&u.reason)
            );
        }
        let _ = writeln!(out);
    }
    if !r.skipped.is_empty() {
        let _ = writeln!(
            out,
            "## Skipped on purpose\n\n| node | artifact | why |\n|---|---|---|"
        );
        for c in &r.skipped {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                md_escape(&c.node),
                md_code(&c.path),
                md_escape(&c.reason)
            );
        }
        let _ = writeln!(out);
    }
    if !r.collection_errors.is_empty() {
        let _ = writeln!(
            out,
            "## Collection errors\n\n| node | artifact | status | reason |\n|---|---|---|---|"
        );
        for c in &r.collection_errors {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                md_escape(&c.node),
                md_code(&c.path),
                md_escape(&c.status),
                md_escape(&c.reason)
            );
        }
    }
    out
}

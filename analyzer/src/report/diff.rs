//! Renderings of a [`Diff`]: text for a terminal, Markdown for a ticket (JSON is the
//! serde form). Every string from a bundle goes through [`crate::inert`].

use std::fmt::Write as _;

use crate::diff::{Diff, FindingRef};
use crate::inert::{markdown as md, terminal};

fn val(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "(absent)".to_string())
}

fn finding_line(f: &FindingRef) -> String {
    format!(
        "{} {} [{}]: {}",
        f.rule_id,
        f.subject,
        f.severity.as_str(),
        f.message.split_whitespace().collect::<Vec<_>>().join(" ")
    )
}

/// The diff as plain text, one change per line.
pub fn render_text(d: &Diff) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "A: {} (node {}, captured {})\nB: {} (node {}, captured {})",
        terminal(&d.a.path),
        terminal(&d.a.node),
        terminal(&d.a.captured_at),
        terminal(&d.b.path),
        terminal(&d.b.node),
        terminal(&d.b.captured_at)
    );
    let f = &d.findings;
    let _ = writeln!(
        o,
        "\nfindings: {} new, {} resolved, {} changed, {} not evaluated in B{}",
        f.new.len(),
        f.resolved.len(),
        f.changed.len(),
        f.not_evaluated_in_b.len(),
        if d.worse { " (worse)" } else { "" }
    );
    for x in &f.new {
        let _ = writeln!(o, "  + {}", terminal(&finding_line(x)));
    }
    for x in &f.resolved {
        let _ = writeln!(o, "  - {}", terminal(&finding_line(x)));
    }
    for c in &f.changed {
        let _ = writeln!(
            o,
            "  ~ {} {}: {} -> {}",
            terminal(&c.rule_id),
            terminal(&c.subject),
            c.before.as_str(),
            c.after.as_str()
        );
    }
    for u in &f.not_evaluated_in_b {
        let _ = writeln!(
            o,
            "  ? {} (not evaluated in B: {})",
            terminal(&finding_line(&u.finding)),
            terminal(&u.reason)
        );
    }
    if d.sections.is_empty() {
        let _ = writeln!(o, "\nno other difference");
    }
    for s in &d.sections {
        let _ = writeln!(o, "\n{} ({} changed)", s.name, s.changes.len());
        for c in &s.changes {
            let _ = writeln!(
                o,
                "  {}: {} -> {}",
                terminal(&c.item),
                terminal(&val(&c.before)),
                terminal(&val(&c.after))
            );
        }
    }
    o
}

/// The diff as Markdown (tables per section).
pub fn render_markdown(d: &Diff) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# netsnap diff\n");
    let _ = writeln!(o, "| | bundle | node | captured |\n|---|---|---|---|");
    for (n, s) in [("A", &d.a), ("B", &d.b)] {
        let _ = writeln!(
            o,
            "| {n} | {} | {} | {} |",
            md(&s.path),
            md(&s.node),
            md(&s.captured_at)
        );
    }
    let f = &d.findings;
    let _ = writeln!(
        o,
        "\n## Findings{}\n",
        if d.worse { " (worse)" } else { "" }
    );
    if f.new.is_empty()
        && f.resolved.is_empty()
        && f.changed.is_empty()
        && f.not_evaluated_in_b.is_empty()
    {
        let _ = writeln!(o, "No change.");
    } else {
        let _ = writeln!(
            o,
            "| change | rule | subject | severity | message |\n|---|---|---|---|---|"
        );
        for (tag, list) in [("new", &f.new), ("resolved", &f.resolved)] {
            for x in list {
                let _ = writeln!(
                    o,
                    "| {tag} | {} | {} | {} | {} |",
                    md(&x.rule_id),
                    md(&x.subject),
                    x.severity.as_str(),
                    md(&x.message)
                );
            }
        }
        for c in &f.changed {
            let _ = writeln!(
                o,
                "| changed | {} | {} | {} → {} | {} |",
                md(&c.rule_id),
                md(&c.subject),
                c.before.as_str(),
                c.after.as_str(),
                md(&c.message)
            );
        }
        for u in &f.not_evaluated_in_b {
            let _ = writeln!(
                o,
                "| not evaluated in B | {} | {} | {} | {} |",
                md(&u.finding.rule_id),
                md(&u.finding.subject),
                u.finding.severity.as_str(),
                md(&u.reason)
            );
        }
    }
    for s in &d.sections {
        let _ = writeln!(o, "\n## {}\n", md(&s.name));
        let _ = writeln!(o, "| item | A | B |\n|---|---|---|");
        for c in &s.changes {
            let _ = writeln!(
                o,
                "| {} | {} | {} |",
                md(&c.item),
                md(&val(&c.before)),
                md(&val(&c.after))
            );
        }
    }
    o
}

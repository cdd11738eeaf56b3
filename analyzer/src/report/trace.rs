//! Renderings of a [`Trace`]: one line per hop with its evidence (`path:line`), per branch.

use std::fmt::Write as _;

use crate::facts::model::Source;
use crate::inert::{markdown as md, terminal};
use crate::trace::{From, Trace};

fn ev(list: &[Source]) -> String {
    list.iter()
        .map(|s| match s.line {
            Some(l) => format!("{}:{l}", s.path),
            None => s.path.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn from_text(f: &From) -> String {
    match f {
        From::Pod { pod, ip, .. } => format!("pod {pod} ({ip})"),
        From::Host { ip } => format!("the node ({ip})"),
        From::External { ip } => format!("outside ({ip})"),
    }
}

fn to_text(t: &Trace) -> String {
    let port = t.to.port.map(|p| format!(":{p}")).unwrap_or_default();
    let names = if t.to.names.is_empty() {
        String::new()
    } else {
        format!(" ({})", t.to.names)
    };
    format!("{}{port}/{}{names}", t.to.ip, t.to.proto)
}

/// The trace as text.
pub fn render_text(t: &Trace) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "trace on node {}: {} -> {}",
        terminal(&t.node),
        terminal(&from_text(&t.from)),
        terminal(&to_text(t))
    );
    for (i, b) in t.branches.iter().enumerate() {
        let _ = writeln!(
            o,
            "\nbranch {} (p={:.3}): {}: {}",
            i + 1,
            b.probability,
            b.outcome.kind,
            terminal(&b.outcome.detail)
        );
        for a in &b.assumptions {
            let _ = writeln!(o, "  assumes {}", terminal(a));
        }
        for (n, h) in b.hops.iter().enumerate() {
            let e = ev(&h.evidence);
            let _ = writeln!(
                o,
                "  {:>2}. {:<20} {}{}",
                n + 1,
                terminal(&h.stage),
                terminal(&h.detail),
                if e.is_empty() {
                    String::new()
                } else {
                    format!("  [{}]", terminal(&e))
                }
            );
        }
    }
    if !t.conntrack.is_empty() {
        let _ = writeln!(o, "\nconntrack entries of this flow:");
        for c in &t.conntrack {
            let _ = writeln!(
                o,
                "  {} reply from {}{}{}  [{}]",
                terminal(&c.entry),
                terminal(&c.reply_from),
                if c.unreplied { " [UNREPLIED]" } else { "" },
                c.note
                    .as_ref()
                    .map(|n| format!(": {}", terminal(n)))
                    .unwrap_or_default(),
                terminal(&ev(std::slice::from_ref(&c.source)))
            );
        }
    }
    for n in &t.notes {
        let _ = writeln!(o, "note: {}", terminal(n));
    }
    o
}

/// The trace as Markdown.
pub fn render_markdown(t: &Trace) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# netsnap trace\n\nnode {}: {} → {}",
        md(&t.node),
        md(&from_text(&t.from)),
        md(&to_text(t))
    );
    for (i, b) in t.branches.iter().enumerate() {
        let _ = writeln!(
            o,
            "\n## Branch {} (p={:.3}): {}\n\n{}\n",
            i + 1,
            b.probability,
            md(&b.outcome.kind),
            md(&b.outcome.detail)
        );
        for a in &b.assumptions {
            let _ = writeln!(o, "- assumes {}", md(a));
        }
        let _ = writeln!(o, "\n| # | stage | what | evidence |\n|---|---|---|---|");
        for (n, h) in b.hops.iter().enumerate() {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} |",
                n + 1,
                md(&h.stage),
                md(&h.detail),
                md(&ev(&h.evidence))
            );
        }
    }
    if !t.conntrack.is_empty() {
        let _ = writeln!(o, "\n## Conntrack entries of this flow\n");
        for c in &t.conntrack {
            let _ = writeln!(
                o,
                "- {} reply from {}{}{} ({})",
                md(&c.entry),
                md(&c.reply_from),
                if c.unreplied { " UNREPLIED" } else { "" },
                c.note
                    .as_ref()
                    .map(|n| format!(": {}", md(n)))
                    .unwrap_or_default(),
                md(&ev(std::slice::from_ref(&c.source)))
            );
        }
    }
    for n in &t.notes {
        let _ = writeln!(o, "\nNote: {}", md(n));
    }
    o
}

//! The cluster view's rendering: the per-node summary table (text, Markdown); the rows and
//! the cluster findings come from [`crate::analyze::cluster`].

use std::fmt::Write as _;

use crate::analyze::Finding;
use crate::analyze::cluster::{CLUSTER_NODE, ClusterSummary, NodeRow};
use crate::inert::{markdown as md_escape, terminal as inert};

/// ` [node X]` after a finding or a rule in a multi-node report; ` [cluster]` for the cluster.
pub fn node_tag(node: &str) -> String {
    if node == CLUSTER_NODE {
        " [cluster]".to_string()
    } else {
        format!(" [node {}]", inert(node))
    }
}

/// A capture time to the second, in UTC (the JSON keeps the full value).
fn short_time(t: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|d| {
            d.with_timezone(&chrono::Utc)
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string()
        })
        .unwrap_or_else(|_| t.to_string())
}

fn proxy(r: &NodeRow) -> String {
    match &r.proxy_backend {
        Some(b) => format!("{}/{b}", r.proxy_mode),
        None => r.proxy_mode.clone(),
    }
}

fn cluster_findings(findings: &[Finding]) -> usize {
    findings
        .iter()
        .filter(|f| f.node == CLUSTER_NODE)
        .map(|f| f.aggregate.as_ref().map_or(1, |a| a.count))
        .sum()
}

/// The per-node table and the cluster line, as text (cells made inert by the table).
pub fn render_text(c: &ClusterSummary, color: bool) -> String {
    let mut t = crate::inspect::table::Table::new(&[
        "NODE",
        "CAPTURED",
        "KUBE-PROXY",
        "OUTCOME",
        "CRITICAL",
        "ERROR",
        "WARNING",
        "INFO",
    ]);
    for r in &c.nodes {
        t.row(vec![
            r.node.clone(),
            short_time(&r.captured_at),
            proxy(r),
            r.outcome.clone(),
            r.critical.to_string(),
            r.error.to_string(),
            r.warning.to_string(),
            r.info.to_string(),
        ]);
    }
    let mut out = t.render();
    let head = |s: &str| {
        if color {
            format!("\x1b[1m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    };
    let line = match &c.note {
        Some(n) => inert(n).into_owned(),
        None => format!(
            "{} cluster rule(s) evaluated over {} nodes",
            c.rules_evaluated,
            c.nodes.len()
        ),
    };
    let _ = writeln!(out, "{}\n", head(&line));
    out
}

/// The per-node table as Markdown, with the cluster findings' count.
pub fn render_markdown(c: &ClusterSummary, findings: &[Finding]) -> String {
    let mut out = String::from(
        "| node | captured | kube-proxy | outcome | critical | error | warning | info |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for r in &c.nodes {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            md_escape(&r.node),
            md_escape(&short_time(&r.captured_at)),
            md_escape(&proxy(r)),
            md_escape(&r.outcome),
            r.critical,
            r.error,
            r.warning,
            r.info
        );
    }
    let line = match &c.note {
        Some(n) => n.clone(),
        None => format!(
            "{} cluster rule(s) evaluated over {} nodes: {} cluster finding(s)",
            c.rules_evaluated,
            c.nodes.len(),
            cluster_findings(findings)
        ),
    };
    let _ = writeln!(out, "\n{}", md_escape(&line));
    out
}

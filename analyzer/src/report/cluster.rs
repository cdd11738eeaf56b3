//! The cluster view of `netsnap-analyze analyze` over two or more node bundles: the per-node
//! summary table, and the cluster-scope rules evaluated over the cluster fact document
//! ([`crate::facts::cluster`]). Their findings join the report's findings with the node
//! [`CLUSTER_NODE`]; their evidence names the node whose bundle each line is quoted from.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use netsnap_bundle::Bundle;
use serde::Serialize;

use super::analysis::{
    AnalyzeError, Evidence, Finding, MAX_EVIDENCE, NotEvaluated, Report, RuleFailure, aggregate,
    quote_evidence_of,
};
use crate::facts::cluster::{ClusterFacts, NodeInput};
use crate::inert::{markdown as md_escape, terminal as inert};
use crate::rules::{Outcome, RuleSet, Severity};

/// The `node` of a cluster finding (parentheses cannot occur in a Kubernetes node name).
pub const CLUSTER_NODE: &str = "(cluster)";

/// One row of the per-node summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeRow {
    /// Node name.
    pub node: String,
    /// Bundle path as given.
    pub path: String,
    /// Capture time (RFC 3339).
    pub captured_at: String,
    /// Detected kube-proxy mode.
    pub proxy_mode: String,
    /// iptables backend in iptables mode (`nft`, `legacy`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_backend: Option<String>,
    /// Collection outcome.
    pub outcome: String,
    /// This node's findings by severity (aggregated findings count every subject).
    pub critical: usize,
    /// Error findings.
    pub error: usize,
    /// Warning findings.
    pub warning: usize,
    /// Info findings.
    pub info: usize,
}

/// The cluster part of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterSummary {
    /// One row per node bundle, in the order given.
    pub nodes: Vec<NodeRow>,
    /// Cluster rules evaluated (0 when they could not run; see `note`).
    pub rules_evaluated: usize,
    /// Why the cluster rules did not run, when they did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// ` [node X]` after a finding or a rule in a multi-node report; ` [cluster]` for the cluster.
pub fn node_tag(node: &str) -> String {
    if node == CLUSTER_NODE {
        " [cluster]".to_string()
    } else {
        format!(" [node {}]", inert(node))
    }
}

/// Builds the cluster document from the nodes' extracts, evaluates the cluster rules over it,
/// quotes their evidence from the nodes' bundles and adds all of it to `report` (whose node
/// findings must already be in).
pub fn evaluate(
    bundles: &[(String, &Bundle)],
    inputs: &[NodeInput],
    rules: &RuleSet,
    report: &mut Report,
) -> Result<(), AnalyzeError> {
    let mut names: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for i in inputs {
        names
            .entry(i.node.name.as_str())
            .or_default()
            .push(i.node.bundle.as_str());
    }
    let twice: Vec<String> = names
        .iter()
        .filter(|(_, paths)| paths.len() > 1)
        .map(|(n, paths)| format!("{n} ({})", paths.join(", ")))
        .collect();
    let mut summary = ClusterSummary {
        nodes: Vec::new(),
        rules_evaluated: 0,
        note: None,
    };
    if !twice.is_empty() {
        // Two captures of one node would compare the node with itself: every pod IP and CIDR
        // "on two nodes". The node rules still ran on each.
        summary.note = Some(format!(
            "cluster rules not evaluated: several bundles of one node: {}; give one bundle per node",
            twice.join("; ")
        ));
    } else {
        let facts = ClusterFacts::build(inputs);
        let mut findings = Vec::new();
        for (rule, outcome) in rules
            .evaluate_cluster(&facts)
            .map_err(AnalyzeError::Facts)?
        {
            let id = rule.spec.id.clone();
            match outcome {
                Outcome::RuleError(reason) => report.rule_errors.push(RuleFailure {
                    node: CLUSTER_NODE.into(),
                    rule_id: id,
                    reason,
                }),
                Outcome::NotEvaluated(reason) => report.not_evaluated.push(NotEvaluated {
                    node: CLUSTER_NODE.into(),
                    rule_id: id,
                    reason,
                }),
                Outcome::NotApplicable => summary.rules_evaluated += 1,
                Outcome::Findings(fs) => {
                    summary.rules_evaluated += 1;
                    if let Some(note) = rule.data_note(&facts) {
                        report.partial_data.push(NotEvaluated {
                            node: CLUSTER_NODE.into(),
                            rule_id: id.clone(),
                            reason: note,
                        });
                    }
                    findings.extend(fs.into_iter().map(|f| {
                        Finding {
                            node: CLUSTER_NODE.into(),
                            rule_id: f.rule_id,
                            title: rule.spec.title.clone(),
                            severity: f.severity,
                            category: rule.spec.category.clone(),
                            subject: f.subject,
                            message: f.message,
                            evidence: f
                                .evidence
                                .into_iter()
                                .take(MAX_EVIDENCE)
                                .map(|s| Evidence {
                                    node: s.node,
                                    path: s.path,
                                    line: s.line,
                                    text: None,
                                })
                                .collect(),
                            remediation: rule.spec.remediation.trim().to_string(),
                            references: rule.spec.references.clone(),
                            aggregate: None,
                        }
                    }));
                }
            }
        }
        let mut findings = aggregate(findings);
        for i in inputs {
            if let Some((_, b)) = bundles.iter().find(|(p, _)| *p == i.node.bundle) {
                quote_evidence_of(b, &mut findings, Some(&i.node.name));
            }
        }
        report.findings.extend(findings);
    }
    for i in inputs {
        let mut row = NodeRow {
            node: i.node.name.clone(),
            path: i.node.bundle.clone(),
            captured_at: i.node.captured_at.clone(),
            proxy_mode: i.node.proxy_mode.clone(),
            proxy_backend: i.node.proxy_backend.clone(),
            outcome: i.node.outcome.clone(),
            critical: 0,
            error: 0,
            warning: 0,
            info: 0,
        };
        for f in report.findings.iter().filter(|f| f.node == i.node.name) {
            let n = f.aggregate.as_ref().map_or(1, |a| a.count);
            match f.severity {
                Severity::Critical => row.critical += n,
                Severity::Error => row.error += n,
                Severity::Warning => row.warning += n,
                Severity::Info => row.info += n,
            }
        }
        summary.nodes.push(row);
    }
    report.cluster = Some(summary);
    Ok(())
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

//! The cluster step of the pipeline over two or more node bundles: the per-node
//! summary rows, and the cluster-scope rules evaluated over the cluster fact document
//! ([`crate::facts::cluster`]). Their findings join the report's findings with the node
//! [`CLUSTER_NODE`]; their evidence names the node whose bundle each line is quoted from.

use std::collections::BTreeMap;

use netsnap_bundle::Bundle;
use serde::Serialize;

use super::{
    AnalyzeError, Finding, NotEvaluated, Report, RuleFailure, aggregate, quote_evidence_of,
};
use crate::facts::cluster::{ClusterFacts, NodeInput};
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
                    findings.extend(
                        fs.into_iter()
                            .map(|f| Finding::of_rule(CLUSTER_NODE, rule, f)),
                    );
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

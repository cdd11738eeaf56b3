//! Joins the bundles of one fan-out collection run before analysis.
//!
//! `kubectl netsnap collect --all-nodes` (or a DaemonSet) runs
//! `netsnap-collect --api-scope node --run-id R` on every node and one
//! `--api-scope cluster --run-id R` pass. The node bundles record the cluster
//! lists as `skipped` ("in the cluster bundle of run R"); here each node bundle
//! adopts those lists from the cluster bundle of its run, so the facts and rules
//! see one complete bundle per node. A node bundle given without its cluster
//! bundle keeps the `skipped` records, and the rules that need cluster data are
//! reported *not evaluated* with that reason, through the usual missing-artifact path.

use std::collections::BTreeMap;

use netsnap_bundle::Bundle;
use netsnap_bundle::k8s::{ApiScope, CLUSTER_LISTS, api_scope_of};

/// Why the given bundles cannot be joined.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum JoinError {
    /// Only cluster bundles were given: there is no node to analyze.
    #[error(
        "{0} is a cluster bundle (--api-scope cluster): give it together with the node bundles of its run"
    )]
    OnlyCluster(String),
    /// A cluster bundle has no run id to match node bundles with.
    #[error(
        "{0} is a cluster bundle without a run id: collect it with --run-id, as the node bundles"
    )]
    NoRunId(String),
    /// Two cluster bundles of the same run.
    #[error("{0} and {1} are both the cluster bundle of run {2}: give one")]
    Duplicate(String, String, String),
    /// The same bundle given twice (the same path, or two copies: identical manifests).
    #[error("{1} is the same bundle as {0} (node {2}, captured {3}): give each bundle once")]
    SameBundle(String, String, String, String),
    /// The same path given twice.
    #[error("{0} is given twice: give each bundle once")]
    GivenTwice(String),
    /// A cluster bundle whose run matches no node-scope bundle given.
    #[error(
        "{0} is the cluster bundle of run {1}, but no node bundle of that run (--api-scope node --run-id {1}) was given"
    )]
    Unmatched(String, String),
}

/// What the join did, for the caller to log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct JoinSummary {
    /// (node bundle, cluster bundle) pairs joined.
    pub joined: Vec<(String, String)>,
}

/// Refuses the same bundle given twice: the manifest (node, times, every artifact's sha256)
/// identifies a collection, so two copies under different names are caught too. Counted
/// twice, its findings would double and every pod IP would seem to live on two nodes.
pub fn check_distinct(bundles: &[(String, Bundle)]) -> Result<(), JoinError> {
    for (k, (path, b)) in bundles.iter().enumerate() {
        if let Some((first, _)) = bundles[..k]
            .iter()
            .find(|(_, a)| a.manifest() == b.manifest())
        {
            if first == path {
                return Err(JoinError::GivenTwice(path.clone()));
            }
            let m = b.manifest();
            return Err(JoinError::SameBundle(
                first.clone(),
                path.clone(),
                m.node
                    .name
                    .clone()
                    .unwrap_or_else(|| m.node.hostname.clone()),
                m.collection.finished_at.to_rfc3339(),
            ));
        }
    }
    Ok(())
}

/// Joins node-scope bundles with the cluster bundle of their run; returns the node
/// bundles (cluster bundles are consumed: their lists now live in the node bundles).
pub fn join_runs(
    bundles: Vec<(String, Bundle)>,
) -> Result<(Vec<(String, Bundle)>, JoinSummary), JoinError> {
    check_distinct(&bundles)?;
    let mut clusters: BTreeMap<String, (String, Bundle)> = BTreeMap::new();
    let mut nodes = Vec::new();
    for (path, b) in bundles {
        match api_scope_of(b.manifest()) {
            (Some(ApiScope::Cluster), Some(run)) => {
                if let Some((other, _)) = clusters.get(&run) {
                    return Err(JoinError::Duplicate(other.clone(), path, run));
                }
                clusters.insert(run, (path, b));
            }
            (Some(ApiScope::Cluster), None) => return Err(JoinError::NoRunId(path)),
            _ => nodes.push((path, b)),
        }
    }
    if nodes.is_empty()
        && let Some((path, _)) = clusters.values().next()
    {
        return Err(JoinError::OnlyCluster(path.clone()));
    }
    let mut summary = JoinSummary::default();
    let mut used: BTreeMap<String, bool> = clusters.keys().map(|k| (k.clone(), false)).collect();
    for (path, b) in &mut nodes {
        let (Some(ApiScope::Node), Some(run)) = api_scope_of(b.manifest()) else {
            continue;
        };
        if let Some((cpath, cluster)) = clusters.get(&run) {
            b.adopt_artifacts(cluster, CLUSTER_LISTS);
            used.insert(run, true);
            summary.joined.push((path.clone(), cpath.clone()));
        }
    }
    if let Some((run, _)) = used.into_iter().find(|(_, u)| !u) {
        let (path, _) = &clusters[&run];
        return Err(JoinError::Unmatched(path.clone(), run));
    }
    Ok((nodes, summary))
}

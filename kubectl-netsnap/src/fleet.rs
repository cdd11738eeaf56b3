//! Many nodes: list them (paginated), run one pod per node with a bound on
//! parallelism, run the cluster-scope bundle once, and render the result table.
//!
//! A node that never schedules, crashes or drops its stream only fills its own
//! row: every node runs to its own end and every pod is deleted.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use tokio_util::sync::CancellationToken;

use crate::node::{self, Cleanup, NodeError, PodRun, Received, Session, SharedJob};
use crate::pod::{self, ApiMode};

/// Page size when listing nodes.
const NODE_PAGE: u32 = 100;
/// Pods the cluster-scope job is tried in before it is reported failed.
const CLUSTER_ATTEMPTS: u32 = 2;
/// Row name and file stem of the cluster-scope bundle.
pub const CLUSTER_ROW: &str = "cluster";

/// Outcome of one row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ReportStatus {
    /// A verified bundle of a complete collection.
    Ok,
    /// A verified bundle, but some artifacts failed or the run was cut short.
    Partial,
    /// No bundle.
    Failed,
}

impl ReportStatus {
    /// Lowercase name shown in the table.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportStatus::Ok => "ok",
            ReportStatus::Partial => "partial",
            ReportStatus::Failed => "failed",
        }
    }
}

/// One row: a node (or the cluster bundle) and what came of it.
#[derive(Debug, Clone)]
pub struct NodeReport {
    /// Node name, or [`CLUSTER_ROW`].
    pub node: String,
    /// Result.
    pub status: ReportStatus,
    /// The bundle, when one was received and verified.
    pub bundle: Option<PathBuf>,
    /// Bundle size in bytes.
    pub bytes: Option<u64>,
    /// Why (failed), what is missing (partial), or the artifact count (ok).
    pub detail: String,
    /// The pod used, if any.
    pub pod: Option<String>,
    /// Set when the pod could not be deleted: the error.
    pub pod_left: Option<String>,
}

impl NodeReport {
    fn from_result(node: &str, pod: Option<String>, result: &Result<Received, NodeError>) -> Self {
        let (status, bundle, bytes, detail) = match result {
            Ok(r) if r.verdict.complete => (
                ReportStatus::Ok,
                Some(r.path.clone()),
                Some(r.bytes),
                r.verdict.summary.clone(),
            ),
            Ok(r) => (
                ReportStatus::Partial,
                Some(r.path.clone()),
                Some(r.bytes),
                r.verdict.summary.clone(),
            ),
            Err(e) => (ReportStatus::Failed, None, None, e.to_string()),
        };
        NodeReport {
            node: node.to_string(),
            status,
            bundle,
            bytes,
            detail,
            pod,
            pod_left: None,
        }
    }

    /// The row of one pod's run.
    pub fn from_run(run: &PodRun) -> Self {
        let mut report = Self::from_result(&run.node, Some(run.pod.clone()), &run.result);
        if let Cleanup::Failed(e) = &run.cleanup {
            report.pod_left = Some(e.clone());
        }
        report
    }
}

/// Names of the nodes matching `selector` (all nodes when None), sorted, listed page by page.
pub async fn list_nodes(
    client: kube::Client,
    selector: Option<&str>,
) -> Result<Vec<String>, kube::Error> {
    let nodes: Api<Node> = Api::all(client);
    let mut names = Vec::new();
    let mut params = ListParams::default().limit(NODE_PAGE);
    if let Some(s) = selector {
        params = params.labels(s);
    }
    loop {
        let page = nodes.list(&params).await?;
        names.extend(page.items.into_iter().filter_map(|n| n.metadata.name));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    names.sort();
    names.dedup();
    Ok(names)
}

/// The local file of a node's bundle in the output directory.
pub fn node_bundle_path(dir: &Path, node: &str) -> PathBuf {
    let safe: String = node
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let safe = safe.trim_start_matches('.');
    // Keep `cluster.tar.zst` for the cluster-scope bundle.
    if safe.is_empty() || safe == CLUSTER_ROW {
        dir.join(format!("node-{safe}.tar.zst"))
    } else {
        dir.join(format!("{safe}.tar.zst"))
    }
}

/// What to collect across nodes.
#[derive(Debug)]
pub struct FleetPlan {
    /// Shared pod settings.
    pub session: Arc<Session>,
    /// Nodes, in table order.
    pub nodes: Vec<String>,
    /// Output directory (exists).
    pub dir: PathBuf,
    /// At most this many pods at once.
    pub parallel: usize,
    /// Whether the collector reads the API (node slices plus one cluster bundle).
    pub api: bool,
}

/// Collects every node; returns one row per node (sorted by name) then the cluster row (with `--api`).
/// `progress` is called as each row completes.
pub async fn collect_all(
    plan: FleetPlan,
    cancel: CancellationToken,
    progress: impl Fn(&NodeReport, usize, usize),
) -> Vec<NodeReport> {
    let run_id = plan.session.run_id.clone();
    let cluster = plan.api.then(|| {
        Arc::new(SharedJob::new(
            pod::cluster_collect_command(&run_id),
            plan.dir.join(format!("{CLUSTER_ROW}.tar.zst")),
            CLUSTER_ATTEMPTS,
        ))
    });
    let api = if plan.api {
        ApiMode::NodeScope { run_id }
    } else {
        ApiMode::None
    };
    let total = plan.nodes.len();
    let mut runs = futures::stream::iter(plan.nodes.iter().cloned())
        .map(|name| {
            let dest = node_bundle_path(&plan.dir, &name);
            node::collect_node(
                plan.session.clone(),
                name,
                api.clone(),
                dest,
                cluster.clone(),
                cancel.clone(),
            )
        })
        .buffer_unordered(plan.parallel.max(1));
    let mut reports = Vec::with_capacity(total + 1);
    while let Some(run) = runs.next().await {
        let report = NodeReport::from_run(&run);
        reports.push(report);
        if let Some(last) = reports.last() {
            progress(last, reports.len(), total);
        }
    }
    drop(runs);
    reports.sort_by(|a, b| a.node.cmp(&b.node));
    if let Some(job) = cluster {
        let result = job.result();
        let mut row = NodeReport::from_result(CLUSTER_ROW, None, &result);
        if let Err(NodeError::Internal(_)) = &result {
            row.detail =
                "no node pod got far enough to run the cluster-scope collection".to_string();
        }
        reports.push(row);
    }
    reports
}

/// Human size, like the collector's summary.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The result table (kubectl-style columns), one row per report, then a totals line.
pub fn render_table(reports: &[NodeReport]) -> String {
    let rows: Vec<[String; 5]> = reports
        .iter()
        .map(|r| {
            let mut detail = r.detail.clone();
            if let (Some(pod), Some(e)) = (&r.pod, &r.pod_left) {
                let _ = write!(detail, "; POD {pod} NOT DELETED: {e}");
            }
            [
                r.node.clone(),
                r.status.as_str().to_string(),
                r.bundle
                    .as_ref()
                    .and_then(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "-".to_string()),
                r.bytes.map(human_size).unwrap_or_else(|| "-".to_string()),
                detail,
            ]
        })
        .collect();
    let header = ["NODE", "RESULT", "BUNDLE", "SIZE", "DETAIL"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; 5]| {
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                let _ = write!(l, "{cell:<width$}   ", width = widths[i]);
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header);
    for row in &rows {
        line([&row[0], &row[1], &row[2], &row[3], &row[4]]);
    }
    let count = |s: ReportStatus| reports.iter().filter(|r| r.status == s).count();
    let _ = writeln!(
        out,
        "\n{} ok, {} partial, {} failed",
        count(ReportStatus::Ok),
        count(ReportStatus::Partial),
        count(ReportStatus::Failed)
    );
    out
}

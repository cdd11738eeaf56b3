//! Command-line interface: flags (clap derive) and the wiring of each
//! subcommand. `main.rs` only adds Ctrl-C and the process exit.
//!
//! Exit codes: 0 every bundle was received (some may be partial), 1 at least
//! one node or the cluster bundle failed or a pod could not be deleted,
//! 2 usage, kubeconfig or API errors before any pod was created,
//! 130 interrupted (every pod created so far was deleted).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand};
use kube::api::Api;
use tokio_util::sync::CancellationToken;

use crate::analyze;
use crate::client::{self, ConnectOptions};
use crate::fleet::{self, FleetPlan, NodeReport, ReportStatus};
use crate::node::{self, Session};
use crate::pod::{self, ApiMode};

/// Every bundle was received.
pub const EXIT_OK: u8 = 0;
/// A node or the cluster bundle failed, or a pod was left behind.
pub const EXIT_FAILED: u8 = 1;
/// Usage, kubeconfig or API error before any pod.
pub const EXIT_USAGE: u8 = 2;
/// Interrupted by Ctrl-C.
pub const EXIT_INTERRUPTED: u8 = 130;

const AFTER_HELP: &str = "\
Each node gets one short-lived privileged pod (hostPID, hostNetwork, the host root \
mounted read-only at /host, every taint tolerated, no service-account token unless \
--api). The plugin runs `netsnap-collect -o -` in it over exec, writes the bundle \
locally, verifies its manifest and sha256, and deletes the pod, also on Ctrl-C and \
on errors. Nothing is written to the node.

Exit codes:
  0    every bundle was received (some may be partial: see the table)
  1    at least one node failed, or a pod could not be deleted
  2    bad usage, kubeconfig or API error before any pod was created
  130  interrupted (the pods were deleted)";

/// Collect netsnap bundles from cluster nodes, and analyze them.
#[derive(Debug, Parser)]
#[command(name = "kubectl-netsnap", bin_name = "kubectl netsnap", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    /// Connection flags.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// Subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// kubectl's connection flags, accepted before or after the subcommand.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Path to the kubeconfig file [default: $KUBECONFIG, then ~/.kube/config].
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use [default: its current-context].
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// Namespace for the collector pods [default: the context's namespace; `netsnap` with --api].
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// More logging on stderr (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Collect bundles from one node (node/NAME), every node, or the nodes matching a selector.
    Collect(CollectArgs),
    /// Analyze the bundles of a directory with netsnap-analyze (extra flags are passed on).
    Analyze(AnalyzeArgs),
}

/// `collect` flags.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("nodes").required(true).args(["target", "all_nodes", "selector"])))]
pub struct CollectArgs {
    /// The node: node/NAME (or just NAME).
    #[arg(value_name = "node/NAME")]
    pub target: Option<String>,
    /// Every node of the cluster.
    #[arg(long)]
    pub all_nodes: bool,
    /// The nodes matching this label selector (e.g. -l node-role.kubernetes.io/worker).
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Output: the bundle file (one node) [default: netsnap-<node>-<UTC>.tar.zst], or the
    /// directory (many nodes) [default: netsnap-<UTC>].
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Nodes collected at the same time.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub parallel: usize,
    /// Let the collector read the Kubernetes API with the read-only service account of
    /// deploy/rbac.yaml (pods, services, endpoint slices); many-node runs add cluster.tar.zst.
    #[arg(long)]
    pub api: bool,
    /// Collector image.
    #[arg(long, env = "NETSNAP_IMAGE", default_value = pod::DEFAULT_IMAGE, value_name = "IMAGE")]
    pub image: String,
    /// Service account the pods use with --api.
    #[arg(long, default_value = pod::API_SERVICE_ACCOUNT, value_name = "NAME")]
    pub service_account: String,
    /// Seconds a pod may take to start running (image pull included) before the node fails.
    #[arg(long, default_value_t = 120.0, value_name = "SECS")]
    pub pod_timeout: f64,
    /// Seconds one collector run may take before the node fails.
    #[arg(long, default_value_t = 300.0, value_name = "SECS")]
    pub collect_timeout: f64,
    /// Run id (part of pod names) [default: random].
    #[arg(long, hide = true)]
    pub run_id: Option<String>,
}

/// `analyze` flags.
#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// Directory written by `collect --all-nodes` / `-l`.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Flags passed to `netsnap-analyze analyze` (e.g. --format markdown).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ANALYZE-FLAGS"
    )]
    pub extra: Vec<String>,
}

/// Runs a parsed command line; data (bundle paths, the table) goes to `out`,
/// progress and errors to stderr. Returns the exit code.
pub async fn run(cli: Cli, cancel: CancellationToken, out: &mut (dyn Write + Send)) -> u8 {
    let result = match cli.command {
        Command::Collect(args) => collect(&cli.global, args, cancel, out).await,
        Command::Analyze(args) => analyze(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kubectl netsnap: error: {e:#}");
            EXIT_USAGE
        }
    }
}

fn secs(name: &str, v: f64) -> anyhow::Result<Duration> {
    anyhow::ensure!(
        v.is_finite() && v > 0.0,
        "--{name} must be a positive number of seconds"
    );
    Ok(Duration::from_secs_f64(v))
}

/// `node/NAME`, `nodes/NAME`, `no/NAME` or `NAME`.
pub fn parse_target(target: &str) -> anyhow::Result<String> {
    let name = match target.split_once('/') {
        Some(("node" | "nodes" | "no", name)) => name,
        Some((kind, _)) => {
            anyhow::bail!("{target}: only nodes can be collected (node/NAME), not {kind}")
        }
        None => target,
    };
    anyhow::ensure!(!name.is_empty(), "{target}: the node name is empty");
    Ok(name.to_string())
}

fn random_run_id() -> String {
    use sha2::{Digest, Sha256};
    let seed = format!("{:?}-{}", std::time::SystemTime::now(), std::process::id());
    let digest = Sha256::digest(seed.as_bytes());
    // Base 36, six characters: short pod names, unique enough per cluster and day.
    let mut n = u64::from_be_bytes([
        digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7],
    ]);
    let mut id = String::new();
    for _ in 0..6 {
        let d = (n % 36) as u32;
        id.push(std::char::from_digit(d, 36).unwrap_or('x'));
        n /= 36;
    }
    id
}

async fn collect(
    global: &GlobalArgs,
    args: CollectArgs,
    cancel: CancellationToken,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<u8> {
    let schedule_timeout = secs("pod-timeout", args.pod_timeout)?;
    let collect_timeout = secs("collect-timeout", args.collect_timeout)?;
    anyhow::ensure!(args.parallel > 0, "--parallel must be at least 1");
    let single = args.target.as_deref().map(parse_target).transpose()?;
    let conn = client::connect(&ConnectOptions {
        kubeconfig: global.kubeconfig.clone(),
        context: global.context.clone(),
        namespace: global.namespace.clone(),
    })
    .await?;
    // The service account of deploy/rbac.yaml lives in `netsnap`.
    let namespace = if args.api && !conn.namespace_explicit {
        "netsnap".to_string()
    } else {
        conn.namespace.clone()
    };
    let run_id = args.run_id.clone().unwrap_or_else(random_run_id);
    let session = Arc::new(Session {
        pods: Api::namespaced(conn.client.clone(), &namespace),
        namespace: namespace.clone(),
        image: args.image.clone(),
        service_account: args.api.then(|| args.service_account.clone()),
        run_id: run_id.clone(),
        schedule_timeout,
        collect_timeout,
    });
    eprintln!(
        "kubectl netsnap: run {run_id}: pods in namespace {namespace}, image {}",
        args.image
    );

    if let Some(node_name) = single {
        let dest = args.output.clone().unwrap_or_else(|| {
            PathBuf::from(netsnap_bundle::layout::default_bundle_name(
                &node_name,
                chrono::Utc::now(),
            ))
        });
        anyhow::ensure!(
            !dest.exists(),
            "{} already exists; choose another -o",
            dest.display()
        );
        let api = if args.api {
            ApiMode::Default
        } else {
            ApiMode::None
        };
        let run = node::collect_node(session, node_name, api, dest, None, cancel.clone()).await;
        let report = NodeReport::from_run(&run);
        if let Some(e) = &report.pod_left {
            eprintln!(
                "kubectl netsnap: warning: pod {}/{} could not be deleted: {e}; delete it with: kubectl -n {namespace} delete pod {}",
                namespace, run.pod, run.pod
            );
        }
        return Ok(match (&report.status, &report.bundle) {
            (ReportStatus::Failed, _) | (_, None) => {
                eprintln!("kubectl netsnap: {}: {}", report.node, report.detail);
                if cancel.is_cancelled() {
                    EXIT_INTERRUPTED
                } else {
                    EXIT_FAILED
                }
            }
            (status, Some(path)) => {
                eprintln!(
                    "kubectl netsnap: {}: {} bundle {} ({}, {})",
                    report.node,
                    status.as_str(),
                    path.display(),
                    report.bytes.map(fleet::human_size).unwrap_or_default(),
                    report.detail
                );
                writeln!(out, "{}", path.display())?;
                if report.pod_left.is_some() {
                    EXIT_FAILED
                } else {
                    EXIT_OK
                }
            }
        });
    }

    let nodes = fleet::list_nodes(conn.client.clone(), args.selector.as_deref())
        .await
        .map_err(|e| anyhow::anyhow!("listing nodes: {e}"))?;
    anyhow::ensure!(
        !nodes.is_empty(),
        "no node matches{}",
        args.selector
            .as_deref()
            .map(|s| format!(" -l {s}"))
            .unwrap_or_default()
    );
    let dir = args.output.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "netsnap-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
        ))
    });
    prepare_dir(&dir)?;
    eprintln!(
        "kubectl netsnap: collecting {} node(s), {} at a time, into {}",
        nodes.len(),
        args.parallel,
        dir.display()
    );
    let plan = FleetPlan {
        session,
        nodes,
        dir: dir.clone(),
        parallel: args.parallel,
        api: args.api,
    };
    let reports = fleet::collect_all(plan, cancel.clone(), |r, done, total| {
        eprintln!(
            "kubectl netsnap: [{done}/{total}] {}: {}{}",
            r.node,
            r.status.as_str(),
            if r.status == ReportStatus::Ok {
                String::new()
            } else {
                format!(" ({})", r.detail)
            }
        );
    })
    .await;
    write!(out, "{}", fleet::render_table(&reports))?;
    for r in reports.iter().filter(|r| r.pod_left.is_some()) {
        if let Some(pod) = &r.pod {
            eprintln!(
                "kubectl netsnap: warning: pod {namespace}/{pod} was not deleted; delete it with: kubectl -n {namespace} delete pod {pod}"
            );
        }
    }
    let received = reports.iter().filter(|r| r.bundle.is_some()).count();
    if received > 0 {
        eprintln!(
            "kubectl netsnap: {received} bundle(s) in {}; next: kubectl netsnap analyze {}",
            dir.display(),
            dir.display()
        );
    }
    Ok(if cancel.is_cancelled() {
        EXIT_INTERRUPTED
    } else if reports
        .iter()
        .any(|r| r.status == ReportStatus::Failed || r.pod_left.is_some())
    {
        EXIT_FAILED
    } else {
        EXIT_OK
    })
}

/// Creates the output directory; refuses a non-empty one (bundles of two runs would mix).
fn prepare_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        let mut entries =
            std::fs::read_dir(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
        anyhow::ensure!(
            entries.next().is_none(),
            "{} is not empty; choose another -o",
            dir.display()
        );
    } else {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
    }
    Ok(())
}

fn analyze(args: AnalyzeArgs) -> anyhow::Result<u8> {
    let bundles = analyze::bundles_in(&args.dir)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", args.dir.display()))?;
    anyhow::ensure!(
        !bundles.is_empty(),
        "{} holds no .tar.zst bundle",
        args.dir.display()
    );
    let bin = analyze::analyzer_binary();
    let status = analyze::analyze_command(&bin, &args.extra, &bundles)
        .status()
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot run {}: {e} (install netsnap-analyze next to kubectl-netsnap or on PATH, or set ${})",
                bin.display(),
                analyze::ANALYZE_ENV
            )
        })?;
    // The analyzer's own exit code (0 clean, 1 findings, 2 errors) is the answer.
    Ok(status.code().map_or(EXIT_USAGE, |c| c.clamp(0, 255) as u8))
}

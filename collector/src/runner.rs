//! The run: a shared [`RunContext`], independent [`Step`]s run concurrently in
//! phases, and a manifest that always gets written.
//!
//! Guarantees:
//! - every step runs in its own tokio task; one failing, hanging or panicking
//!   step never stops the others; its failure becomes a manifest note and its
//!   artifacts are recorded with the reason;
//! - the global deadline and Ctrl-C/SIGTERM trip one [`Cancel`] token; steps
//!   then get [`GRACE`] to finish their records (commands are killed and their
//!   output kept as partial) before the bundle is finished regardless;
//! - phases order the few real dependencies: `Discover` (namespace list) runs
//!   before `Capture` (everything independent, concurrently), which runs before
//!   `Derive` (correlations over what was captured, e.g. the pod matcher).
//!
//! A new data source plugs in by implementing [`Step`] and adding it to the
//! list given to [`collect`] (see [`default_steps`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use netsnap_bundle::native::{NetnsIndex, NetnsSnapshot};
use netsnap_bundle::{
    ArtifactRecord, ArtifactSource, ArtifactSpec, ArtifactStatus, BundleWriter, CollectionInfo,
    CollectionOutcome, Manifest, NodeInfo, ResourceUsage, ToolInfo, WriteError, WriterOptions,
    layout,
};

use crate::cancel::{Cancel, StopReason};
use crate::exec::Exec;
use crate::netns::Netns;
use crate::options::{HostPaths, Options};
use crate::progress::Progress;

/// Time steps get to record what they have once the run is stopped.
pub const GRACE: Duration = Duration::from_secs(3);

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Ordering of steps (steps of one phase run concurrently).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Finds the namespaces (everything else needs the list).
    Discover,
    /// Independent captures.
    Capture,
    /// Computations over captured data (correlations).
    Derive,
}

/// Errors a step can end with (its records already written stay in the bundle).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StepError {
    /// The bundle writer failed.
    #[error("bundle write failed: {0}")]
    Write(#[from] WriteError),
    /// Anything else, as text.
    #[error("{0}")]
    Other(String),
}

/// One unit of collection.
pub trait Step: Send + Sync + 'static {
    /// Short name shown in progress lines (`conntrack`, `netlink`, …).
    fn name(&self) -> &'static str;
    /// When it runs.
    fn phase(&self) -> Phase {
        Phase::Capture
    }
    /// True for short, command-free steps that must run even after the run was
    /// stopped (deadline or Ctrl-C), such as the node sysctls.
    fn runs_when_stopped(&self) -> bool {
        false
    }
    /// Runs the step; records are written through `ctx.writer` as it goes.
    fn run(self: Arc<Self>, ctx: Arc<RunContext>) -> BoxFuture<Result<Tally, StepError>>;
}

/// Counts of a step's records by status, plus free-form notes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Complete artifacts.
    pub ok: usize,
    /// Incomplete artifacts.
    pub partial: usize,
    /// Failed artifacts.
    pub failed: usize,
    /// Skipped on purpose.
    pub skipped: usize,
    /// Source absent on this node.
    pub unavailable: usize,
    /// Short notes (first failure reasons, fallbacks used).
    pub notes: Vec<String>,
}

impl Tally {
    /// Counts one record.
    pub fn add(&mut self, rec: &ArtifactRecord) {
        match rec.status {
            ArtifactStatus::Ok => self.ok += 1,
            ArtifactStatus::Partial => {
                self.partial += 1;
                self.note_reason(rec);
            }
            ArtifactStatus::Failed => {
                self.failed += 1;
                self.note_reason(rec);
            }
            ArtifactStatus::Skipped => self.skipped += 1,
            ArtifactStatus::Unavailable => self.unavailable += 1,
        }
    }

    /// Counts a record result, turning a write error into a failure note.
    pub fn add_result(&mut self, r: Result<ArtifactRecord, WriteError>) {
        match r {
            Ok(rec) => self.add(&rec),
            Err(e) => {
                self.failed += 1;
                self.notes.push(e.to_string());
            }
        }
    }

    /// Merges another tally.
    pub fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.partial += other.partial;
        self.failed += other.failed;
        self.skipped += other.skipped;
        self.unavailable += other.unavailable;
        self.notes.extend(other.notes);
    }

    fn note_reason(&mut self, rec: &ArtifactRecord) {
        if self.notes.len() < 3 {
            let why = rec.error.as_deref().unwrap_or("truncated");
            self.notes.push(format!("{}: {why}", rec.path));
        }
    }

    /// The status word for the progress line.
    pub fn status_word(&self) -> &'static str {
        if self.failed > 0 && self.ok + self.partial == 0 {
            "FAILED"
        } else if self.failed > 0 || self.partial > 0 {
            "partial"
        } else {
            "ok"
        }
    }

    /// One-line detail for the progress line.
    pub fn detail(&self) -> String {
        let mut parts = vec![format!("{} ok", self.ok)];
        for (n, w) in [
            (self.partial, "partial"),
            (self.failed, "failed"),
            (self.unavailable, "unavailable"),
            (self.skipped, "skipped"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {w}"));
            }
        }
        let mut s = parts.join(", ");
        if let Some(first) = self.notes.first() {
            s.push_str(" (");
            s.push_str(first);
            s.push(')');
        }
        s
    }
}

/// State shared by all steps of a run.
pub struct RunContext {
    /// The bundle being written.
    pub writer: BundleWriter,
    /// The options.
    pub options: Options,
    /// Path mapping under `--host-root`.
    pub host: HostPaths,
    /// The process runner.
    pub exec: Exec,
    /// Deadline / interrupt token.
    pub cancel: Cancel,
    /// When the run started.
    pub started: Instant,
    /// When the run must end.
    pub deadline: Instant,
    /// Progress display.
    pub progress: Progress,
    netns: Mutex<Arc<Vec<Netns>>>,
    netns_extra: Mutex<BTreeMap<String, NetnsExtra>>,
    snapshots: Mutex<BTreeMap<String, Arc<NetnsSnapshot>>>,
    notes: Mutex<Vec<String>>,
    discovered_node_name: Mutex<Option<String>>,
}

/// Facts about a namespace learned after discovery (by the netlink step).
#[derive(Debug, Clone, Default)]
pub struct NetnsExtra {
    /// The host namespace's id for it.
    pub host_nsid: Option<i32>,
    /// Why its data could not be read.
    pub error: Option<String>,
}

impl std::fmt::Debug for RunContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunContext")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl RunContext {
    /// A context writing into `writer`.
    pub fn new(writer: BundleWriter, options: Options, cancel: Cancel, progress: Progress) -> Self {
        let host = HostPaths::new(options.host_root.clone());
        let exec = Exec::new(options.host_root.clone(), options.timeout, cancel.clone());
        let started = Instant::now();
        RunContext {
            writer,
            deadline: started + options.deadline,
            options,
            host,
            exec,
            cancel,
            started,
            progress,
            netns: Mutex::new(Arc::new(Vec::new())),
            netns_extra: Mutex::new(BTreeMap::new()),
            snapshots: Mutex::new(BTreeMap::new()),
            notes: Mutex::new(Vec::new()),
            discovered_node_name: Mutex::new(None),
        }
    }

    /// The namespaces found by discovery (empty before it ran).
    pub fn netns(&self) -> Arc<Vec<Netns>> {
        self.netns.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// Sets the namespace list (discovery).
    pub fn set_netns(&self, list: Vec<Netns>) {
        if let Ok(mut g) = self.netns.lock() {
            *g = Arc::new(list);
        }
    }

    /// Records what was learned about a namespace after discovery.
    pub fn set_netns_extra(&self, id: &str, extra: NetnsExtra) {
        if let Ok(mut g) = self.netns_extra.lock() {
            g.insert(id.to_string(), extra);
        }
    }

    /// Stores a namespace's netlink snapshot for later phases.
    pub fn put_snapshot(&self, snap: NetnsSnapshot) {
        if let Ok(mut g) = self.snapshots.lock() {
            g.insert(snap.netns.clone(), Arc::new(snap));
        }
    }

    /// The netlink snapshots captured so far, by namespace id.
    pub fn snapshots(&self) -> BTreeMap<String, Arc<NetnsSnapshot>> {
        self.snapshots.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// Records the Kubernetes node name found during the run (when no option gave one).
    pub fn set_node_name(&self, name: impl Into<String>) {
        if let Ok(mut g) = self.discovered_node_name.lock() {
            *g = Some(name.into());
        }
    }

    /// Adds a run-level note to the manifest.
    pub fn note(&self, text: impl Into<String>) {
        if let Ok(mut g) = self.notes.lock() {
            g.push(text.into());
        }
    }

    /// Time left before the deadline.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// The index of namespaces with everything learned so far.
    pub fn netns_index(&self) -> NetnsIndex {
        let extra = self
            .netns_extra
            .lock()
            .map(|g| g.clone())
            .unwrap_or_default();
        NetnsIndex {
            namespaces: self
                .netns()
                .iter()
                .map(|ns| {
                    let mut info = ns.info.clone();
                    if let Some(x) = extra.get(&info.id) {
                        info.host_nsid = x.host_nsid;
                        if info.error.is_none() {
                            info.error = x.error.clone();
                        }
                    }
                    info
                })
                .collect(),
        }
    }
}

/// What a run produced.
#[derive(Debug)]
pub struct Outcome {
    /// The bundle's path.
    pub path: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    /// Its size in bytes.
    pub size: u64,
    /// Step failures (name, reason).
    pub step_failures: Vec<(String, String)>,
}

/// Why no bundle could be written at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// Creating or finishing the bundle failed.
    #[error("cannot write the bundle: {0}")]
    Bundle(#[from] WriteError),
}

/// The steps of a node-local run, in no particular order.
pub fn default_steps() -> Vec<Arc<dyn Step>> {
    vec![
        Arc::new(crate::netns::DiscoverStep),
        Arc::new(crate::netlink::NetlinkStep),
        Arc::new(crate::netlink::IpTextStep),
        Arc::new(crate::conntrack::ConntrackTableStep),
        Arc::new(crate::conntrack::ConntrackStatsStep),
        Arc::new(crate::iptables::IptablesStep),
        Arc::new(crate::iptables::NftStep),
        Arc::new(crate::ipvs::IpvsStep),
        Arc::new(crate::files::FilesStep),
        Arc::new(crate::node::NodeStep),
        Arc::new(crate::node::NodeSysctlsStep),
        Arc::new(crate::node::KernelLogStep),
        Arc::new(crate::node::ToolVersionsStep),
    ]
}

/// Runs `steps` and writes the bundle. Fails only when no bundle can be written.
pub async fn collect(
    options: Options,
    steps: Vec<Arc<dyn Step>>,
    cancel: Cancel,
    progress: Progress,
) -> Result<Outcome, RunError> {
    let started_at = Utc::now();
    let node = node_info(&options);
    let output = options.output.clone().unwrap_or_else(|| {
        PathBuf::from(layout::default_bundle_name(
            node.name.as_deref().unwrap_or(&node.hostname),
            started_at,
        ))
    });
    let stale = crate::spool::remove_stale(match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    });
    let writer = BundleWriter::create(
        &output,
        WriterOptions {
            max_artifact_bytes: options.max_artifact_size,
            max_total_bytes: options.max_bundle_size,
            replace_existing: options.force,
            ..WriterOptions::default()
        },
    )?;
    let options_json = serde_json::to_value(&options).unwrap_or(serde_json::Value::Null);
    let ctx = Arc::new(RunContext::new(
        writer.clone(),
        options,
        cancel.clone(),
        progress.clone(),
    ));

    // The deadline is one more way to trip the token.
    let deadline_task = {
        let cancel = cancel.clone();
        let at = ctx.deadline;
        tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            cancel.stop(StopReason::Deadline);
        })
    };

    // The API-only cluster pass (no discovery step) reads nothing of the node.
    let node_local = steps.iter().any(|s| s.phase() == Phase::Discover);
    if node_local {
        crate::node::check_privileges(&ctx);
    }
    for p in stale {
        ctx.note(format!(
            "removed the spool of an earlier run that was killed: {}",
            p.display()
        ));
    }

    let mut step_failures = Vec::new();
    for phase in [Phase::Discover, Phase::Capture, Phase::Derive] {
        let in_phase: Vec<_> = steps
            .iter()
            .filter(|s| s.phase() == phase)
            .cloned()
            .collect();
        step_failures.extend(run_phase(&ctx, in_phase).await);
        if phase == Phase::Capture && node_local {
            write_netns_index(&ctx);
        }
    }
    deadline_task.abort();

    let outcome = match cancel.reason() {
        None => CollectionOutcome::Complete,
        Some(StopReason::Deadline) => CollectionOutcome::DeadlineExceeded,
        Some(StopReason::Interrupted) => CollectionOutcome::Interrupted,
    };
    let mut notes = ctx.notes.lock().map(|g| g.clone()).unwrap_or_default();
    let mut node = node;
    if node.name.is_none() {
        // A name found later (matched against the API's Node objects) still belongs in the manifest.
        node.name = ctx.discovered_node_name.lock().ok().and_then(|g| g.clone());
    }
    for (name, why) in &step_failures {
        notes.push(format!("step {name}: {why}"));
    }
    if let Some(r) = cancel.reason() {
        notes.push(format!("run stopped early: {}", r.as_str()));
    }
    let collection = CollectionInfo {
        started_at,
        finished_at: Utc::now(),
        outcome,
        options: options_json,
        notes,
        resource_usage: resource_usage(),
    };
    let tool = ToolInfo {
        name: "netsnap-collect".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    };
    drop(ctx);
    let (path, manifest) =
        tokio::task::spawn_blocking(move || writer.finish(tool, node, collection))
            .await
            .map_err(|_| WriteError::Poisoned)??;
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    Ok(Outcome {
        path,
        manifest,
        size,
        step_failures,
    })
}

/// The collector's own and its children's `getrusage(2)` figures, taken just before the
/// manifest is written (`None` if the kernel refuses, which it does not on Linux).
fn resource_usage() -> Option<ResourceUsage> {
    use nix::sys::resource::{UsageWho, getrusage};
    let me = getrusage(UsageWho::RUSAGE_SELF).ok()?;
    let children = getrusage(UsageWho::RUSAGE_CHILDREN).ok()?;
    let ms = |t: nix::sys::time::TimeVal| {
        u64::try_from(t.tv_sec()).unwrap_or(0) * 1000
            + u64::try_from(t.tv_usec()).unwrap_or(0) / 1000
    };
    // Linux reports ru_maxrss in KiB.
    Some(ResourceUsage {
        peak_rss_kib: u64::try_from(me.max_rss()).unwrap_or(0),
        children_peak_rss_kib: u64::try_from(children.max_rss()).unwrap_or(0),
        user_cpu_ms: ms(me.user_time()),
        system_cpu_ms: ms(me.system_time()),
    })
}

async fn run_phase(ctx: &Arc<RunContext>, steps: Vec<Arc<dyn Step>>) -> Vec<(String, String)> {
    let mut failures = Vec::new();
    if let Some(r) = ctx.cancel.reason() {
        let (run_anyway, skipped): (Vec<_>, Vec<_>) =
            steps.into_iter().partition(|s| s.runs_when_stopped());
        for s in skipped {
            ctx.progress
                .start(s.name())
                .finish("skipped", r.as_str(), Duration::ZERO);
            failures.push((s.name().to_string(), format!("not started: {}", r.as_str())));
        }
        for s in run_anyway {
            let bar = ctx.progress.start(s.name());
            let start = Instant::now();
            let res = tokio::time::timeout(GRACE, tokio::spawn(s.clone().run(ctx.clone()))).await;
            match res {
                Ok(Ok(Ok(t))) => bar.finish(t.status_word(), &t.detail(), start.elapsed()),
                _ => {
                    bar.finish("FAILED", "did not finish", start.elapsed());
                    failures.push((s.name().to_string(), "did not finish after stop".into()));
                }
            }
        }
        return failures;
    }
    let mut running = FuturesUnordered::new();
    let mut aborts: Vec<(&'static str, tokio::task::AbortHandle)> = Vec::new();
    for step in steps {
        let name = step.name();
        let bar = ctx.progress.start(name);
        let start = Instant::now();
        let handle = tokio::spawn(step.run(ctx.clone()));
        aborts.push((name, handle.abort_handle()));
        running.push(async move { (name, bar, start, handle.await) });
    }
    let mut stopped_at: Option<Instant> = None;
    let mut abandoned = false;
    loop {
        let grace_over = async {
            match stopped_at {
                Some(t) if !abandoned => tokio::time::sleep_until((t + GRACE).into()).await,
                _ => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            next = running.next() => {
                let Some((name, bar, start, res)) = next else { break };
                aborts.retain(|(n, _)| *n != name);
                let took = start.elapsed();
                match res {
                    Ok(Ok(tally)) => bar.finish(tally.status_word(), &tally.detail(), took),
                    Ok(Err(e)) => {
                        bar.finish("FAILED", &e.to_string(), took);
                        failures.push((name.to_string(), e.to_string()));
                    }
                    Err(join) => {
                        let why = if join.is_panic() {
                            "panicked".to_string()
                        } else {
                            format!(
                                "abandoned after the {}s grace period ({})",
                                GRACE.as_secs(),
                                ctx.cancel.reason().map(|r| r.as_str()).unwrap_or("stopped")
                            )
                        };
                        bar.finish("FAILED", &why, took);
                        failures.push((name.to_string(), why));
                    }
                }
            }
            r = ctx.cancel.stopped(), if stopped_at.is_none() => {
                tracing::info!(reason = r.as_str(), "stopping; steps get {}s to record what they have", GRACE.as_secs());
                stopped_at = Some(Instant::now());
            }
            _ = grace_over => {
                // Steps that ignore the token are aborted; an artifact they had
                // started streaming has no record (the note says so).
                abandoned = true;
                for (name, a) in &aborts {
                    tracing::warn!(step = name, "abandoning step");
                    a.abort();
                }
                if !aborts.is_empty() {
                    ctx.note(format!(
                        "steps abandoned after the grace period: {}",
                        aborts.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                    ));
                }
            }
        }
    }
    failures
}

fn write_netns_index(ctx: &RunContext) {
    let index = ctx.netns_index();
    let spec = ArtifactSpec::native(layout::NETNS_INDEX, ArtifactSource::File);
    if ctx.writer.has_path(layout::NETNS_INDEX) {
        return;
    }
    if let Err(e) = ctx.writer.add_json(spec, &index, Duration::ZERO) {
        ctx.note(format!("netns/index.json: {e}"));
    }
}

/// Node identity from uname, with the Kubernetes node name when given.
pub fn node_info(options: &Options) -> NodeInfo {
    let (hostname, release, machine) = match nix::sys::utsname::uname() {
        Ok(u) => (
            u.nodename().to_string_lossy().into_owned(),
            u.release().to_string_lossy().into_owned(),
            Some(u.machine().to_string_lossy().into_owned()),
        ),
        Err(_) => (String::new(), String::new(), None),
    };
    NodeInfo {
        name: options.node_name.clone(),
        hostname,
        kernel_release: release,
        machine,
    }
}

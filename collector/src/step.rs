//! The step contract: what a data source implements ([`Step`]), what it runs
//! against ([`RunContext`]) and what it reports ([`Tally`], [`StepError`]).
//!
//! Sources depend on this module; the scheduler (`runner.rs`) runs whatever
//! steps it is given and names none of them; [`crate::steps`] is the one list.
//! The rules every step follows (MUST / MUST NOT) are in `docs/collector.md`,
//! "Extending: steps"; `collector/tests/step_compliance.rs` checks them for
//! every step of [`crate::steps::all`].

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use netsnap_bundle::native::{NetnsIndex, NetnsInfo, NetnsSnapshot};
use netsnap_bundle::{ArtifactRecord, ArtifactStatus, BundleWriter, WriteError};

use crate::options::{HostPaths, Options};
use crate::sys::cancel::Cancel;
use crate::sys::exec::Exec;
use crate::sys::progress::Progress;

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
        let exec = Exec::with_dump_slots(
            options.host_root.clone(),
            options.timeout,
            cancel.clone(),
            options.dump_slots,
        );
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

    /// The run-level notes added so far.
    pub fn notes(&self) -> Vec<String> {
        self.notes.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// The Kubernetes node name found during the run ([`RunContext::set_node_name`]).
    pub fn found_node_name(&self) -> Option<String> {
        self.discovered_node_name
            .lock()
            .ok()
            .and_then(|g| g.clone())
    }
}

/// A discovered namespace: its index entry plus how to enter it.
#[derive(Debug, Clone)]
pub struct Netns {
    /// The entry written to `netns/index.json`.
    pub info: NetnsInfo,
    /// Files that refer to it (named bind mounts first, then `/proc/<pid>/ns/net`),
    /// tried in order since processes may exit meanwhile.
    pub paths: Vec<PathBuf>,
}

impl Netns {
    /// The bundle id (`host` or `ns-<inode>`).
    pub fn id(&self) -> &str {
        &self.info.id
    }
}

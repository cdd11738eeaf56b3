//! One node: create the pod, wait for it, stream the collector's bundle over
//! exec into a local file, verify it, and delete the pod on every path.
//!
//! The work runs in its own task; Ctrl-C (the cancellation token), a timeout
//! or a panic ends that task, and the pod is deleted afterwards in all cases.
//! The pod name is derived from (run id, node), so even a create whose
//! response never arrived is cleaned up. The bundle is received into a hidden
//! `.NAME.partial` file next to the destination and renamed only after the
//! reader verified it; anything else removes it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::{Api, AttachParams, DeleteParams, PostParams, WatchEvent, WatchParams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::pod::{self, ApiMode, PodPlan};
use crate::verify::{self, Verdict};

/// Everything the pods of one run share.
#[derive(Debug, Clone)]
pub struct Session {
    /// Pods API in the plugin's namespace.
    pub pods: Api<Pod>,
    /// Namespace of the pods.
    pub namespace: String,
    /// Collector image.
    pub image: String,
    /// Service account (with `--api`), or none and no token.
    pub service_account: Option<String>,
    /// Run id (part of pod names and labels).
    pub run_id: String,
    /// How long a pod may take to run (image pull included).
    pub schedule_timeout: Duration,
    /// How long one collector run over exec may take.
    pub collect_timeout: Duration,
}

impl Session {
    fn plan(&self, node: &str) -> PodPlan {
        let lifetime = self.schedule_timeout + self.collect_timeout * 2 + Duration::from_secs(60);
        PodPlan {
            name: pod::pod_name(&self.run_id, node),
            namespace: self.namespace.clone(),
            node: node.to_string(),
            image: self.image.clone(),
            service_account: self.service_account.clone(),
            run_id: self.run_id.clone(),
            lifetime_secs: lifetime.as_secs(),
        }
    }
}

/// Why one node (or the cluster bundle) produced no bundle. One line each.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NodeError {
    /// The API refused the pod.
    #[error("creating pod {pod}: {message}")]
    Create {
        /// Pod name.
        pod: String,
        /// API message.
        message: String,
    },
    /// The pod did not run in time (node down, image pull slow, …).
    #[error("pod {pod} not running after {secs}s ({state})")]
    NotRunning {
        /// Pod name.
        pod: String,
        /// The timeout.
        secs: u64,
        /// Last state seen.
        state: String,
    },
    /// The pod or its container failed before the collector could run.
    #[error("pod {pod} failed: {reason}")]
    PodFailed {
        /// Pod name.
        pod: String,
        /// Reason and message from the pod status.
        reason: String,
    },
    /// Talking to the API server failed.
    #[error("{what}: {message}")]
    Api {
        /// What was being done.
        what: String,
        /// Error.
        message: String,
    },
    /// The exec stream ended without the collector's exit status.
    #[error(
        "stream cut after {bytes} bytes, before the collector's exit status ({cause}); partial file discarded"
    )]
    StreamCut {
        /// Bytes received.
        bytes: u64,
        /// Transport error, if any.
        cause: String,
    },
    /// The collector exited non-zero.
    #[error("collector failed{code}: {message}", code = exit_code.map(|c| format!(" (exit {c})")).unwrap_or_default())]
    CollectorFailed {
        /// Exit code, when the status carries one.
        exit_code: Option<i32>,
        /// Its last stderr line, or the status message.
        message: String,
    },
    /// The bytes received are not a valid bundle.
    #[error("received {bytes} bytes that are not a valid bundle ({reason}); discarded")]
    NotABundle {
        /// Bytes received.
        bytes: u64,
        /// Reader error.
        reason: String,
    },
    /// The collector did not finish in time.
    #[error("collector still running after {secs}s; gave up")]
    CollectTimeout {
        /// The timeout.
        secs: u64,
    },
    /// Writing the local file failed.
    #[error("writing {path}: {message}")]
    Io {
        /// Local path.
        path: PathBuf,
        /// Error.
        message: String,
    },
    /// Ctrl-C.
    #[error("interrupted")]
    Interrupted,
    /// The task collecting this node panicked or was lost.
    #[error("internal error: {0}")]
    Internal(String),
}

/// A bundle received, verified and in place.
#[derive(Debug, Clone)]
pub struct Received {
    /// Final path.
    pub path: PathBuf,
    /// Size in bytes.
    pub bytes: u64,
    /// Completeness.
    pub verdict: Verdict,
}

/// What happened to the pod afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cleanup {
    /// Deleted.
    Deleted,
    /// It did not exist (the create failed).
    NotFound,
    /// Deleting failed: the pod may be left behind.
    Failed(String),
}

/// The result of one pod's life.
#[derive(Debug)]
pub struct PodRun {
    /// Node.
    pub node: String,
    /// Pod name.
    pub pod: String,
    /// The node bundle, or why not.
    pub result: Result<Received, NodeError>,
    /// Pod deletion.
    pub cleanup: Cleanup,
}

/// A job some node pod runs once for the whole run: the cluster-scope bundle.
#[derive(Debug)]
pub struct SharedJob {
    argv: Vec<String>,
    dest: PathBuf,
    state: Mutex<JobState>,
}

#[derive(Debug)]
enum JobState {
    Open {
        attempts_left: u32,
        last: Option<NodeError>,
    },
    Running,
    Done(Result<Received, NodeError>),
}

impl SharedJob {
    /// A job running `argv` into `dest`, tried in at most `attempts` pods.
    pub fn new(argv: Vec<String>, dest: PathBuf, attempts: u32) -> Self {
        SharedJob {
            argv,
            dest,
            state: Mutex::new(JobState::Open {
                attempts_left: attempts,
                last: None,
            }),
        }
    }

    /// Takes the job if nobody runs or finished it; returns the attempts left after this one.
    fn claim(&self) -> Option<u32> {
        let mut state = self.state.lock().ok()?;
        match &*state {
            JobState::Open { attempts_left, .. } if *attempts_left > 0 => {
                let left = attempts_left - 1;
                *state = JobState::Running;
                Some(left)
            }
            _ => None,
        }
    }

    fn settle(&self, attempts_left: u32, result: Result<Received, NodeError>) {
        if let Ok(mut state) = self.state.lock() {
            *state = match result {
                Err(e) if attempts_left > 0 && !matches!(e, NodeError::Interrupted) => {
                    JobState::Open {
                        attempts_left,
                        last: Some(e),
                    }
                }
                r => JobState::Done(r),
            };
        }
    }

    /// The job's result once every pod is done.
    pub fn result(&self) -> Result<Received, NodeError> {
        match self.state.lock().as_deref() {
            Ok(JobState::Done(r)) => r.clone(),
            Ok(JobState::Open { last: Some(e), .. }) => Err(e.clone()),
            Ok(JobState::Open { last: None, .. }) => Err(NodeError::Internal(
                "no node pod got far enough to run it".to_string(),
            )),
            Ok(JobState::Running) => Err(NodeError::Interrupted),
            Err(_) => Err(NodeError::Internal("job state poisoned".to_string())),
        }
    }
}

/// Collects `node` into `dest` through a pod, then (if `shared` is unclaimed and
/// the node bundle arrived) runs the shared job in the same pod. Always deletes the pod.
pub async fn collect_node(
    session: Arc<Session>,
    node: String,
    api: ApiMode,
    dest: PathBuf,
    shared: Option<Arc<SharedJob>>,
    cancel: CancellationToken,
) -> PodRun {
    let plan = session.plan(&node);
    let pod_name = plan.name.clone();
    // The node bundle, as soon as it is in place: Ctrl-C during the shared job keeps it.
    let (node_done, mut node_received) = tokio::sync::oneshot::channel::<Received>();
    let owns_job = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let work = {
        let owns_job = owns_job.clone();
        let session = session.clone();
        let node = node.clone();
        let dest = dest.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            create(&session.pods, &plan).await?;
            wait_running(&session.pods, &plan.name, session.schedule_timeout).await?;
            let argv = pod::node_collect_command(&node, &api);
            let received = stream_bundle(
                &session.pods,
                &plan.name,
                argv,
                &dest,
                session.collect_timeout,
            )
            .await?;
            let _ = node_done.send(received.clone());
            if let Some((job, left)) = shared.and_then(|j| j.claim().map(|left| (j, left))) {
                owns_job.store(true, std::sync::atomic::Ordering::SeqCst);
                let r = stream_bundle(
                    &session.pods,
                    &plan.name,
                    job.argv.clone(),
                    &job.dest,
                    session.collect_timeout,
                )
                .await;
                tracing::debug!(pod = %plan.name, ok = r.is_ok(), "shared job finished");
                job.settle(left, r);
            }
            Ok(received)
        })
    };
    let abort = work.abort_handle();
    let result = tokio::select! {
        r = work => r.unwrap_or_else(|e| Err(NodeError::Internal(format!("collecting task ended: {e}")))),
        _ = cancel.cancelled() => {
            abort.abort();
            node_received.try_recv().map_err(|_| NodeError::Interrupted)
        }
    };
    if result.is_err() {
        remove_quietly(&partial_path(&dest)).await;
    }
    if let Some(job) = &shared
        && owns_job.load(std::sync::atomic::Ordering::SeqCst)
    {
        // This pod's task ended (Ctrl-C, panic) while it ran the shared job: settle it.
        let stuck = match job.state.lock() {
            Ok(mut state) if matches!(*state, JobState::Running) => {
                *state = JobState::Done(Err(NodeError::Interrupted));
                true
            }
            _ => false,
        };
        if stuck {
            remove_quietly(&partial_path(&job.dest)).await;
        }
    }
    let cleanup = delete(&session.pods, &pod_name).await;
    PodRun {
        node,
        pod: pod_name,
        result,
        cleanup,
    }
}

async fn remove_quietly(path: &Path) {
    match tokio::fs::remove_file(path).await {
        Ok(()) => tracing::debug!(path = %path.display(), "removed partial file"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %path.display(), "cannot remove partial file: {e}"),
    }
}

fn api_error(what: impl Into<String>, e: kube::Error) -> NodeError {
    NodeError::Api {
        what: what.into(),
        message: kube_message(&e),
    }
}

/// The API server's own message when there is one, else the client error.
fn kube_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

async fn create(pods: &Api<Pod>, plan: &PodPlan) -> Result<(), NodeError> {
    let pod = pod::collector_pod(plan);
    tracing::info!(pod = %plan.name, node = %plan.node, "creating pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .map(|_| ())
        .map_err(|e| NodeError::Create {
            pod: plan.name.clone(),
            message: kube_message(&e),
        })
}

/// Deletes the pod, bounded in time (the API may be what is failing).
async fn delete(pods: &Api<Pod>, name: &str) -> Cleanup {
    let dp = DeleteParams::default().grace_period(1);
    match tokio::time::timeout(Duration::from_secs(20), pods.delete(name, &dp)).await {
        Ok(Ok(_)) => {
            tracing::info!(pod = %name, "deleted pod");
            Cleanup::Deleted
        }
        Ok(Err(kube::Error::Api(s))) if s.code == 404 => Cleanup::NotFound,
        Ok(Err(e)) => Cleanup::Failed(kube_message(&e)),
        Err(_) => Cleanup::Failed("delete timed out after 20s".to_string()),
    }
}

/// Where a pod stands on the way to running the collector.
#[derive(Debug, PartialEq, Eq)]
pub enum PodState {
    /// The collector container runs: exec can start.
    Running,
    /// Not yet; the text says what it is waiting for.
    Waiting(String),
    /// It never will; the text says why.
    Failed(String),
}

/// Container waiting reasons that do not resolve by themselves within a collection.
const FATAL_WAITING: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
    "CrashLoopBackOff",
];

/// Reads the pod status the way `kubectl get pod` would summarise it.
pub fn pod_state(pod: &Pod) -> PodState {
    let Some(status) = &pod.status else {
        return PodState::Waiting("Pending, no status from the node's kubelet yet".to_string());
    };
    let container = status
        .container_statuses
        .as_ref()
        .and_then(|cs| cs.iter().find(|c| c.name == pod::CONTAINER));
    let phase = status.phase.as_deref().unwrap_or("Pending");
    if matches!(phase, "Failed" | "Succeeded") {
        let mut why = vec![phase.to_string()];
        why.extend(status.reason.clone());
        why.extend(status.message.clone());
        if let Some(t) = container
            .and_then(|c| c.state.as_ref())
            .and_then(|s| s.terminated.as_ref())
        {
            why.push(format!(
                "container {}: {} (exit {}){}",
                pod::CONTAINER,
                t.reason.as_deref().unwrap_or("terminated"),
                t.exit_code,
                t.message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ));
        }
        return PodState::Failed(why.join(", "));
    }
    if let Some(c) = container {
        let state = c.state.as_ref();
        if state.and_then(|s| s.running.as_ref()).is_some() && phase == "Running" {
            return PodState::Running;
        }
        if let Some(w) = state.and_then(|s| s.waiting.as_ref()) {
            let reason = w.reason.as_deref().unwrap_or("Waiting");
            let text = match &w.message {
                Some(m) => format!("{reason}: {m}"),
                None => reason.to_string(),
            };
            if FATAL_WAITING.contains(&reason) {
                return PodState::Failed(text);
            }
            return PodState::Waiting(text);
        }
        if let Some(t) = state.and_then(|s| s.terminated.as_ref()) {
            return PodState::Failed(format!(
                "container {} terminated: {} (exit {})",
                pod::CONTAINER,
                t.reason.as_deref().unwrap_or("unknown"),
                t.exit_code
            ));
        }
    }
    if container.is_none() && status.conditions.as_ref().is_none_or(|c| c.is_empty()) {
        return PodState::Waiting(format!(
            "{phase}, not picked up by the node's kubelet: node down or unreachable?"
        ));
    }
    let condition = status
        .conditions
        .as_ref()
        .and_then(|cs| cs.iter().find(|c| c.status == "False"))
        .map(|c| {
            format!(
                ", {}=False{}",
                c.type_,
                c.reason
                    .as_deref()
                    .map(|r| format!(" {r}"))
                    .unwrap_or_default()
            )
        })
        .unwrap_or_default();
    PodState::Waiting(format!("{phase}{condition}"))
}

/// Waits (get, then watch from that version) until the pod runs or cannot.
async fn wait_running(pods: &Api<Pod>, name: &str, timeout: Duration) -> Result<(), NodeError> {
    let mut last = "not seen yet".to_string();
    let waited = tokio::time::timeout(timeout, async {
        loop {
            let pod = pods
                .get(name)
                .await
                .map_err(|e| api_error(format!("reading pod {name}"), e))?;
            match pod_state(&pod) {
                PodState::Running => return Ok(()),
                PodState::Failed(why) => {
                    return Err(NodeError::PodFailed {
                        pod: name.to_string(),
                        reason: why,
                    });
                }
                PodState::Waiting(why) => last = why,
            }
            let version = pod.metadata.resource_version.clone().unwrap_or_default();
            let params = WatchParams::default()
                .fields(&format!("metadata.name={name}"))
                .timeout(timeout.as_secs().clamp(1, 290) as u32);
            let mut events = pods
                .watch(&params, &version)
                .await
                .map_err(|e| api_error(format!("watching pod {name}"), e))?
                .boxed();
            while let Some(event) = events
                .try_next()
                .await
                .map_err(|e| api_error(format!("watching pod {name}"), e))?
            {
                match event {
                    WatchEvent::Added(p) | WatchEvent::Modified(p) => match pod_state(&p) {
                        PodState::Running => return Ok(()),
                        PodState::Failed(why) => {
                            return Err(NodeError::PodFailed {
                                pod: name.to_string(),
                                reason: why,
                            });
                        }
                        PodState::Waiting(why) => last = why,
                    },
                    WatchEvent::Deleted(_) => {
                        return Err(NodeError::PodFailed {
                            pod: name.to_string(),
                            reason: "deleted by someone else while starting".to_string(),
                        });
                    }
                    WatchEvent::Bookmark(_) => {}
                    // Expired resource version and the like: start over with a fresh get.
                    WatchEvent::Error(e) => {
                        tracing::debug!(pod = %name, "watch error {}: restarting", e.message);
                        break;
                    }
                }
            }
        }
    })
    .await;
    match waited {
        Ok(r) => r,
        Err(_) => Err(NodeError::NotRunning {
            pod: name.to_string(),
            secs: timeout.as_secs(),
            state: last,
        }),
    }
}

/// The hidden file a bundle is received into before it is verified.
pub fn partial_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "bundle".to_string());
    dest.with_file_name(format!(".{name}.partial"))
}

/// Keeps the end of the collector's stderr (its summary and warnings) for messages.
const STDERR_TAIL: usize = 16 * 1024;

/// Runs `argv` in the pod, streams its stdout into `dest` through a partial
/// file, verifies it, and renames it into place.
async fn stream_bundle(
    pods: &Api<Pod>,
    pod_name: &str,
    argv: Vec<String>,
    dest: &Path,
    timeout: Duration,
) -> Result<Received, NodeError> {
    let partial = partial_path(dest);
    let result = tokio::time::timeout(timeout, receive(pods, pod_name, argv, &partial)).await;
    let bytes = match result {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => {
            remove_quietly(&partial).await;
            return Err(e);
        }
        Err(_) => {
            remove_quietly(&partial).await;
            return Err(NodeError::CollectTimeout {
                secs: timeout.as_secs(),
            });
        }
    };
    let check = partial.clone();
    let verdict = tokio::task::spawn_blocking(move || verify::verify_file(&check))
        .await
        .map_err(|e| NodeError::Internal(format!("verification task: {e}")))?;
    let verdict = match verdict {
        Ok(v) => v,
        Err(e) => {
            remove_quietly(&partial).await;
            return Err(NodeError::NotABundle {
                bytes,
                reason: e.to_string(),
            });
        }
    };
    tokio::fs::rename(&partial, dest)
        .await
        .map_err(|e| NodeError::Io {
            path: dest.to_path_buf(),
            message: e.to_string(),
        })?;
    Ok(Received {
        path: dest.to_path_buf(),
        bytes,
        verdict,
    })
}

/// Exec and copy stdout to `partial`; Ok(bytes) only with a Success status.
async fn receive(
    pods: &Api<Pod>,
    pod_name: &str,
    argv: Vec<String>,
    partial: &Path,
) -> Result<u64, NodeError> {
    let io_err = |e: std::io::Error| NodeError::Io {
        path: partial.to_path_buf(),
        message: e.to_string(),
    };
    let mut file = tokio::fs::File::create(partial).await.map_err(io_err)?;
    let params = AttachParams::default()
        .container(pod::CONTAINER)
        .stdin(false)
        .stdout(true)
        .stderr(true)
        .max_stdout_buf_size(1 << 20);
    tracing::info!(pod = %pod_name, command = %argv.join(" "), "exec");
    let mut process = pods
        .exec(pod_name, argv, &params)
        .await
        .map_err(|e| api_error(format!("exec into pod {pod_name}"), e))?;
    let (Some(mut stdout), Some(mut stderr), Some(status)) =
        (process.stdout(), process.stderr(), process.take_status())
    else {
        return Err(NodeError::Internal(
            "exec without stdout/stderr/status".to_string(),
        ));
    };
    let tail = Arc::new(Mutex::new(Vec::<u8>::new()));
    let stderr_task = tokio::spawn({
        let tail = tail.clone();
        async move {
            let mut buf = vec![0u8; 8192];
            while let Ok(n) = stderr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                if let Ok(mut t) = tail.lock() {
                    t.extend_from_slice(&buf[..n]);
                    if t.len() > STDERR_TAIL * 2 {
                        let cut = t.len() - STDERR_TAIL;
                        t.drain(..cut);
                    }
                }
            }
        }
    });
    // kube's exec task does not close the stdout pipe when the connection breaks, so
    // the end of the task (the status future resolving without a status) also ends
    // the copy, after draining what was already received.
    let mut status_future = std::pin::pin!(status);
    let mut status: Option<Option<Status>> = None;
    let mut bytes = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            biased;
            read = stdout.read(&mut buf) => {
                let n = read.map_err(io_err)?;
                if n == 0 {
                    break;
                }
                file.write_all(&buf[..n]).await.map_err(io_err)?;
                bytes += n as u64;
            }
            got = &mut status_future, if status.is_none() => {
                if got.is_none() {
                    while let Ok(Ok(n)) =
                        tokio::time::timeout(Duration::from_millis(100), stdout.read(&mut buf)).await
                    {
                        if n == 0 {
                            break;
                        }
                        file.write_all(&buf[..n]).await.map_err(io_err)?;
                        bytes += n as u64;
                    }
                    status = Some(None);
                    break;
                }
                status = Some(got);
            }
        }
    }
    file.flush().await.map_err(io_err)?;
    file.sync_all().await.map_err(io_err)?;
    let status = match status {
        Some(s) => s,
        None => status_future.await,
    };
    let transport = tokio::time::timeout(Duration::from_secs(5), process.join()).await;
    let stderr_abort = stderr_task.abort_handle();
    let _ = tokio::time::timeout(Duration::from_millis(500), stderr_task).await;
    stderr_abort.abort();
    let stderr_text = tail
        .lock()
        .map(|t| String::from_utf8_lossy(&t).into_owned())
        .unwrap_or_default();
    for line in stderr_text.lines().filter(|l| !l.trim().is_empty()) {
        tracing::debug!(pod = %pod_name, "collector: {line}");
    }
    match status {
        None => Err(NodeError::StreamCut {
            bytes,
            cause: match transport {
                Ok(Err(e)) => e.to_string(),
                Ok(Ok(())) => "connection closed".to_string(),
                Err(_) => "connection stalled".to_string(),
            },
        }),
        Some(s) if s.status.as_deref() == Some("Success") => Ok(bytes),
        Some(s) => Err(collector_failure(&s, &stderr_text)),
    }
}

/// Exit code and the most useful line from a failed exec.
fn collector_failure(status: &Status, stderr: &str) -> NodeError {
    let exit_code = status
        .details
        .as_ref()
        .and_then(|d| d.causes.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.reason.as_deref() == Some("ExitCode")))
        .and_then(|c| c.message.as_deref())
        .and_then(|m| m.trim().parse().ok());
    let message = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
        .or_else(|| status.message.clone())
        .unwrap_or_else(|| "no message".to_string());
    NodeError::CollectorFailed { exit_code, message }
}

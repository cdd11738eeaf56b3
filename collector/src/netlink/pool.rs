//! The pool of dedicated OS threads that enter namespaces (never a tokio worker,
//! never a forked process): each takes jobs (a full capture, a counters sample,
//! the host's nsids) and runs them with a current-thread runtime of its own.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use netsnap_bundle::layout;
use netsnap_bundle::native::{LinkStatsEntry, NetnsSnapshot};
use rtnetlink::packet_core::{NLM_F_ACK, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::link::LinkMessage;
use rtnetlink::packet_route::nsid::{NsidAttribute, NsidMessage};
use tokio::sync::mpsc;

use super::records::{dump, link_record, read_net_sysctls};

use crate::step::Netns;

/// A namespace to read.
#[derive(Debug, Clone)]
pub struct Target {
    /// Bundle id.
    pub id: String,
    /// Expected inode (guards against pid reuse).
    pub inode: u64,
    /// Files referring to it, tried in order.
    pub paths: Vec<PathBuf>,
}

/// Everything read from one namespace in the first pass.
#[derive(Debug, Clone)]
pub struct Capture {
    /// Bundle id.
    pub id: String,
    /// The dump, or why it failed.
    pub snapshot: Result<NetnsSnapshot, String>,
    /// The namespace's net sysctls, or why they could not be read.
    pub sysctls: Result<BTreeMap<String, String>, String>,
    /// When the link counters were read.
    pub at: Instant,
    /// Wall time.
    pub took: Duration,
}

/// A second sample of one namespace's link counters.
#[derive(Debug, Clone)]
pub struct StatsSample {
    /// Bundle id.
    pub id: String,
    /// The counters, or why they could not be read.
    pub links: Result<Vec<LinkStatsEntry>, String>,
    /// When they were read.
    pub at: Instant,
}

pub(super) enum Job {
    Full(Target),
    Stats(Target),
    HostNsids(Vec<Target>),
}

pub(super) enum JobResult {
    Full(Capture),
    Stats(StatsSample),
    HostNsids(BTreeMap<String, i32>, Vec<(String, String)>),
}

/// A pool of namespace-entering threads.
pub(super) struct Pool {
    queue: Arc<Mutex<VecDeque<Job>>>,
    pub(super) rx: mpsc::UnboundedReceiver<JobResult>,
}

impl Pool {
    pub(super) fn start(jobs: Vec<Job>, workers: usize, timeout: Duration) -> Result<Pool, String> {
        let n = workers.max(1).min(jobs.len().max(1));
        let queue = Arc::new(Mutex::new(jobs.into_iter().collect::<VecDeque<_>>()));
        let (tx, rx) = mpsc::unbounded_channel();
        for i in 0..n {
            let queue = queue.clone();
            let tx = tx.clone();
            std::thread::Builder::new()
                .name(format!("netsnap-netns-{i}"))
                .spawn(move || worker(queue, tx, timeout))
                .map_err(|e| format!("cannot start namespace thread: {e}"))?;
        }
        Ok(Pool { queue, rx })
    }

    /// Drops the jobs no thread has taken yet.
    pub(super) fn drain_pending(&self) -> Vec<Job> {
        self.queue
            .lock()
            .map(|mut q| q.drain(..).collect())
            .unwrap_or_default()
    }
}

fn worker(
    queue: Arc<Mutex<VecDeque<Job>>>,
    tx: mpsc::UnboundedSender<JobResult>,
    timeout: Duration,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("namespace thread runtime: {e}");
            return;
        }
    };
    loop {
        let job = match queue.lock() {
            Ok(mut q) => q.pop_front(),
            Err(_) => None,
        };
        let Some(job) = job else { break };
        let res = match job {
            Job::Full(t) => JobResult::Full(capture_one(&rt, &t, timeout)),
            Job::Stats(t) => JobResult::Stats(stats_one(&rt, &t, timeout)),
            Job::HostNsids(ts) => {
                let (ids, errs) = host_nsids(&rt, &ts, timeout);
                JobResult::HostNsids(ids, errs)
            }
        };
        if tx.send(res).is_err() {
            break;
        }
    }
}

fn open_ns(t: &Target) -> Result<File, String> {
    crate::sys::netns::open(t.inode, &t.paths)
}

fn enter(t: &Target) -> Result<(), String> {
    crate::sys::netns::enter(t.inode, &t.paths)
}

fn capture_one(rt: &tokio::runtime::Runtime, t: &Target, timeout: Duration) -> Capture {
    let start = Instant::now();
    let mut cap = Capture {
        id: t.id.clone(),
        snapshot: Err(String::new()),
        sysctls: Err(String::new()),
        at: start,
        took: Duration::ZERO,
    };
    if let Err(e) = enter(t) {
        cap.snapshot = Err(e.clone());
        cap.sysctls = Err(e);
        cap.took = start.elapsed();
        return cap;
    }
    let result = rt.block_on(async {
        match tokio::time::timeout(timeout, dump(&t.id)).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "netlink dump timed out after {}s",
                timeout.as_secs()
            )),
        }
    });
    cap.at = Instant::now();
    let (snapshot, conf) = match result {
        Ok((s, c)) => (Ok(s), c),
        Err(e) => (Err(e), BTreeMap::new()),
    };
    cap.snapshot = snapshot;
    let dumped = start.elapsed();
    let mut sysctls = read_net_sysctls();
    sysctls.extend(conf);
    cap.sysctls = Ok(sysctls);
    cap.took = start.elapsed();
    tracing::debug!(
        netns = %t.id,
        dump_ms = dumped.as_millis() as u64,
        sysctl_ms = (cap.took - dumped).as_millis() as u64,
        "namespace read"
    );
    cap
}

fn stats_one(rt: &tokio::runtime::Runtime, t: &Target, timeout: Duration) -> StatsSample {
    let mut s = StatsSample {
        id: t.id.clone(),
        links: Err(String::new()),
        at: Instant::now(),
    };
    if let Err(e) = enter(t) {
        s.links = Err(e);
        return s;
    }
    s.links = rt.block_on(async {
        let r = tokio::time::timeout(timeout, async {
            let (conn, handle, _) =
                rtnetlink::new_connection().map_err(|e| format!("netlink socket: {e}"))?;
            let task = tokio::spawn(conn);
            let links: Result<Vec<LinkMessage>, _> =
                handle.link().get().execute().try_collect().await;
            task.abort();
            let links = links.map_err(|e| format!("link dump: {e}"))?;
            Ok(links
                .iter()
                .map(|m| {
                    let l = link_record(m);
                    LinkStatsEntry {
                        index: l.index,
                        name: l.name,
                        stats: l.stats.unwrap_or_default(),
                    }
                })
                .collect())
        })
        .await;
        r.unwrap_or_else(|_| {
            Err(format!(
                "netlink dump timed out after {}s",
                timeout.as_secs()
            ))
        })
    });
    s.at = Instant::now();
    s
}

/// Host-side nsid of every target, asked from the host namespace.
fn host_nsids(
    rt: &tokio::runtime::Runtime,
    targets: &[Target],
    timeout: Duration,
) -> (BTreeMap<String, i32>, Vec<(String, String)>) {
    let mut ids = BTreeMap::new();
    let mut errs = Vec::new();
    let host = Target {
        id: layout::HOST_NETNS.into(),
        inode: std::fs::metadata("/proc/self/ns/net")
            .map(|m| m.ino())
            .unwrap_or(0),
        paths: vec![PathBuf::from("/proc/self/ns/net")],
    };
    if let Err(e) = enter(&host) {
        errs.push((layout::HOST_NETNS.to_string(), e));
        return (ids, errs);
    }
    let res = rt.block_on(async {
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(|e| format!("netlink socket: {e}"))?;
        let task = tokio::spawn(conn);
        for t in targets {
            let f = match open_ns(t) {
                Ok(f) => f,
                Err(e) => {
                    errs.push((t.id.clone(), e));
                    continue;
                }
            };
            match tokio::time::timeout(timeout, get_nsid(handle.clone(), &f)).await {
                Ok(Ok(Some(id))) => {
                    ids.insert(t.id.clone(), id);
                }
                Ok(Ok(None)) => {}
                Ok(Err(e)) => errs.push((t.id.clone(), e)),
                Err(_) => errs.push((t.id.clone(), "RTM_GETNSID timed out".into())),
            }
        }
        task.abort();
        Ok::<(), String>(())
    });
    if let Err(e) = res {
        errs.push((layout::HOST_NETNS.to_string(), e));
    }
    (ids, errs)
}

/// RTM_GETNSID for the namespace behind `fd`, as seen from the socket's namespace.
/// Read-only: the kernel does not assign an id on GET.
async fn get_nsid(mut handle: rtnetlink::Handle, fd: &File) -> Result<Option<i32>, String> {
    let mut msg = NsidMessage::default();
    msg.attributes = vec![NsidAttribute::Fd(fd.as_raw_fd() as u32)];
    let mut req = NetlinkMessage::from(RouteNetlinkMessage::GetNsId(msg));
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    let mut resp = handle
        .request(req)
        .map_err(|e| format!("RTM_GETNSID: {e}"))?;
    let mut found = None;
    while let Some(m) = resp.next().await {
        match m.payload {
            NetlinkPayload::Error(e) if e.code.is_some() => {
                return Err(format!("RTM_GETNSID: {e}"));
            }
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNsId(n)) => {
                for a in n.attributes {
                    if let NsidAttribute::Id(id) = a
                        && id >= 0
                    {
                        found = Some(id);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(found)
}

impl From<&Netns> for Target {
    fn from(n: &Netns) -> Self {
        Target {
            id: n.info.id.clone(),
            inode: n.info.inode,
            paths: n.paths.clone(),
        }
    }
}

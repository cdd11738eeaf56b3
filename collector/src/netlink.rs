//! Per-namespace state, natively over rtnetlink, with a bounded pool of
//! dedicated OS threads.
//!
//! How a namespace is read: a pool thread (never a tokio worker, never a forked
//! process) opens the namespace file, checks its inode, `setns(CLONE_NEWNET)`s
//! into it, and only then opens its netlink socket, so the socket belongs to
//! that namespace. A current-thread tokio runtime owned by the thread drives
//! rtnetlink. The same thread then reads `/proc/sys/net/...`: net sysctls are
//! resolved against the *reading thread's* namespace (verified by the
//! `sysctls_follow_the_thread` test), whereas `/proc/net` is `/proc/self/net`,
//! the thread-group leader's view, so it is never used here.
//!
//! Cost is one thread switch and a handful of netlink dumps per namespace; no
//! process per namespace, so 500 namespaces cost ~10x what 50 do.
//!
//! veth pairs are matched by namespace identity, never by index alone: the
//! host's nsid for each namespace (RTM_GETNSID with the namespace's fd) must
//! equal the host-side veth's `link_netnsid`, and both ends must point at each
//! other's index.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use netsnap_bundle::native::{
    AddrRecord, BridgePortInfo, LinkRecord, LinkStats, LinkStatsEntry, LinkStatsSample,
    NeighSummary, NetnsSnapshot, RouteRecord, VethPair, VxlanInfo,
};
use netsnap_bundle::{ArtifactSource, ArtifactSpec, ArtifactStatus, Completion, layout};
use rtnetlink::packet_core::{NLM_F_ACK, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use rtnetlink::packet_route::link::{
    AfSpecInet, AfSpecUnspec, InfoBridgePort, InfoData, InfoPortData, InfoVxlan, LinkAttribute,
    LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::neighbour::NeighbourMessage;
use rtnetlink::packet_route::nsid::{NsidAttribute, NsidMessage};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use tokio::sync::mpsc;

use crate::netns::Netns;
use crate::step::{BoxFuture, NetnsExtra, RunContext, Step, StepError, Tally};
use crate::sys::exec::Ran;

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

impl From<&Netns> for Target {
    fn from(n: &Netns) -> Self {
        Target {
            id: n.info.id.clone(),
            inode: n.info.inode,
            paths: n.paths.clone(),
        }
    }
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

enum Job {
    Full(Target),
    Stats(Target),
    HostNsids(Vec<Target>),
}

enum JobResult {
    Full(Capture),
    Stats(StatsSample),
    HostNsids(BTreeMap<String, i32>, Vec<(String, String)>),
}

/// A pool of namespace-entering threads.
struct Pool {
    queue: Arc<Mutex<VecDeque<Job>>>,
    rx: mpsc::UnboundedReceiver<JobResult>,
}

impl Pool {
    fn start(jobs: Vec<Job>, workers: usize, timeout: Duration) -> Result<Pool, String> {
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
    fn drain_pending(&self) -> Vec<Job> {
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

/// Dumps links, addresses, routes (all tables, both families) and neighbours
/// of the calling thread's namespace.
pub async fn dump(id: &str) -> Result<(NetnsSnapshot, BTreeMap<String, String>), String> {
    let (conn, handle, _) =
        rtnetlink::new_connection().map_err(|e| format!("netlink socket: {e}"))?;
    let task = tokio::spawn(conn);
    let res = async {
        let links: Vec<LinkMessage> = handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| format!("link dump: {e}"))?;
        let addrs: Vec<AddressMessage> = handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| format!("address dump: {e}"))?;
        let mut routes: Vec<RouteMessage> = Vec::new();
        for fam in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut m = RouteMessage::default();
            m.header.address_family = fam;
            let part: Vec<RouteMessage> = handle
                .route()
                .get(m)
                .execute()
                .try_collect()
                .await
                .map_err(|e| format!("route dump: {e}"))?;
            routes.extend(part);
        }
        let neigh: Vec<NeighbourMessage> = handle
            .neighbours()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| format!("neighbour dump: {e}"))?;
        Ok::<_, String>((links, addrs, routes, neigh))
    }
    .await;
    task.abort();
    let (links, addrs, routes, neigh) = res?;
    let mut conf = BTreeMap::new();
    for m in &links {
        inet_conf(m, &mut conf);
    }
    let links: Vec<LinkRecord> = links.iter().map(link_record).collect();
    let names: BTreeMap<u32, String> = links.iter().map(|l| (l.index, l.name.clone())).collect();
    Ok((
        NetnsSnapshot {
            netns: id.to_string(),
            addrs: addrs
                .iter()
                .filter_map(|a| addr_record(a, &names))
                .collect(),
            routes: routes.iter().map(|r| route_record(r, &names)).collect(),
            neighbours: neigh_summary(&neigh),
            links,
        },
        conf,
    ))
}

/// Per-interface IPv4 settings from the link dump's `IFLA_INET_CONF`, as
/// `net.ipv4.conf.<ifname>.<key>`: the same values as the sysctl files, without
/// touching `/proc/sys` (whose dentries are per namespace: reading them from many
/// namespaces invalidates the cache each time, which made 500 namespaces cost 20x 50).
fn inet_conf(m: &LinkMessage, out: &mut BTreeMap<String, String>) {
    let Some(name) = m.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    }) else {
        return;
    };
    for a in &m.attributes {
        let LinkAttribute::AfSpecUnspec(specs) = a else {
            continue;
        };
        for s in specs {
            let AfSpecUnspec::Inet(inet) = s else {
                continue;
            };
            for i in inet {
                let AfSpecInet::DevConf(c) = i else { continue };
                for (k, v) in [
                    ("rp_filter", c.rp_filter),
                    ("forwarding", c.forwarding),
                    ("route_localnet", c.route_localnet),
                    ("proxy_arp", c.proxy_arp),
                    ("arp_ignore", c.arp_ignore),
                    ("arp_announce", c.arp_announce),
                    ("accept_local", c.accept_local),
                ] {
                    out.insert(format!("net.ipv4.conf.{name}.{k}"), v.to_string());
                }
            }
        }
    }
}

fn flag_names(flags: LinkFlags) -> Vec<String> {
    flags
        .iter_names()
        .map(|(name, _)| match name {
            "Controller" => "MASTER".to_string(),
            "Port" => "SLAVE".to_string(),
            other => {
                let mut out = String::new();
                for (i, ch) in other.chars().enumerate() {
                    if ch.is_ascii_uppercase() && i > 0 {
                        out.push('_');
                    }
                    out.push(ch.to_ascii_uppercase());
                }
                out
            }
        })
        .collect()
}

fn mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Converts one RTM_NEWLINK message.
pub fn link_record(m: &LinkMessage) -> LinkRecord {
    let mut l = LinkRecord {
        index: m.header.index,
        flags: flag_names(m.header.flags),
        ..LinkRecord::default()
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n.clone(),
            LinkAttribute::Mtu(v) => l.mtu = Some(*v),
            LinkAttribute::OperState(s) => l.oper_state = s.to_string(),
            LinkAttribute::Address(b) => l.mac = Some(mac(b)),
            LinkAttribute::Controller(i) => l.master_index = Some(*i),
            LinkAttribute::Link(i) => l.link_index = Some(*i),
            LinkAttribute::LinkNetNsId(i) => l.link_netnsid = Some(*i),
            LinkAttribute::Stats64(s) => {
                l.stats = Some(LinkStats {
                    rx_packets: s.rx_packets,
                    tx_packets: s.tx_packets,
                    rx_bytes: s.rx_bytes,
                    tx_bytes: s.tx_bytes,
                    rx_errors: s.rx_errors,
                    tx_errors: s.tx_errors,
                    rx_dropped: s.rx_dropped,
                    tx_dropped: s.tx_dropped,
                })
            }
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    match i {
                        LinkInfo::Kind(k) => l.kind = Some(k.to_string()),
                        LinkInfo::Data(InfoData::Vxlan(v)) => l.vxlan = Some(vxlan_info(v)),
                        LinkInfo::PortData(InfoPortData::BridgePort(p)) => {
                            let mut bp = BridgePortInfo::default();
                            for x in p {
                                match x {
                                    InfoBridgePort::HairpinMode(h) => bp.hairpin = Some(*h),
                                    InfoBridgePort::State(s) => {
                                        bp.state = Some(s.to_string().to_ascii_lowercase())
                                    }
                                    _ => {}
                                }
                            }
                            l.bridge_port = Some(bp);
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    l
}

fn vxlan_info(v: &[InfoVxlan]) -> VxlanInfo {
    let mut x = VxlanInfo::default();
    for a in v {
        match a {
            InfoVxlan::Id(i) => x.id = Some(*i),
            InfoVxlan::Local(ip) => x.local = Some(IpAddr::V4(*ip)),
            InfoVxlan::Local6(ip) => x.local = Some(IpAddr::V6(*ip)),
            InfoVxlan::Port(p) => x.port = Some(*p),
            InfoVxlan::Link(i) => x.link_index = Some(*i),
            _ => {}
        }
    }
    x
}

fn addr_record(m: &AddressMessage, names: &BTreeMap<u32, String>) -> Option<AddrRecord> {
    let mut address = None;
    let mut local = None;
    let mut label = None;
    let mut broadcast = None;
    for a in &m.attributes {
        match a {
            AddressAttribute::Address(ip) => address = Some(*ip),
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Label(s) => label = Some(s.clone()),
            AddressAttribute::Broadcast(b) => broadcast = Some(IpAddr::V4(*b)),
            _ => {}
        }
    }
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on
    // point-to-point links (what `ip addr` shows first is the local one).
    let address = local.or(address)?;
    Some(AddrRecord {
        ifindex: m.header.index,
        ifname: label.or_else(|| names.get(&m.header.index).cloned()),
        address,
        prefix_len: m.header.prefix_len,
        scope: match m.header.scope {
            AddressScope::Universe => "global".to_string(),
            s => s.to_string(),
        },
        broadcast,
    })
}

fn route_addr(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v) => Some(IpAddr::V4(*v)),
        RouteAddress::Inet6(v) => Some(IpAddr::V6(*v)),
        _ => None,
    }
}

fn route_record(m: &RouteMessage, names: &BTreeMap<u32, String>) -> RouteRecord {
    let h = &m.header;
    let mut r = RouteRecord {
        table: u32::from(h.table),
        family: match h.address_family {
            AddressFamily::Inet => "inet".into(),
            AddressFamily::Inet6 => "inet6".into(),
            other => format!("{other:?}").to_ascii_lowercase(),
        },
        dst: "default".into(),
        route_type: format!("{:?}", h.kind).to_ascii_lowercase(),
        protocol: h.protocol.to_string(),
        scope: h.scope.to_string(),
        ..RouteRecord::default()
    };
    for a in &m.attributes {
        match a {
            RouteAttribute::Destination(d) => {
                if let Some(ip) = route_addr(d) {
                    r.dst = format!("{ip}/{}", h.destination_prefix_length);
                }
            }
            RouteAttribute::Gateway(g) => r.gateway = route_addr(g),
            RouteAttribute::Oif(i) => {
                r.oif = Some(*i);
                r.dev = names.get(i).cloned();
            }
            RouteAttribute::PrefSource(p) => r.prefsrc = route_addr(p),
            RouteAttribute::Priority(p) => r.metric = Some(*p),
            RouteAttribute::Table(t) => r.table = *t,
            _ => {}
        }
    }
    r
}

fn neigh_summary(msgs: &[NeighbourMessage]) -> NeighSummary {
    let mut s = NeighSummary::default();
    for m in msgs {
        match m.header.family {
            AddressFamily::Inet => s.ipv4 += 1,
            AddressFamily::Inet6 => s.ipv6 += 1,
            _ => continue,
        }
        *s.by_state
            .entry(m.header.state.to_string().to_ascii_uppercase())
            .or_insert(0) += 1;
    }
    s
}

/// Per-interface IPv4 settings kept for every interface.
const CONF_KEYS: &[&str] = &[
    "rp_filter",
    "forwarding",
    "route_localnet",
    "proxy_arp",
    "arp_ignore",
    "arp_announce",
    "accept_local",
];

/// Namespace-wide net sysctls kept.
const NET_KEYS: &[&str] = &[
    "net.ipv4.ip_forward",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.ping_group_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.neigh.default.gc_thresh1",
    "net.ipv4.neigh.default.gc_thresh2",
    "net.ipv4.neigh.default.gc_thresh3",
    "net.ipv6.neigh.default.gc_thresh1",
    "net.ipv6.neigh.default.gc_thresh2",
    "net.ipv6.neigh.default.gc_thresh3",
    "net.ipv6.conf.all.forwarding",
    "net.ipv6.conf.all.disable_ipv6",
    "net.ipv6.conf.default.disable_ipv6",
    "net.core.somaxconn",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_count",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
];

/// Reads one sysctl by dotted key from the calling thread's namespace.
pub fn read_sysctl(key: &str) -> Option<String> {
    read_sysctl_under(&PathBuf::from("/proc/sys"), key)
}

/// Reads dotted `key` under a `/proc/sys` directory (`--host-root` aware callers
/// pass their own). Interface names keep their dots: only the first components
/// are split, as the kernel's `conf/<ifname>/<key>` layout requires.
pub fn read_sysctl_under(base: &std::path::Path, key: &str) -> Option<String> {
    let rel = sysctl_rel_path(key);
    // Non-blocking, regular files only, capped (see `fileio`).
    crate::sys::fileio::read_small(&base.join(rel)).map(|s| s.replace('\t', " "))
}

/// The path of dotted sysctl `key` relative to `/proc/sys`.
pub fn sysctl_rel_path(key: &str) -> PathBuf {
    // net.ipv4.conf.<ifname>.<key>: the interface name may contain dots.
    let parts: Vec<&str> = key.split('.').collect();
    if parts.len() >= 5 && parts[0] == "net" && (parts[2] == "conf" || parts[2] == "neigh") {
        let ifname = parts[3..parts.len() - 1].join(".");
        let mut p = PathBuf::from(parts[0]);
        p.push(parts[1]);
        p.push(parts[2]);
        p.push(ifname);
        p.push(parts[parts.len() - 1]);
        return p;
    }
    key.split('.').collect()
}

/// The calling thread's namespace's net sysctls (present keys only): the
/// namespace-wide ones and `conf.all` / `conf.default`. Per-interface values
/// come from netlink (see `inet_conf`).
pub fn read_net_sysctls() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for k in NET_KEYS {
        if let Some(v) = read_sysctl(k) {
            out.insert((*k).to_string(), v);
        }
    }
    for c in ["all", "default"] {
        for k in CONF_KEYS {
            let key = format!("net.ipv4.conf.{c}.{k}");
            if let Some(v) = read_sysctl(&key) {
                out.insert(key, v);
            }
        }
    }
    out
}

/// veth pairs, matched by namespace identity.
///
/// `host_nsids` maps a namespace id to the host's nsid for it. A pod-side veth
/// `L` (index `i`, `IFLA_LINK` = `j`) in namespace `X` pairs with host link `P`
/// only when `P.index == j`, `P.link_netnsid == host_nsids[X]` and
/// `P.link_index == i`: index equality alone would match every pod's `eth0`.
/// Pairs inside one namespace (no `link_netnsid`) are listed once. Returns the
/// pairs and the number of veths whose peer could not be resolved.
pub fn veth_pairs(
    snaps: &BTreeMap<String, Arc<NetnsSnapshot>>,
    host_nsids: &BTreeMap<String, i32>,
) -> (Vec<VethPair>, usize) {
    let mut pairs = Vec::new();
    let mut unresolved = 0;
    let host = snaps.get(layout::HOST_NETNS);
    let is_veth = |l: &LinkRecord| l.kind.as_deref() == Some("veth");
    for (id, snap) in snaps {
        for l in snap.links.iter().filter(|l| is_veth(l)) {
            let Some(peer_idx) = l.link_index else {
                unresolved += 1;
                continue;
            };
            match l.link_netnsid {
                None => {
                    // Both ends in this namespace: list once.
                    if let Some(p) = snap
                        .links
                        .iter()
                        .find(|p| p.index == peer_idx && is_veth(p))
                    {
                        if l.index < p.index {
                            pairs.push(pair(id, l, id, p));
                        }
                    } else {
                        unresolved += 1;
                    }
                }
                Some(_) if id == layout::HOST_NETNS => {
                    // Host side: reported from the other end's loop.
                }
                Some(_) => {
                    let matched = host.zip(host_nsids.get(id)).and_then(|(h, nsid)| {
                        h.links.iter().find(|p| {
                            p.index == peer_idx
                                && is_veth(p)
                                && p.link_netnsid == Some(*nsid)
                                && p.link_index == Some(l.index)
                        })
                    });
                    match matched {
                        Some(p) => pairs.push(pair(id, l, layout::HOST_NETNS, p)),
                        None => unresolved += 1,
                    }
                }
            }
        }
    }
    (pairs, unresolved)
}

fn pair(ns: &str, l: &LinkRecord, peer_ns: &str, p: &LinkRecord) -> VethPair {
    VethPair {
        netns: ns.to_string(),
        ifindex: l.index,
        ifname: l.name.clone(),
        peer_netns: peer_ns.to_string(),
        peer_ifindex: p.index,
        peer_ifname: p.name.clone(),
    }
}

/// Native per-namespace capture: netlink dumps, sysctls, host nsids, veth
/// pairs, and the second sample of link counters.
#[derive(Debug, Clone, Copy)]
pub struct NetlinkStep;

impl Step for NetlinkStep {
    fn name(&self) -> &'static str {
        "netlink"
    }

    fn run(self: Arc<Self>, ctx: Arc<RunContext>) -> BoxFuture<Result<Tally, StepError>> {
        Box::pin(async move { run_netlink(ctx).await })
    }
}

async fn run_netlink(ctx: Arc<RunContext>) -> Result<Tally, StepError> {
    let mut tally = Tally::default();
    let targets: Vec<Target> = ctx.netns().iter().map(Target::from).collect();
    let timeout = ctx.options.timeout;
    let workers = ctx.options.netns_workers;
    let w = &ctx.writer;

    // Pass 1: full dumps.
    let mut pool = Pool::start(
        targets.iter().cloned().map(Job::Full).collect(),
        workers,
        timeout,
    )
    .map_err(StepError::Other)?;
    let mut first_at: BTreeMap<String, Instant> = BTreeMap::new();
    let mut done = 0;
    while done < targets.len() {
        let res = tokio::select! {
            r = pool.rx.recv() => r,
            _ = ctx.cancel.stopped() => None,
        };
        let Some(JobResult::Full(cap)) = res else {
            break;
        };
        done += 1;
        let spec = ArtifactSpec::native(
            layout::netns_path(&cap.id, layout::netns::NETLINK),
            ArtifactSource::Netlink,
        )
        .in_netns(&cap.id);
        match cap.snapshot {
            Ok(snap) => {
                tally.add_result(w.add_json(spec, &snap, cap.took));
                first_at.insert(cap.id.clone(), cap.at);
                ctx.put_snapshot(snap);
            }
            Err(e) => {
                ctx.set_netns_extra(
                    &cap.id,
                    NetnsExtra {
                        host_nsid: None,
                        error: Some(e.clone()),
                    },
                );
                tally.add_result(w.record_missing(
                    spec,
                    ArtifactStatus::Failed,
                    e,
                    Completion {
                        duration: cap.took,
                        ..Completion::default()
                    },
                ));
            }
        }
        let spec = ArtifactSpec::native(
            layout::netns_path(&cap.id, layout::netns::SYSCTLS),
            ArtifactSource::File,
        )
        .in_netns(&cap.id);
        match cap.sysctls {
            Ok(map) => tally.add_result(w.add_json(spec, &map, Duration::ZERO)),
            Err(e) => tally.add_result(w.record_missing(
                spec,
                ArtifactStatus::Failed,
                e,
                Completion::default(),
            )),
        }
    }
    if done < targets.len() {
        let reason = ctx
            .cancel
            .reason()
            .map(|r| r.as_str())
            .unwrap_or("namespace threads ended early");
        let _ = pool.drain_pending();
        let captured = ctx.snapshots();
        for t in &targets {
            for file in [layout::netns::NETLINK, layout::netns::SYSCTLS] {
                let path = layout::netns_path(&t.id, file);
                if captured.contains_key(&t.id) || w.has_path(&path) {
                    continue;
                }
                let spec = ArtifactSpec::native(path, ArtifactSource::Netlink).in_netns(&t.id);
                tally.add_result(w.record_missing(
                    spec,
                    ArtifactStatus::Failed,
                    format!("not read: {reason}"),
                    Completion::default(),
                ));
            }
        }
    }
    drop(pool);

    // Host nsids, asked after the dumps (dumping veths makes the kernel assign them).
    let snaps = ctx.snapshots();
    let non_host: Vec<Target> = targets
        .iter()
        .filter(|t| t.id != layout::HOST_NETNS && snaps.contains_key(&t.id))
        .cloned()
        .collect();
    let mut host_ids = BTreeMap::new();
    if !non_host.is_empty() && !ctx.cancel.is_stopped() {
        let mut pool =
            Pool::start(vec![Job::HostNsids(non_host)], 1, timeout).map_err(StepError::Other)?;
        let res = tokio::select! {
            r = pool.rx.recv() => r,
            _ = ctx.cancel.stopped() => None,
        };
        if let Some(JobResult::HostNsids(ids, errs)) = res {
            for (id, e) in errs {
                tracing::debug!(netns = %id, "host nsid: {e}");
            }
            host_ids = ids;
        }
    }
    for t in &targets {
        if let Some(nsid) = host_ids.get(&t.id) {
            ctx.set_netns_extra(
                &t.id,
                NetnsExtra {
                    host_nsid: Some(*nsid),
                    error: None,
                },
            );
        }
    }
    let (pairs, unresolved) = veth_pairs(&snaps, &host_ids);
    let spec = ArtifactSpec::native(layout::correlation::VETH_PAIRS, ArtifactSource::Derived)
        .with_attribute("unresolved_veths", unresolved.to_string());
    tally.add_result(w.add_json(spec, &pairs, Duration::ZERO));
    tally.notes.push(format!(
        "{} namespaces, {} veth pairs",
        snaps.len(),
        pairs.len()
    ));

    // Pass 2: link counters again, `--sample-interval` after each first sample.
    let interval = ctx.options.sample_interval;
    let earliest = first_at.values().min().copied();
    let sampled: Vec<Target> = targets
        .iter()
        .filter(|t| first_at.contains_key(&t.id))
        .cloned()
        .collect();
    if let Some(earliest) = earliest {
        let wait_until = earliest + interval;
        // The second pass must fit before the deadline: the wait plus one timeout.
        let enough_time =
            ctx.remaining() >= wait_until.saturating_duration_since(Instant::now()) + timeout;
        if !enough_time || ctx.cancel.is_stopped() {
            for t in &sampled {
                let spec = ArtifactSpec::native(
                    layout::netns_path(&t.id, layout::netns::LINK_STATS_2),
                    ArtifactSource::Netlink,
                )
                .in_netns(&t.id);
                tally.add_result(w.record_missing(
                    spec,
                    ArtifactStatus::Skipped,
                    "no time left before the deadline for a second sample",
                    Completion::default(),
                ));
            }
            return Ok(tally);
        }
        tokio::select! {
            _ = tokio::time::sleep_until(wait_until.into()) => {}
            _ = ctx.cancel.stopped() => {}
        }
        let mut pool = Pool::start(
            sampled.iter().cloned().map(Job::Stats).collect(),
            workers,
            timeout,
        )
        .map_err(StepError::Other)?;
        let mut got = 0;
        while got < sampled.len() {
            let res = tokio::select! {
                r = pool.rx.recv() => r,
                _ = ctx.cancel.stopped() => None,
            };
            let Some(JobResult::Stats(s)) = res else {
                break;
            };
            got += 1;
            let spec = ArtifactSpec::native(
                layout::netns_path(&s.id, layout::netns::LINK_STATS_2),
                ArtifactSource::Netlink,
            )
            .in_netns(&s.id);
            let t1 = first_at.get(&s.id).copied().unwrap_or(earliest);
            match s.links {
                Ok(links) => {
                    let sample = LinkStatsSample {
                        interval_ms: s.at.saturating_duration_since(t1).as_millis() as u64,
                        links,
                    };
                    tally.add_result(w.add_json(spec, &sample, Duration::ZERO));
                }
                Err(e) => tally.add_result(w.record_missing(
                    spec,
                    ArtifactStatus::Failed,
                    e,
                    Completion::default(),
                )),
            }
        }
        let _ = pool.drain_pending();
        for t in &sampled {
            let path = layout::netns_path(&t.id, layout::netns::LINK_STATS_2);
            if !w.has_path(&path) {
                let spec = ArtifactSpec::native(path, ArtifactSource::Netlink).in_netns(&t.id);
                let why = ctx
                    .cancel
                    .reason()
                    .map(|r| r.as_str())
                    .unwrap_or("not sampled");
                tally.add_result(w.record_missing(
                    spec,
                    ArtifactStatus::Failed,
                    format!("second sample not taken: {why}"),
                    Completion::default(),
                ));
            }
        }
    }
    Ok(tally)
}

/// Raw `ip -d addr show` and `ip route show table all` per namespace, for humans.
///
/// Host: run directly. Named namespaces: `ip -n NAME`. Others: `nsenter
/// --net=/proc/<pid>/ns/net ip …` when nsenter exists, else recorded
/// unavailable (the native `netlink.json` has the same facts).
#[derive(Debug, Clone, Copy)]
pub struct IpTextStep;

impl Step for IpTextStep {
    fn name(&self) -> &'static str {
        "netns-ip-text"
    }

    fn run(self: Arc<Self>, ctx: Arc<RunContext>) -> BoxFuture<Result<Tally, StepError>> {
        Box::pin(async move {
            let list = ctx.netns();
            let have_ip = ctx.exec.resolve("ip").is_some();
            let have_nsenter = ctx.exec.resolve("nsenter").is_some();
            let mut jobs = Vec::new();
            let mut non_host = 0usize;
            let cap = ctx.options.max_ip_text_netns;
            for ns in list.iter() {
                if !ns.info.is_host {
                    non_host += 1;
                }
                let over_cap = !ns.info.is_host && non_host > cap;
                for (file, content, args) in [
                    (
                        layout::netns::IP_ADDR,
                        layout::content::IP_ADDR,
                        &["-d", "addr", "show"][..],
                    ),
                    (
                        layout::netns::IP_ROUTE,
                        layout::content::IP_ROUTE,
                        &["route", "show", "table", "all"][..],
                    ),
                ] {
                    let spec =
                        ArtifactSpec::raw_command(layout::netns_path(ns.id(), file), content, &[])
                            .in_netns(ns.id());
                    let mut argv: Vec<String> = Vec::new();
                    if over_cap {
                        jobs.push((spec, Err((ArtifactStatus::Skipped, format!(
                            "raw ip text is limited to {cap} namespaces (--max-ip-text-netns); netlink.json has the same facts"
                        )))));
                        continue;
                    }
                    // nsenter with the namespace file works for named and unnamed
                    // namespaces alike and under --host-root; `ip -n NAME` needs
                    // /run/netns of our own mount namespace.
                    if ns.info.is_host {
                        argv.push("ip".into());
                    } else if let (true, Some(p)) = (have_nsenter, ns.paths.first()) {
                        argv.extend([
                            "nsenter".into(),
                            format!("--net={}", p.display()),
                            "ip".into(),
                        ]);
                    } else if let (Some(name), None) = (ns.info.names.first(), ctx.host.root()) {
                        argv.extend(["ip".into(), "-n".into(), name.clone()]);
                    } else {
                        jobs.push((
                            spec,
                            Err((
                                ArtifactStatus::Unavailable,
                                "nsenter not installed and the namespace has no usable name (see netlink.json)"
                                    .to_string(),
                            )),
                        ));
                        continue;
                    }
                    argv.extend(args.iter().map(|s| s.to_string()));
                    jobs.push((spec, Ok(argv)));
                }
            }
            let results: Vec<Result<crate::sys::exec::Ran, netsnap_bundle::WriteError>> =
                futures::stream::iter(jobs)
                    .map(|(spec, argv)| {
                        let ctx = ctx.clone();
                        async move {
                            match argv {
                                Ok(argv) if have_ip => {
                                    let refs: Vec<&str> = argv.iter().map(|s| s.as_str()).collect();
                                    ctx.exec
                                        .to_artifact(&ctx.writer, spec, &refs, Default::default())
                                        .await
                                }
                                Ok(_) => ctx
                                    .writer
                                    .record_missing(
                                        spec,
                                        ArtifactStatus::Unavailable,
                                        "program not installed: ip",
                                        Completion::default(),
                                    )
                                    .map(Ran::Missing),
                                Err((status, why)) => ctx
                                    .writer
                                    .record_missing(spec, status, why, Completion::default())
                                    .map(Ran::Missing),
                            }
                        }
                    })
                    .buffer_unordered(ctx.options.command_concurrency.max(1))
                    .collect()
                    .await;
            let mut tally = Tally::default();
            for r in results {
                tally.add_result(r.map(|ran| ran.record().clone()));
            }
            Ok(tally)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_paths_keep_dotted_ifnames() {
        assert_eq!(
            sysctl_rel_path("net.ipv4.conf.eth0.100.rp_filter"),
            PathBuf::from("net/ipv4/conf/eth0.100/rp_filter")
        );
        assert_eq!(
            sysctl_rel_path("net.ipv4.ip_forward"),
            PathBuf::from("net/ipv4/ip_forward")
        );
        assert_eq!(
            sysctl_rel_path("net.ipv4.neigh.default.gc_thresh1"),
            PathBuf::from("net/ipv4/neigh/default/gc_thresh1")
        );
    }

    fn veth(index: u32, name: &str, peer: u32, nsid: Option<i32>) -> LinkRecord {
        LinkRecord {
            index,
            name: name.into(),
            kind: Some("veth".into()),
            link_index: Some(peer),
            link_netnsid: nsid,
            ..LinkRecord::default()
        }
    }

    #[test]
    fn veth_pairs_use_namespace_identity_not_index() {
        // Two pods, both with eth0 at index 2 pointing at host index 7 and 8.
        let mut snaps = BTreeMap::new();
        snaps.insert(
            "host".to_string(),
            Arc::new(NetnsSnapshot {
                netns: "host".into(),
                links: vec![veth(7, "vethA", 2, Some(0)), veth(8, "vethB", 2, Some(1))],
                ..NetnsSnapshot::default()
            }),
        );
        for (id, peer) in [("ns-1", 7), ("ns-2", 8)] {
            snaps.insert(
                id.to_string(),
                Arc::new(NetnsSnapshot {
                    netns: id.into(),
                    links: vec![veth(2, "eth0", peer, Some(0))],
                    ..NetnsSnapshot::default()
                }),
            );
        }
        let ids = BTreeMap::from([("ns-1".to_string(), 0), ("ns-2".to_string(), 1)]);
        let (pairs, unresolved) = veth_pairs(&snaps, &ids);
        assert_eq!(unresolved, 0);
        assert_eq!(pairs.len(), 2);
        let a = pairs.iter().find(|p| p.netns == "ns-1").unwrap();
        assert_eq!((a.peer_ifname.as_str(), a.peer_ifindex), ("vethA", 7));
        // Swapped nsids must not produce a match.
        let swapped = BTreeMap::from([("ns-1".to_string(), 1), ("ns-2".to_string(), 0)]);
        let (pairs, unresolved) = veth_pairs(&snaps, &swapped);
        assert!(pairs.is_empty());
        assert_eq!(unresolved, 2);
    }
}

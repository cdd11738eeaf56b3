//! DNS probes from inside pod network namespaces.
//!
//! Finds the cluster DNS (kube-dns Service VIPs and ready endpoints from the
//! API, or the `nameserver` lines of pods' `resolv.conf`), then queries
//! `kubernetes.default.svc.<domain>` and every `--dns-name` over UDP and TCP
//! against the VIP and each endpoint directly, from a sample of pod
//! namespaces and the host. Comparing the two tells a dataplane fault (VIP
//! fails, endpoints answer) from a DNS server fault (both fail).
//!
//! Guarantees: the wire format is hickory-proto's; every socket is created by
//! a dedicated OS thread that has `setns(CLONE_NEWNET)` into the probed
//! namespace (threads never return to a pool, so no other code runs in a
//! foreign namespace); every query has a timeout; concurrency is bounded.

use std::collections::{BTreeSet, VecDeque};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use netsnap_bundle::layout;
use netsnap_bundle::native::{ClusterDns, DnsProbe, DnsProbeReport, NetnsIndex, PodCorrelation};
use netsnap_bundle::{ArtifactSource, ArtifactSpec, ArtifactStatus, BundleWriter, Completion};

use crate::options::HostPaths;
use crate::sys::fileio::{RESOLV_CONF_CAP, ReadError, RootDir, record_read_error, run_bounded};

/// Which pod namespaces to probe from (`--dns-from`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsFrom {
    /// Every pod namespace.
    All,
    /// The first N pods (sorted by `namespace/name`).
    Count(usize),
    /// One pod, `namespace/name`.
    Pod(String),
}

impl Default for DnsFrom {
    fn default() -> Self {
        DnsFrom::Count(3)
    }
}

/// The `--dns-from` text it parses from (`all`, `N`, `namespace/pod`).
impl std::fmt::Display for DnsFrom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DnsFrom::All => f.write_str("all"),
            DnsFrom::Count(n) => write!(f, "{n}"),
            DnsFrom::Pod(p) => f.write_str(p),
        }
    }
}

impl FromStr for DnsFrom {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "all" {
            return Ok(DnsFrom::All);
        }
        if let Ok(n) = s.parse::<usize>() {
            return Ok(DnsFrom::Count(n));
        }
        match s.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(DnsFrom::Pod(s.to_string()))
            }
            _ => Err(format!(
                "invalid --dns-from {s:?}: expected `all`, a number, or `namespace/pod`"
            )),
        }
    }
}

/// Options of the DNS step.
///
/// Serialized into the manifest's `collection.options` (flattened, under the
/// flag names: `dns_from`, `dns_names`, `dns_timeout`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct DnsOptions {
    /// `--dns-from`.
    #[serde(rename = "dns_from", serialize_with = "ser_display")]
    pub from: DnsFrom,
    /// Also probe from the host namespace.
    #[serde(skip)]
    pub include_host: bool,
    /// `--dns-name`: extra names to resolve.
    #[serde(rename = "dns_names")]
    pub names: Vec<String>,
    /// `--dns-timeout`: per attempt.
    #[serde(rename = "dns_timeout", serialize_with = "crate::options::ser_secs")]
    pub timeout: Duration,
    /// Attempts per query (retried only after a timeout or error).
    #[serde(skip)]
    pub attempts: u32,
    /// Probe threads at most.
    #[serde(skip)]
    pub concurrency: usize,
    /// Root of the host filesystem (`--host-root`): `/proc` is read under it.
    #[serde(skip)]
    pub host_root: Option<PathBuf>,
}

fn ser_display<S: serde::Serializer>(v: &DnsFrom, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

impl Default for DnsOptions {
    fn default() -> Self {
        DnsOptions {
            from: DnsFrom::default(),
            include_host: true,
            names: Vec::new(),
            timeout: Duration::from_secs(2),
            attempts: 2,
            concurrency: 8,
            host_root: None,
        }
    }
}

/// Where queries are sent from.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSource {
    /// Bundle id of the namespace (`host`, `ns-<inode>`).
    pub netns: String,
    /// `namespace/name` of the pod owning it.
    pub pod: Option<String>,
    /// File to `setns` into (`/run/netns/x`, `/proc/<pid>/ns/net`); None = the collector's own.
    pub ns_path: Option<PathBuf>,
    /// The namespace's inode, checked against `ns_path` before entering (None:
    /// whatever the path refers to when the probe runs).
    pub inode: Option<u64>,
    /// A process in the namespace whose root holds the pod's `/etc/resolv.conf`.
    pub pid: Option<u32>,
    /// Query AAAA too.
    pub ipv6: bool,
}

/// A parsed `resolv.conf`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    /// `nameserver` lines.
    pub nameservers: Vec<IpAddr>,
    /// `search` domains (last `search`/`domain` line wins, as in glibc).
    pub search: Vec<String>,
    /// `options` tokens.
    pub options: Vec<String>,
}

/// Parses `resolv.conf` text; unknown lines are ignored, as the libc resolver does.
pub fn parse_resolv_conf(text: &str) -> ResolvConf {
    let mut rc = ResolvConf::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                if let Some(ip) = words.next().and_then(|w| {
                    // IPv6 link-local nameservers may carry a `%zone`.
                    w.split('%').next().and_then(|a| a.parse().ok())
                }) {
                    rc.nameservers.push(ip);
                }
            }
            Some("search") | Some("domain") => rc.search = words.map(str::to_string).collect(),
            Some("options") => rc.options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    rc
}

/// The cluster domain from a pod's search path (`<ns>.svc.cluster.local svc.cluster.local cluster.local`).
pub fn cluster_domain(search: &[String]) -> Option<String> {
    search.iter().find_map(|s| {
        let s = s.trim_end_matches('.');
        s.strip_prefix("svc.")
            .or_else(|| s.split_once(".svc.").map(|(_, d)| d))
            .filter(|d| !d.is_empty())
            .map(str::to_string)
    })
}

/// Decides where cluster DNS is: the API's kube-dns VIPs and endpoints when known,
/// otherwise the nameservers of the pods' resolv.conf.
pub fn find_cluster_dns(
    service_ips: &[IpAddr],
    endpoint_ips: &[IpAddr],
    resolv: &[ResolvConf],
) -> ClusterDns {
    let domain = resolv.iter().find_map(|r| cluster_domain(&r.search));
    if !service_ips.is_empty() || !endpoint_ips.is_empty() {
        return ClusterDns {
            service_ips: service_ips.to_vec(),
            endpoint_ips: endpoint_ips.to_vec(),
            cluster_domain: domain.or_else(|| Some("cluster.local".into())),
            source: "api".into(),
        };
    }
    let ns: BTreeSet<IpAddr> = resolv
        .iter()
        .filter(|r| cluster_domain(&r.search).is_some())
        .flat_map(|r| r.nameservers.iter().copied())
        .collect();
    ClusterDns {
        service_ips: ns.into_iter().collect(),
        endpoint_ips: Vec::new(),
        cluster_domain: domain,
        source: "resolv.conf".into(),
    }
}

/// Chooses the namespaces to probe from, per `--dns-from`, plus the host.
pub fn plan_sources(
    corr: &PodCorrelation,
    index: &NetnsIndex,
    opts: &DnsOptions,
) -> Result<Vec<ProbeSource>, String> {
    let mut pods: Vec<_> = corr.pods.iter().filter(|p| p.netns.is_some()).collect();
    pods.sort_by(|a, b| a.pod.cmp(&b.pod));
    let chosen: Vec<_> = match &opts.from {
        DnsFrom::All => pods,
        DnsFrom::Count(n) => pods.into_iter().take(*n).collect(),
        DnsFrom::Pod(name) => {
            let p: Vec<_> = pods.into_iter().filter(|p| &p.pod == name).collect();
            if p.is_empty() {
                return Err(format!(
                    "--dns-from {name}: no pod with that name and a network namespace on this node"
                ));
            }
            p
        }
    };
    let mut out = Vec::new();
    if opts.include_host {
        out.push(ProbeSource {
            netns: layout::HOST_NETNS.into(),
            pod: None,
            ns_path: None,
            inode: None,
            pid: None,
            ipv6: false,
        });
    }
    for p in chosen {
        let Some(id) = p.netns.as_deref() else {
            continue;
        };
        let info = index.namespaces.iter().find(|n| n.id == id);
        // The pause process's root has no /etc/resolv.conf (kubelet mounts it into app
        // containers), so prefer any other process of the pod.
        let procs = info.map(|n| n.processes.as_slice()).unwrap_or_default();
        let pid = procs
            .iter()
            .find(|p| p.comm != "pause")
            .or_else(|| procs.first())
            .map(|p| p.pid);
        let ns_path = info
            .and_then(|n| n.names.first())
            .map(|name| PathBuf::from("/run/netns").join(name))
            .or_else(|| pid.map(|pid| PathBuf::from(format!("/proc/{pid}/ns/net"))));
        let Some(ns_path) = ns_path else {
            continue;
        };
        out.push(ProbeSource {
            netns: id.to_string(),
            pod: Some(p.pod.clone()),
            ns_path: Some(ns_path),
            inode: info.map(|n| n.inode),
            pid,
            ipv6: p.pod_ips.iter().any(|ip| ip.contains(':')),
        });
    }
    Ok(out)
}

/// One query to send.
#[derive(Debug, Clone)]
struct Job {
    source: usize,
    server: IpAddr,
    role: &'static str,
    tcp: bool,
    qname: String,
    qtype: RecordType,
}

/// Builds the query list for each source.
fn jobs(sources: &[ProbeSource], dns: &ClusterDns, names: &[String]) -> Vec<Job> {
    let mut qnames = Vec::new();
    if let Some(d) = &dns.cluster_domain {
        qnames.push(format!("kubernetes.default.svc.{d}"));
    }
    qnames.extend(names.iter().cloned());
    let role_vip = if dns.source == "api" {
        "service-vip"
    } else {
        "nameserver"
    };
    let servers: Vec<(IpAddr, &'static str)> = dns
        .service_ips
        .iter()
        .map(|ip| (*ip, role_vip))
        .chain(dns.endpoint_ips.iter().map(|ip| (*ip, "endpoint")))
        .collect();
    let mut out = Vec::new();
    for (i, src) in sources.iter().enumerate() {
        for (server, role) in &servers {
            for tcp in [false, true] {
                for q in &qnames {
                    let mut types = vec![RecordType::A];
                    if src.ipv6 {
                        types.push(RecordType::AAAA);
                    }
                    for qtype in types {
                        out.push(Job {
                            source: i,
                            server: *server,
                            role,
                            tcp,
                            qname: q.clone(),
                            qtype,
                        });
                    }
                }
            }
        }
    }
    out
}

/// The rcode as `dig` prints it, and the probe outcome it means.
fn rcode_names(rc: ResponseCode) -> (String, &'static str) {
    match rc {
        ResponseCode::NoError => ("NOERROR".into(), "answer"),
        ResponseCode::NXDomain => ("NXDOMAIN".into(), "nxdomain"),
        ResponseCode::ServFail => ("SERVFAIL".into(), "servfail"),
        ResponseCode::Refused => ("REFUSED".into(), "refused"),
        ResponseCode::FormErr => ("FORMERR".into(), "other-rcode"),
        ResponseCode::NotImp => ("NOTIMP".into(), "other-rcode"),
        other => (format!("RCODE{}", u16::from(other)), "other-rcode"),
    }
}

/// Sends one query from the calling thread's namespace and records the result.
fn query_once(
    server: IpAddr,
    tcp: bool,
    qname: &str,
    qtype: RecordType,
    timeout: Duration,
) -> Result<(Message, Duration), (bool, String)> {
    let name = Name::from_ascii(if qname.ends_with('.') {
        qname.to_string()
    } else {
        format!("{qname}.")
    })
    .map_err(|e| (false, format!("invalid name {qname:?}: {e}")))?;
    let mut msg = Message::query();
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(name, qtype));
    let id = msg.metadata.id;
    let bytes = msg
        .to_vec()
        .map_err(|e| (false, format!("cannot encode query: {e}")))?;
    let addr = SocketAddr::new(server, 53);
    let start = Instant::now();
    let is_timeout = |e: &io::Error| {
        matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        )
    };
    let err = |e: io::Error| (is_timeout(&e), e.to_string());
    if tcp {
        let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(err)?;
        let left = timeout
            .saturating_sub(start.elapsed())
            .max(Duration::from_millis(1));
        s.set_read_timeout(Some(left)).map_err(err)?;
        s.set_write_timeout(Some(left)).map_err(err)?;
        let len = u16::try_from(bytes.len()).map_err(|_| (false, "query too long".to_string()))?;
        let mut framed = len.to_be_bytes().to_vec();
        framed.extend_from_slice(&bytes);
        s.write_all(&framed).map_err(err)?;
        let mut lb = [0u8; 2];
        s.read_exact(&mut lb).map_err(err)?;
        let mut resp = vec![0u8; usize::from(u16::from_be_bytes(lb))];
        s.read_exact(&mut resp).map_err(err)?;
        let m =
            Message::from_vec(&resp).map_err(|e| (false, format!("malformed response: {e}")))?;
        return Ok((m, start.elapsed()));
    }
    let bind: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(bind).map_err(err)?;
    sock.connect(addr).map_err(err)?;
    sock.send(&bytes).map_err(err)?;
    let mut buf = vec![0u8; 65535];
    loop {
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err((true, "timed out".into()));
        }
        sock.set_read_timeout(Some(left)).map_err(err)?;
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            // A signal (e.g. SIGCHLD from a finished command) is not an answer: wait on.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(err(e)),
        };
        // Stray or spoofed datagrams (wrong id, garbage) are skipped, not taken as the answer.
        if let Ok(m) = Message::from_vec(&buf[..n])
            && m.metadata.id == id
            && m.metadata.message_type == MessageType::Response
            && m.metadata.op_code == OpCode::Query
        {
            return Ok((m, start.elapsed()));
        }
    }
}

fn run_job(job: &Job, src: &ProbeSource, opts: &DnsOptions) -> Vec<DnsProbe> {
    let mut out = Vec::new();
    for attempt in 1..=opts.attempts.max(1) {
        let base = DnsProbe {
            from_netns: src.netns.clone(),
            from_pod: src.pod.clone(),
            server: job.server,
            server_role: job.role.to_string(),
            transport: if job.tcp { "tcp" } else { "udp" }.to_string(),
            qname: job.qname.clone(),
            qtype: job.qtype.to_string(),
            outcome: String::new(),
            rcode: None,
            answers: Vec::new(),
            latency_ms: None,
            truncated: false,
            attempt,
            error: None,
        };
        match query_once(job.server, job.tcp, &job.qname, job.qtype, opts.timeout) {
            Ok((m, rtt)) => {
                let (rcode, outcome) = rcode_names(m.metadata.response_code);
                out.push(DnsProbe {
                    outcome: outcome.to_string(),
                    rcode: Some(rcode),
                    answers: m
                        .answers
                        .iter()
                        .map(|r| format!("{} {} {} {}", r.name, r.ttl, r.record_type(), r.data))
                        .collect(),
                    // Microsecond resolution: finer digits are noise.
                    latency_ms: Some(rtt.as_micros() as f64 / 1000.0),
                    truncated: m.metadata.truncation,
                    ..base
                });
                return out;
            }
            Err((timeout, e)) => out.push(DnsProbe {
                outcome: if timeout { "timeout" } else { "error" }.to_string(),
                error: Some(if timeout {
                    format!("no response within {:.1}s", opts.timeout.as_secs_f64())
                } else {
                    e
                }),
                ..base
            }),
        }
    }
    out
}

/// Enters the source's namespace through [`crate::sys::netns::enter`]: by its
/// inode when known (a recycled `/proc/<pid>` is refused), else whatever the
/// path refers to now (the host: `/proc/self/ns/net`).
fn enter(src: &ProbeSource) -> Result<(), String> {
    let path = src
        .ns_path
        .clone()
        .unwrap_or_else(|| PathBuf::from("/proc/self/ns/net"));
    let inode = match src.inode {
        Some(i) => i,
        None => crate::sys::netns::inode_of(&path)
            .ok_or_else(|| format!("cannot open {}", path.display()))?,
    };
    crate::sys::netns::enter(inode, &[path])
}

/// Runs every query from its source namespace with at most `opts.concurrency`
/// threads. Results come back in job order, one record per attempt.
pub fn run_probes(sources: &[ProbeSource], dns: &ClusterDns, opts: &DnsOptions) -> Vec<DnsProbe> {
    let jobs = jobs(sources, dns, &opts.names);
    let queue: Mutex<VecDeque<(usize, Job)>> = Mutex::new(jobs.into_iter().enumerate().collect());
    let total = queue.lock().map(|q| q.len()).unwrap_or(0);
    let results: Mutex<Vec<(usize, Vec<DnsProbe>)>> = Mutex::new(Vec::with_capacity(total));
    let workers = opts.concurrency.clamp(1, 64).min(total.max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                // This thread only ever enters namespaces and dies with the scope.
                let mut current: Option<Option<PathBuf>> = None;
                let mut entered_err: Option<String> = None;
                loop {
                    let Some((n, job)) = queue.lock().ok().and_then(|mut q| q.pop_front()) else {
                        return;
                    };
                    let src = &sources[job.source];
                    if current.as_ref() != Some(&src.ns_path) {
                        entered_err = enter(src).err();
                        current = Some(src.ns_path.clone());
                    }
                    let probes = match &entered_err {
                        None => run_job(&job, src, opts),
                        Some(e) => vec![DnsProbe {
                            from_netns: src.netns.clone(),
                            from_pod: src.pod.clone(),
                            server: job.server,
                            server_role: job.role.to_string(),
                            transport: if job.tcp { "tcp" } else { "udp" }.to_string(),
                            qname: job.qname.clone(),
                            qtype: job.qtype.to_string(),
                            outcome: "error".into(),
                            rcode: None,
                            answers: Vec::new(),
                            latency_ms: None,
                            truncated: false,
                            attempt: 1,
                            error: Some(e.clone()),
                        }],
                    };
                    if let Ok(mut r) = results.lock() {
                        r.push((n, probes));
                    }
                }
            });
        }
    });
    let mut r = results.into_inner().unwrap_or_default();
    r.sort_by_key(|(n, _)| *n);
    r.into_iter().flat_map(|(_, p)| p).collect()
}

/// The path of a source's `/etc/resolv.conf` as shown in messages: through
/// `/proc/<pid>/root` for a pod, the node's own file for the host namespace
/// (it is read with [`read_resolv_conf`], never by opening this path).
pub fn resolv_conf_path(src: &ProbeSource, host_root: Option<&std::path::Path>) -> Option<PathBuf> {
    let rel = match src.pid {
        Some(pid) => format!("proc/{pid}/root/etc/resolv.conf"),
        None if src.netns == layout::HOST_NETNS => "etc/resolv.conf".to_string(),
        None => return None,
    };
    Some(match host_root {
        Some(r) => r.join(rel),
        None => PathBuf::from("/").join(rel),
    })
}

/// Reads a source's `/etc/resolv.conf` inside the right root: the pod's
/// (`/proc/<pid>/root`, where a symlink leaving it is refused) or the node's.
/// Regular files only, at most [`RESOLV_CONF_CAP`] bytes, abandoned after
/// `timeout`. None when the source has no process to read it through.
pub fn read_resolv_conf(
    src: &ProbeSource,
    host_root: Option<&std::path::Path>,
    timeout: Duration,
) -> Option<Result<Vec<u8>, ReadError>> {
    let host = HostPaths::new(host_root.map(std::path::Path::to_path_buf));
    let pid = match src.pid {
        Some(pid) => Some(pid),
        None if src.netns == layout::HOST_NETNS => None,
        None => return None,
    };
    let shown = resolv_conf_path(src, host_root)
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    Some(run_bounded(&shown, timeout, move || {
        let root = match pid {
            Some(pid) => RootDir::container(&host, pid)?,
            None => RootDir::host(&host)?,
        };
        root.read_capped("/etc/resolv.conf", RESOLV_CONF_CAP)
    }))
}

/// The DNS step: stores each source's resolv.conf, finds cluster DNS, probes,
/// and writes `dns/probes.json`. Never fails the run; problems are recorded.
pub fn collect_dns(
    writer: &BundleWriter,
    sources: &[ProbeSource],
    service_ips: &[IpAddr],
    endpoint_ips: &[IpAddr],
    opts: &DnsOptions,
) -> DnsProbeReport {
    let started = Instant::now();
    let mut resolvs = Vec::new();
    for src in sources {
        let path = layout::netns_path(&src.netns, layout::netns::RESOLV_CONF);
        if writer.has_path(&path) {
            // The node-local capture may already have stored it.
            continue;
        }
        let spec =
            ArtifactSpec::raw_file(&path, layout::content::RESOLV_CONF).in_netns(src.netns.clone());
        let t = Instant::now();
        match read_resolv_conf(src, opts.host_root.as_deref(), opts.timeout) {
            Some(Ok(bytes)) => {
                resolvs.push(parse_resolv_conf(&String::from_utf8_lossy(&bytes)));
                let _ = writer.add_bytes(
                    spec.with_attribute("pid", src.pid.map(|p| p.to_string()).unwrap_or_default()),
                    &bytes,
                    Completion {
                        duration: t.elapsed(),
                        ..Completion::default()
                    },
                );
            }
            Some(Err(e)) => {
                let spec = match src.pid {
                    Some(pid) => spec.with_attribute("pid", pid.to_string()),
                    None => spec,
                };
                let _ = record_read_error(writer, spec, &e, t.elapsed());
            }
            None => {
                let _ = writer.record_missing(
                    spec,
                    ArtifactStatus::Unavailable,
                    "no process known in this namespace",
                    Completion::default(),
                );
            }
        }
    }
    let cluster = find_cluster_dns(service_ips, endpoint_ips, &resolvs);
    let spec = ArtifactSpec::native(layout::dns::PROBES, ArtifactSource::Probe);
    if cluster.service_ips.is_empty() && cluster.endpoint_ips.is_empty() {
        let report = DnsProbeReport {
            cluster_dns: cluster,
            probes: Vec::new(),
        };
        // Not an error on a node without cluster DNS to find (no API, no pods).
        let _ = writer.record_missing(
            spec,
            ArtifactStatus::Unavailable,
            "cluster DNS not found: no kube-dns Service/endpoints from the API and no pod resolv.conf with a cluster search path",
            Completion {
                duration: started.elapsed(),
                ..Completion::default()
            },
        );
        return report;
    }
    let report = DnsProbeReport {
        probes: run_probes(sources, &cluster, opts),
        cluster_dns: cluster,
    };
    let _ = writer.add_json(spec, &report, started.elapsed());
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_and_domain() {
        let rc = parse_resolv_conf(
            "# generated by kubelet\nsearch default.svc.cluster.local svc.cluster.local cluster.local lab.internal\nnameserver 10.96.0.10\nnameserver fe80::1%eth0\noptions ndots:5 ; trailing\n",
        );
        assert_eq!(rc.nameservers.len(), 2);
        assert_eq!(rc.options, vec!["ndots:5"]);
        assert_eq!(cluster_domain(&rc.search).as_deref(), Some("cluster.local"));
        assert_eq!(
            cluster_domain(&["svc.k8s.example.".into()]).as_deref(),
            Some("k8s.example")
        );
        assert_eq!(cluster_domain(&["lab.internal".into()]), None);
        let host = parse_resolv_conf("nameserver 192.168.56.1\nsearch lab.internal\n");
        let found = find_cluster_dns(&[], &[], &[host.clone(), rc.clone()]);
        assert_eq!(found.source, "resolv.conf");
        // Only resolv.confs with a cluster search path count: the host's upstream is not cluster DNS.
        assert_eq!(
            found.service_ips,
            vec![
                "10.96.0.10"
                    .parse::<IpAddr>()
                    .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                "fe80::1"
                    .parse()
                    .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
            ]
        );
    }

    #[test]
    fn sources_follow_dns_from() {
        use netsnap_bundle::native::{NetnsInfo, NetnsProcess, PodNetns};
        let mut corr = PodCorrelation::default();
        let mut index = NetnsIndex::default();
        for (i, name) in ["b/two", "a/one", "c/three", "d/none"].iter().enumerate() {
            let id = format!("ns-{i}");
            corr.pods.push(PodNetns {
                pod: name.to_string(),
                netns: (*name != "d/none").then(|| id.clone()),
                pod_ips: vec![if i == 2 {
                    "fd00::3".into()
                } else {
                    format!("10.0.0.{i}")
                }],
                ..PodNetns::default()
            });
            index.namespaces.push(NetnsInfo {
                id,
                names: if i == 0 { vec!["named".into()] } else { vec![] },
                processes: vec![NetnsProcess {
                    pid: 100 + i as u32,
                    ..NetnsProcess::default()
                }],
                ..NetnsInfo::default()
            });
        }
        let plan = |from: DnsFrom| {
            plan_sources(
                &corr,
                &index,
                &DnsOptions {
                    from,
                    ..DnsOptions::default()
                },
            )
        };
        let two = plan(DnsFrom::Count(2)).unwrap_or_default();
        let pods: Vec<_> = two.iter().map(|s| s.pod.clone()).collect();
        assert_eq!(pods, vec![None, Some("a/one".into()), Some("b/two".into())]);
        assert_eq!(two[0].netns, "host");
        assert_eq!(two[1].ns_path, Some(PathBuf::from("/proc/101/ns/net")));
        assert_eq!(two[0].pid, None, "the host reads its own /etc/resolv.conf");
        assert_eq!(
            resolv_conf_path(&two[0], Some(std::path::Path::new("/host"))),
            Some(PathBuf::from("/host/etc/resolv.conf"))
        );
        assert_eq!(
            resolv_conf_path(&two[1], None),
            Some(PathBuf::from("/proc/101/root/etc/resolv.conf"))
        );
        assert_eq!(two[2].ns_path, Some(PathBuf::from("/run/netns/named")));
        let all = plan(DnsFrom::All).unwrap_or_default();
        assert_eq!(all.len(), 4, "the pod without a netns is not probed");
        assert!(
            all.iter()
                .find(|s| s.pod.as_deref() == Some("c/three"))
                .is_some_and(|s| s.ipv6)
        );
        let one = plan(DnsFrom::Pod("c/three".into())).unwrap_or_default();
        assert_eq!(one.len(), 2);
        assert!(plan(DnsFrom::Pod("x/y".into())).is_err());
    }

    #[test]
    fn dns_from_parses() {
        assert_eq!("all".parse::<DnsFrom>(), Ok(DnsFrom::All));
        assert_eq!("5".parse::<DnsFrom>(), Ok(DnsFrom::Count(5)));
        assert_eq!(
            "kube-system/coredns-x".parse::<DnsFrom>(),
            Ok(DnsFrom::Pod("kube-system/coredns-x".into()))
        );
        assert!("a/b/c".parse::<DnsFrom>().is_err());
        assert!("".parse::<DnsFrom>().is_err());
    }
}

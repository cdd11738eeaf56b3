//! Sending the probes: one thread per source namespace at a time, entered through
//! [`crate::sys::netns::enter`], one record per attempt.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use netsnap_bundle::native::{ClusterDns, DnsProbe};

use super::{DnsOptions, ProbeSource};

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

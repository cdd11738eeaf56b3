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

pub mod probe;
pub mod resolv;

pub use probe::run_probes;
pub use resolv::{
    ResolvConf, cluster_domain, parse_resolv_conf, read_resolv_conf, resolv_conf_path,
};

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use netsnap_bundle::layout;
use netsnap_bundle::native::{ClusterDns, DnsProbeReport, NetnsIndex, PodCorrelation};
use netsnap_bundle::{ArtifactSource, ArtifactSpec, ArtifactStatus, BundleWriter, Completion};

use crate::sys::fileio::record_read_error;

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
    use std::net::Ipv4Addr;

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

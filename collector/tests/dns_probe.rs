//! DNS probes against a real dnsmasq behind a kube-proxy-style DNAT, from a
//! socket created inside a throwaway "pod" namespace.
//!
//! Topology (all inside namespaces the test creates):
//!
//! ```text
//!  pod netns            node netns                       dns-pod netns
//!  eth0 10.244.9.2/30 ─ vpod 10.244.9.1/30
//!                       vdns 10.244.9.5/30 ───────────── eth0 10.244.9.6/30  dnsmasq :53
//!                       blackhole 10.96.0.0/12 (VIPs without a rule vanish silently)
//!                       nat PREROUTING 10.96.0.10:53 -> 10.244.9.6:53 (udp, tcp)
//! ```
//!
//! Root-gated: skipped with a reason unless `NETSNAP_REQUIRE_LAB=1`, then failing.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)]

mod support;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use netsnap_bundle::native::{DnsProbe, DnsProbeReport};
use netsnap_bundle::{
    ArtifactStatus, Bundle, BundleWriter, CollectionInfo, CollectionOutcome, NodeInfo,
    ReaderOptions, ToolInfo, WriterOptions, layout,
};
use netsnap_collector::dns::{DnsOptions, ProbeSource, collect_dns};
use support::netlab::{Netns, Proc, lab_available};

const VIP: &str = "10.96.0.10";
const DNS_POD: &str = "10.244.9.6";
const UNKNOWN: &str = "nope.default.svc.cluster.local";

struct Lab {
    node: Netns,
    pod: Netns,
    dns: Netns,
    dnsmasq: Proc,
}

fn dnat(node: &Netns, op: &str) {
    for proto in ["udp", "tcp"] {
        node.exec(&[
            "iptables",
            "-t",
            "nat",
            op,
            "PREROUTING",
            "-d",
            "10.96.0.10/32",
            "-p",
            proto,
            "--dport",
            "53",
            "-j",
            "DNAT",
            "--to-destination",
            "10.244.9.6:53",
        ]);
    }
}

fn lab(case: &str) -> Option<Lab> {
    if let Err(reason) = lab_available(&["ip", "iptables", "dnsmasq"]) {
        eprintln!("skipping DNS lab test: {reason}");
        return None;
    }
    let s = format!("{case}-{}", std::process::id());
    let node = Netns::new(&format!("kdn-{s}"));
    let pod = Netns::new(&format!("kdp-{s}"));
    let dns = Netns::new(&format!("kdd-{s}"));
    node.ip(&[
        "link", "add", "vpod", "type", "veth", "peer", "name", "eth0", "netns", &pod.name,
    ]);
    node.ip(&[
        "link", "add", "vdns", "type", "veth", "peer", "name", "eth0", "netns", &dns.name,
    ]);
    node.ip(&["addr", "add", "10.244.9.1/30", "dev", "vpod"]);
    node.ip(&["addr", "add", "10.244.9.5/30", "dev", "vdns"]);
    node.ip(&["link", "set", "vpod", "up"]);
    node.ip(&["link", "set", "vdns", "up"]);
    // Like a node's Service CIDR: routed nowhere; only DNAT makes a VIP reachable.
    node.ip(&["route", "add", "blackhole", "10.96.0.0/12"]);
    node.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    pod.ip(&["addr", "add", "10.244.9.2/30", "dev", "eth0"]);
    pod.ip(&["link", "set", "eth0", "up"]);
    pod.ip(&["route", "add", "default", "via", "10.244.9.1"]);
    dns.ip(&["addr", "add", "10.244.9.6/30", "dev", "eth0"]);
    dns.ip(&["link", "set", "eth0", "up"]);
    dns.ip(&["route", "add", "default", "via", "10.244.9.5"]);
    dnat(&node, "-A");
    let dir = std::env::temp_dir().join(format!("netsnap-dns-{s}"));
    std::fs::create_dir_all(&dir).unwrap();
    let pidfile = format!("--pid-file={}", dir.join("dnsmasq.pid").display());
    let mut dnsmasq = dns.spawn(&[
        "dnsmasq",
        "--no-daemon",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--local=/cluster.local/",
        "--address=/kubernetes.default.svc.cluster.local/10.96.0.1",
        "--listen-address=10.244.9.6",
        "--bind-interfaces",
        "-p",
        "53",
        &pidfile,
    ]);
    // Ready when it answers on the endpoint.
    let lab_src = source(&pod, None);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        assert!(dnsmasq.running(), "dnsmasq exited at start");
        let r = probe(
            &lab_src,
            &[],
            &[DNS_POD.parse().unwrap()],
            1,
            Duration::from_millis(300),
        );
        if r.probes.iter().any(|p| p.outcome == "answer") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dnsmasq never answered: {:?}",
            r.probes
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(Lab {
        node,
        pod,
        dns,
        dnsmasq,
    })
}

fn source(pod: &Netns, pid: Option<u32>) -> ProbeSource {
    ProbeSource {
        netns: layout::netns_id(pod.inode()),
        pod: Some("default/client".into()),
        ns_path: Some(pod.path()),
        pid,
        ipv6: false,
    }
}

fn probe(
    src: &ProbeSource,
    vips: &[IpAddr],
    eps: &[IpAddr],
    attempts: u32,
    timeout: Duration,
) -> DnsProbeReport {
    let dir = tempfile::tempdir().unwrap();
    let writer =
        BundleWriter::create(dir.path().join("b.tar.zst"), WriterOptions::default()).unwrap();
    let opts = DnsOptions {
        names: vec![UNKNOWN.into()],
        timeout,
        attempts,
        ..DnsOptions::default()
    };
    let report = collect_dns(&writer, std::slice::from_ref(src), vips, eps, &opts);
    let now = chrono::Utc::now();
    let (path, m) = writer
        .finish(
            ToolInfo {
                name: "t".into(),
                version: "0".into(),
            },
            NodeInfo::default(),
            CollectionInfo {
                started_at: now,
                finished_at: now,
                outcome: CollectionOutcome::Complete,
                options: serde_json::Value::Null,
                notes: vec![],
            },
        )
        .unwrap();
    assert_eq!(
        m.artifact(layout::dns::PROBES).unwrap().status,
        ArtifactStatus::Ok
    );
    // What is in the bundle is what was returned.
    let b = Bundle::open(&path, &ReaderOptions::default()).unwrap();
    let stored: DnsProbeReport =
        serde_json::from_str(&b.read_text(layout::dns::PROBES).unwrap().unwrap()).unwrap();
    // serde_json's default float parsing may differ in the last ulp; compare the rest exactly.
    let strip = |r: &DnsProbeReport| {
        let mut r = r.clone();
        for p in &mut r.probes {
            p.latency_ms = p.latency_ms.map(|l| (l * 1000.0).round());
        }
        r
    };
    assert_eq!(strip(&stored), strip(&report));
    report
}

fn full(lab: &Lab, attempts: u32) -> DnsProbeReport {
    probe(
        &source(&lab.pod, None),
        &[VIP.parse().unwrap()],
        &[DNS_POD.parse().unwrap()],
        attempts,
        Duration::from_millis(700),
    )
}

fn find<'a>(r: &'a DnsProbeReport, role: &str, transport: &str, qname: &str) -> Vec<&'a DnsProbe> {
    r.probes
        .iter()
        .filter(|p| p.server_role == role && p.transport == transport && p.qname == qname)
        .collect()
}

const K8S: &str = "kubernetes.default.svc.cluster.local";

#[test]
fn healthy_vip_and_endpoint_answer_and_unknown_is_nxdomain() {
    let Some(lab) = lab("ok") else { return };
    let r = full(&lab, 1);
    assert_eq!(r.cluster_dns.source, "api");
    assert_eq!(
        r.cluster_dns.cluster_domain.as_deref(),
        Some("cluster.local")
    );
    // 2 servers x 2 transports x 2 names, one attempt each.
    assert_eq!(r.probes.len(), 8, "{:#?}", r.probes);
    for role in ["service-vip", "endpoint"] {
        for t in ["udp", "tcp"] {
            let p = find(&r, role, t, K8S);
            assert_eq!(p.len(), 1);
            let p = p[0];
            assert_eq!(p.outcome, "answer", "{p:?}");
            assert_eq!(p.rcode.as_deref(), Some("NOERROR"));
            assert_eq!(p.answers.len(), 1);
            assert!(
                p.answers[0].starts_with(&format!("{K8S}. ")),
                "{:?}",
                p.answers
            );
            assert!(p.answers[0].ends_with(" A 10.96.0.1"), "{:?}", p.answers);
            assert!(p.latency_ms.unwrap() > 0.0);
            assert!(!p.truncated);
            assert_eq!(p.from_netns, layout::netns_id(lab.pod.inode()));
            let n = find(&r, role, t, UNKNOWN)[0];
            assert_eq!(n.outcome, "nxdomain", "{n:?}");
            assert_eq!(n.rcode.as_deref(), Some("NXDOMAIN"));
            assert!(n.answers.is_empty());
        }
    }
    let vip = find(&r, "service-vip", "udp", K8S)[0];
    assert_eq!(vip.server.to_string(), VIP);
    drop(lab.dns);
    drop(lab.node);
}

#[test]
fn dnat_missing_vip_fails_endpoint_answers() {
    let Some(lab) = lab("nat") else { return };
    dnat(&lab.node, "-D");
    let r = full(&lab, 1);
    for t in ["udp", "tcp"] {
        for q in [K8S, UNKNOWN] {
            let vip = find(&r, "service-vip", t, q);
            assert_eq!(vip.len(), 1);
            assert_eq!(vip[0].outcome, "timeout", "{:?}", vip[0]);
            assert!(vip[0].rcode.is_none() && vip[0].latency_ms.is_none());
            assert_eq!(vip[0].error.as_deref(), Some("no response within 0.7s"));
        }
        assert_eq!(find(&r, "endpoint", t, K8S)[0].outcome, "answer");
        assert_eq!(find(&r, "endpoint", t, UNKNOWN)[0].outcome, "nxdomain");
    }
}

#[test]
fn dns_pod_gone_both_time_out_on_every_attempt() {
    let Some(mut lab) = lab("gone") else { return };
    // The DNS pod is torn down: its server stops and its interface goes away.
    lab.dnsmasq.stop();
    lab.dns.ip(&["link", "set", "eth0", "down"]);
    let t = Instant::now();
    let r = full(&lab, 2);
    // 8 queries x 2 attempts; concurrency keeps the wall time far below 16 x 0.7s.
    assert_eq!(r.probes.len(), 16, "{:#?}", r.probes);
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    // Nothing answers. A late ARP failure may turn a retry into "host unreachable";
    // either way no response arrived.
    for p in &r.probes {
        let unreachable = p.outcome == "error"
            && p.error
                .as_deref()
                .is_some_and(|e| e.contains("unreachable"));
        assert!(p.outcome == "timeout" || unreachable, "{p:?}");
        assert!(p.rcode.is_none() && p.answers.is_empty());
    }
    assert!(
        r.probes
            .iter()
            .filter(|p| p.attempt == 1)
            .all(|p| p.outcome == "timeout")
    );
    for role in ["service-vip", "endpoint"] {
        let attempts: Vec<u32> = find(&r, role, "udp", K8S)
            .iter()
            .map(|p| p.attempt)
            .collect();
        assert_eq!(attempts, vec![1, 2]);
    }
}

#[test]
fn dns_server_stopped_in_a_live_pod_is_refused_not_timeout() {
    let Some(mut lab) = lab("stop") else { return };
    lab.dnsmasq.stop();
    let r = full(&lab, 1);
    // ICMP port unreachable (UDP) and RST (TCP) come back fast, through the DNAT too.
    for p in &r.probes {
        assert_eq!(p.outcome, "error", "{p:?}");
        assert!(p.error.as_deref().unwrap().contains("refused"), "{p:?}");
    }
    assert_eq!(r.probes.len(), 8);
}

#[test]
fn resolv_conf_is_stored_per_namespace() {
    let Some(lab) = lab("rc") else { return };
    let mut sleeper = lab.pod.spawn(&["sleep", "30"]);
    let pid = sleeper.pid();
    let src = source(&lab.pod, Some(pid));
    let dir = tempfile::tempdir().unwrap();
    let writer =
        BundleWriter::create(dir.path().join("b.tar.zst"), WriterOptions::default()).unwrap();
    let opts = DnsOptions {
        timeout: Duration::from_millis(500),
        attempts: 1,
        ..DnsOptions::default()
    };
    // No API data: cluster DNS must come from the pod's resolv.conf (if it has a cluster search path).
    let want = std::fs::read(format!("/proc/{pid}/root/etc/resolv.conf")).unwrap();
    let report = collect_dns(&writer, std::slice::from_ref(&src), &[], &[], &opts);
    assert_eq!(report.cluster_dns.source, "resolv.conf");
    let now = chrono::Utc::now();
    let (path, m) = writer
        .finish(
            ToolInfo {
                name: "t".into(),
                version: "0".into(),
            },
            NodeInfo::default(),
            CollectionInfo {
                started_at: now,
                finished_at: now,
                outcome: CollectionOutcome::Complete,
                options: serde_json::Value::Null,
                notes: vec![],
            },
        )
        .unwrap();
    let p = layout::netns_path(&src.netns, layout::netns::RESOLV_CONF);
    let rec = m.artifact(&p).unwrap();
    assert_eq!(rec.status, ArtifactStatus::Ok);
    assert_eq!(rec.netns.as_deref(), Some(src.netns.as_str()));
    let b = Bundle::open(&path, &ReaderOptions::default()).unwrap();
    assert_eq!(b.read_text(&p).unwrap().unwrap().as_bytes(), &want[..]);
    sleeper.stop();
}

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
use netsnap_bundle::testing::TestNode;
use netsnap_bundle::{ArtifactStatus, Bundle, BundleWriter, ReaderOptions, WriterOptions, layout};
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
    /// dnsmasq's pid-file directory, removed on drop (after dnsmasq, declared before it).
    _dir: tempfile::TempDir,
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
        eprintln!("SKIP lab test: DNS {case}: {reason}");
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
    let dir = tempfile::Builder::new()
        .prefix(&format!("netsnap-dns-{s}-"))
        .tempdir()
        .unwrap();
    let pidfile = format!("--pid-file={}", dir.path().join("dnsmasq.pid").display());
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
        _dir: dir,
    })
}

fn source(pod: &Netns, pid: Option<u32>) -> ProbeSource {
    ProbeSource {
        netns: layout::netns_id(pod.inode()),
        pod: Some("default/client".into()),
        ns_path: Some(pod.path()),
        inode: Some(pod.inode()),
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
    let (path, m) = writer.finish_as(&TestNode::new("node-1", now)).unwrap();
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
    let (path, m) = writer.finish_as(&TestNode::new("node-1", now)).unwrap();
    let p = layout::netns_path(&src.netns, layout::netns::RESOLV_CONF);
    let rec = m.artifact(&p).unwrap();
    assert_eq!(rec.status, ArtifactStatus::Ok);
    assert_eq!(rec.netns.as_deref(), Some(src.netns.as_str()));
    let b = Bundle::open(&path, &ReaderOptions::default()).unwrap();
    assert_eq!(b.read_text(&p).unwrap().unwrap().as_bytes(), &want[..]);
    sleeper.stop();
}

/// The whole run through the collector's runner: the API (test server serving the
/// fixture cluster moved to 10.213.0.0/16), pods in real namespaces, the correlation,
/// and DNS probes from a pod through a DNAT to a dnsmasq "CoreDNS" pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_run_api_correlation_and_dns() {
    use netsnap_bundle::k8s::PodRecord;
    use netsnap_bundle::native::PodCorrelation;
    use netsnap_collector::dns::DnsFrom;
    use netsnap_collector::kube::KubeOptions;
    use support::apiserver;

    if let Err(reason) = lab_available(&["ip", "iptables", "dnsmasq"]) {
        eprintln!("SKIP lab test: DNS full run: {reason}");
        return;
    }
    let s = format!("e2e-{}", std::process::id());
    let node = Netns::new(&format!("kdn-{s}"));
    let web = Netns::new(&format!("kdw-{s}"));
    let coredns = Netns::new(&format!("kdc-{s}"));
    let leak = Netns::new(&format!("kdl-{s}"));
    // Calico-style /32 pods routed by the node (no bridge, so replies cross the DNAT).
    for (ns, host_if, ip) in [
        (&web, "vweb", "10.213.1.7"),
        (&coredns, "vdns", "10.213.1.2"),
    ] {
        node.ip(&[
            "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
        ]);
        node.ip(&["addr", "add", "192.168.77.1/32", "dev", host_if]);
        node.ip(&["link", "set", host_if, "up"]);
        node.ip(&["route", "add", &format!("{ip}/32"), "dev", host_if]);
        ns.ip(&["addr", "add", &format!("{ip}/32"), "dev", "eth0"]);
        ns.ip(&["link", "set", "eth0", "up"]);
        ns.ip(&["route", "add", "192.168.77.1", "dev", "eth0"]);
        ns.ip(&[
            "route",
            "add",
            "default",
            "via",
            "192.168.77.1",
            "dev",
            "eth0",
        ]);
    }
    node.ip(&["route", "add", "blackhole", "10.96.0.0/12"]);
    node.ip(&["route", "add", "blackhole", "10.213.2.0/24"]);
    node.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    for proto in ["udp", "tcp"] {
        node.exec(&[
            "iptables",
            "-t",
            "nat",
            "-A",
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
            "10.213.1.2:53",
        ]);
    }
    // A leaked sandbox: holds a pod-CIDR address, no pod owns it.
    leak.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
    ]);
    leak.ip(&["addr", "add", "10.213.1.99/32", "dev", "eth0"]);
    leak.ip(&["link", "set", "eth0", "up"]);
    let dir = tempfile::tempdir().unwrap();
    let _dnsmasq = coredns.spawn(&[
        "dnsmasq",
        "--no-daemon",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--local=/cluster.local/",
        "--address=/kubernetes.default.svc.cluster.local/10.96.0.1",
        "--listen-address=10.213.1.2",
        "--bind-interfaces",
        "-p",
        "53",
        &format!("--pid-file={}", dir.path().join("dnsmasq.pid").display()),
    ]);
    // Wait until it answers.
    let src = source(&web, None);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !probe(
        &src,
        &[],
        &["10.213.1.2".parse().unwrap()],
        1,
        Duration::from_millis(300),
    )
    .probes
    .iter()
    .any(|p| p.outcome == "answer")
    {
        assert!(Instant::now() < deadline, "dnsmasq never answered");
        std::thread::sleep(Duration::from_millis(100));
    }

    let server = apiserver::start_rewriting(
        apiserver::Mode::Normal,
        vec![("10.244.".into(), "10.213.".into())],
    )
    .await;
    let kc = apiserver::kubeconfig(dir.path(), server.port, apiserver::closed_port());
    let out_path = dir.path().join("b.tar.zst");
    // No node name is given: it is found by matching the hostname against Node objects,
    // and must still end up in the manifest.
    let mut options = netsnap_collector::Options {
        output: Some(out_path.clone()),
        node_name: None,
        deadline: Duration::from_secs(40),
        sample_interval: Duration::from_millis(200),
        ..Default::default()
    };
    let kube = KubeOptions {
        kubeconfig: Some(kc),
        context: Some("lab".into()),
        node_name: None,
        hostname: Some("node-a".into()),
        request_timeout: Duration::from_secs(5),
        kubelet_fallback: false,
        ..KubeOptions::default()
    };
    let dns = DnsOptions {
        from: DnsFrom::Pod("default/web-7d9f8b6c5d-abcde".into()),
        // Only namespaces this test owns send traffic.
        include_host: false,
        timeout: Duration::from_millis(700),
        attempts: 1,
        ..DnsOptions::default()
    };
    options.kube = kube;
    options.dns = dns;
    let plan = netsnap_collector::steps::plan(&options);
    let outcome = netsnap_collector::collect(
        options,
        plan,
        netsnap_collector::Cancel::new(),
        netsnap_collector::sys::progress::Progress::detect(true),
    )
    .await
    .unwrap();
    let m = &outcome.manifest;
    assert_eq!(m.node.name.as_deref(), Some("node-a"));
    for path in netsnap_collector::kube::API_ARTIFACTS
        .iter()
        .chain(&[layout::correlation::PODS, layout::dns::PROBES])
    {
        let r = m.artifact(path).unwrap();
        assert_eq!(r.status, ArtifactStatus::Ok, "{path}: {:?}", r.error);
    }
    let b = Bundle::open(&out_path, &ReaderOptions::default()).unwrap();
    let pods: Vec<PodRecord> = b
        .read_text(layout::k8s::PODS)
        .unwrap()
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(pods.len(), 7);
    let corr: PodCorrelation =
        serde_json::from_str(&b.read_text(layout::correlation::PODS).unwrap().unwrap()).unwrap();
    assert_eq!(corr.node_name.as_deref(), Some("node-a"));
    let by = |name: &str| corr.pods.iter().find(|p| p.pod == name).unwrap();
    let w = by("default/web-7d9f8b6c5d-abcde");
    assert_eq!(w.netns, Some(layout::netns_id(web.inode())));
    assert_eq!(w.ifname.as_deref(), Some("eth0"));
    assert_eq!(w.mtu, Some(1500));
    assert_eq!(w.matched_by, vec!["ip"]);
    // Its veth peer is in the lab's node namespace, not the host: no host-side veth.
    assert_eq!(w.host_veth, None);
    assert_eq!(
        by("kube-system/coredns-668d6bf9bc-4xk2m").netns,
        Some(layout::netns_id(coredns.inode()))
    );
    assert_eq!(by("monitoring/node-exporter-q8r4t").netns, None);
    assert_eq!(by("default/batch-job-x2v9k").netns, None);
    // hostNetwork and other-node pods are not correlated.
    assert_eq!(corr.pods.len(), 4, "{:#?}", corr.pods);
    let leaked = corr
        .unowned_netns
        .iter()
        .find(|u| u.netns == layout::netns_id(leak.inode()))
        .unwrap();
    assert_eq!(leaked.addresses, vec!["10.213.1.99"]);

    let report: DnsProbeReport =
        serde_json::from_str(&b.read_text(layout::dns::PROBES).unwrap().unwrap()).unwrap();
    assert_eq!(
        report.cluster_dns.service_ips,
        vec!["10.96.0.10".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(
        report.cluster_dns.endpoint_ips,
        vec![
            "10.213.1.2".parse::<IpAddr>().unwrap(),
            "10.213.2.3".parse().unwrap()
        ]
    );
    assert!(report.probes.iter().all(|p| p.from_pod.as_deref()
        == Some("default/web-7d9f8b6c5d-abcde")
        && p.from_netns == layout::netns_id(web.inode())));
    for t in ["udp", "tcp"] {
        let at = |server: &str| {
            report
                .probes
                .iter()
                .find(|p| p.server.to_string() == server && p.transport == t && p.qname == K8S)
                .unwrap()
                .outcome
                .clone()
        };
        assert_eq!(at("10.96.0.10"), "answer");
        assert_eq!(at("10.213.1.2"), "answer");
        // The node-b endpoint is not reachable from this lab node.
        assert_eq!(at("10.213.2.3"), "timeout");
    }
    drop(server);
}

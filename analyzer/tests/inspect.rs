//! End-to-end tests of `netsnap-analyze inspect`: a bundle built from real captured
//! fixtures (fixtures/raw/*; k8s objects modelled on the seed tutorial's pods and
//! services), every view run through the real binary, table and JSON snapshotted.
//!
//! The same bundle is committed as `fixtures/bundles/inspect-example.tar.zst`;
//! `committed_example_is_current` fails when it is stale. Regenerate it with
//! `NETSNAP_UPDATE_FIXTURES=1 cargo test -p netsnap-analyzer --test inspect`.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use netsnap_analyzer::parse::{dns, ip, sysctl};
use netsnap_bundle::k8s::{
    EndpointSliceRecord, PodRecord, ServicePort, ServiceRecord, SliceEndpoint, SlicePort,
};
use netsnap_bundle::native::{
    ClusterDns, DnsProbe, DnsProbeReport, NetnsIndex, NetnsInfo, NetnsProcess, PodCorrelation,
    PodNetns, VethPair,
};
use netsnap_bundle::testing::TestNode;
use netsnap_bundle::{
    ArtifactSource, ArtifactSpec, ArtifactStatus, Bundle, BundleWriter, Completion, ReaderOptions,
    WriterOptions, layout,
};

const POD1_NS: &str = "ns-4026532301";
const POD2_NS: &str = "ns-4026532302";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn raw(rel: &str) -> String {
    let p = root().join("fixtures/raw").join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn collected_at() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-28T10:25:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn ok(ms: u64) -> Completion {
    Completion {
        exit_status: Some(0),
        duration: Duration::from_millis(ms),
        ..Completion::default()
    }
}

/// Native snapshot of one lab namespace, from its real `ip -j` captures.
fn native_from_ip_j(
    id: &str,
    prefix: &str,
    route_file: &str,
) -> netsnap_bundle::native::NetnsSnapshot {
    let mut links = ip::parse_json_links(&raw(&format!("ip/{prefix}-ip-j-d-link.json"))).unwrap();
    let addrs = ip::parse_json_links(&raw(&format!("ip/{prefix}-ip-j-addr.json"))).unwrap();
    for l in &mut links.links {
        l.addrs = addrs.by_index(l.index).unwrap().addrs.clone();
    }
    let routes = if route_file.ends_with(".json") {
        ip::parse_json_routes(&raw(route_file)).unwrap()
    } else {
        ip::parse_routes(&raw(route_file))
    };
    ip::to_native_snapshot(id, &links, &routes)
}

/// A DNS probe record from a real dig capture.
fn probe(file: &str, from_netns: &str, from_pod: Option<&str>, role: &str) -> DnsProbe {
    let d = dns::parse_dig(&raw(&format!("dns/{file}")));
    let server_text = d
        .server
        .as_ref()
        .and_then(|s| s.address.map(|a| a.to_string()))
        .or_else(|| {
            d.errors.iter().find_map(|e| {
                e.server
                    .as_deref()
                    .map(|s| s.split('#').next().unwrap().to_string())
            })
        })
        .unwrap();
    let tcp = d.args.as_deref().unwrap_or("").contains("+tcp");
    let outcome = match d.outcome() {
        dns::DigOutcome::Answer | dns::DigOutcome::NoData => "answer".to_string(),
        dns::DigOutcome::Rcode(r) => r.to_lowercase(),
        dns::DigOutcome::Timeout => "timeout".into(),
        dns::DigOutcome::Refused | dns::DigOutcome::Error => "error".into(),
    };
    let qname = d
        .question
        .first()
        .map(|q| q.name.clone())
        .unwrap_or_else(|| "kubernetes.default.svc.cluster.local.".into());
    DnsProbe {
        from_netns: from_netns.into(),
        from_pod: from_pod.map(str::to_string),
        server: server_text.parse().unwrap(),
        server_role: role.into(),
        transport: if tcp { "tcp" } else { "udp" }.into(),
        qname,
        qtype: d.question.first().map_or("A".into(), |q| q.rtype.clone()),
        outcome,
        rcode: d.status.clone(),
        answers: d.answer.iter().map(|r| r.data.clone()).collect(),
        latency_ms: d.query_time_ms.map(|t| t as f64),
        truncated: d.flags.iter().any(|f| f == "tc"),
        attempt: 1,
        error: d.errors.first().map(|e| e.text.clone()),
    }
}

fn pod(ns: &str, name: &str, uid: &str, node: &str, ip: &str, age_min: i64) -> PodRecord {
    PodRecord {
        namespace: ns.into(),
        name: name.into(),
        uid: uid.into(),
        node_name: Some(node.into()),
        phase: Some("Running".into()),
        ready: true,
        pod_ips: vec![ip.into()],
        host_ip: Some(
            if node == "node-two" {
                "192.168.50.10"
            } else {
                "192.168.50.11"
            }
            .into(),
        ),
        containers_ready: 1,
        containers_total: 1,
        created_at: Some(collected_at() - chrono::Duration::minutes(age_min)),
        ..PodRecord::default()
    }
}

fn svc(ns: &str, name: &str, ip: &str, ports: &[(&str, &str, i32)]) -> ServiceRecord {
    ServiceRecord {
        namespace: ns.into(),
        name: name.into(),
        uid: format!("uid-{name}"),
        type_: "ClusterIP".into(),
        cluster_ips: vec![ip.into()],
        ports: ports
            .iter()
            .map(|(n, proto, port)| ServicePort {
                name: (!n.is_empty()).then(|| n.to_string()),
                protocol: proto.to_string(),
                port: *port,
                target_port: Some(port.to_string()),
                node_port: None,
            })
            .collect(),
        created_at: Some(collected_at() - chrono::Duration::days(6)),
        ..ServiceRecord::default()
    }
}

fn slice(
    ns: &str,
    svc: &str,
    addrs: &[(&str, bool)],
    ports: &[(&str, &str, i32)],
) -> EndpointSliceRecord {
    EndpointSliceRecord {
        namespace: ns.into(),
        name: format!("{svc}-abcde"),
        service_name: Some(svc.into()),
        address_type: "IPv4".into(),
        endpoints: addrs
            .iter()
            .map(|(a, ready)| SliceEndpoint {
                addresses: vec![a.to_string()],
                ready: Some(*ready),
                ..SliceEndpoint::default()
            })
            .collect(),
        ports: ports
            .iter()
            .map(|(n, proto, port)| SlicePort {
                name: Some(n.to_string()),
                port: Some(*port),
                protocol: Some(proto.to_string()),
            })
            .collect(),
        created_at: None,
    }
}

fn native(p: impl Into<String>, src: ArtifactSource) -> ArtifactSpec {
    ArtifactSpec::native(p, src)
}

fn jsonl<T: serde::Serialize>(items: &[T]) -> Vec<u8> {
    let mut out = Vec::new();
    for i in items {
        out.extend(serde_json::to_vec(i).unwrap());
        out.push(b'\n');
    }
    out
}

fn finish(w: BundleWriter) {
    TestNode::new("node-two", collected_at())
        .kernel("6.18.44")
        .machine("x86_64")
        .took(3)
        .finish(w)
        .unwrap();
}

/// Writes the example bundle: the lab node `ipdns-node` as Kubernetes node `node-two`.
fn build_example(path: &Path, correlations: bool) {
    let w = BundleWriter::create(path, WriterOptions::default()).unwrap();

    // Namespaces: the node, the bridge pod (tutorial's hello-world), the calico-style pod.
    let proc_ = |pid, comm: &str, uid: Option<&str>| NetnsProcess {
        pid,
        comm: comm.into(),
        cgroup: None,
        pod_uid: uid.map(str::to_string),
        container_id: None,
    };
    let hello_uid = "386a9073-7e35-11e8-8a3d-bae97d2c1afd";
    let dns_uid = "7d1c3f0e-5b2a-4c4e-9f51-0a3e2d9c1b77";
    let index = NetnsIndex {
        namespaces: vec![
            NetnsInfo {
                id: layout::HOST_NETNS.into(),
                inode: 4026531840,
                is_host: true,
                processes: vec![proc_(1, "systemd", None), proc_(812, "kubelet", None)],
                process_count: 143,
                ..NetnsInfo::default()
            },
            NetnsInfo {
                id: POD1_NS.into(),
                inode: 4026532301,
                host_nsid: Some(1),
                processes: vec![
                    proc_(14552, "pause", Some(hello_uid)),
                    proc_(14601, "node", Some(hello_uid)),
                ],
                process_count: 2,
                pod_uid: Some(hello_uid.into()),
                has_pause: true,
                ..NetnsInfo::default()
            },
            NetnsInfo {
                id: POD2_NS.into(),
                inode: 4026532302,
                host_nsid: Some(2),
                processes: vec![
                    proc_(15010, "pause", Some(dns_uid)),
                    proc_(15077, "coredns", Some(dns_uid)),
                ],
                process_count: 2,
                pod_uid: Some(dns_uid.into()),
                has_pause: true,
                error: Some(
                    "netlink dump failed: Resource temporarily unavailable (os error 11)".into(),
                ),
                ..NetnsInfo::default()
            },
        ],
    };
    w.add_json(
        native(layout::NETNS_INDEX, ArtifactSource::Derived),
        &index,
        Duration::ZERO,
    )
    .unwrap();

    // Host: native netlink from `ip -j`, plus the raw text captures.
    let host = native_from_ip_j(
        layout::HOST_NETNS,
        "node",
        "ip/node-ip-j-route-table-all.json",
    );
    w.add_json(
        native(
            layout::netns_path("host", layout::netns::NETLINK),
            ArtifactSource::Netlink,
        )
        .in_netns("host"),
        &host,
        Duration::from_millis(3),
    )
    .unwrap();
    w.add_bytes(
        ArtifactSpec::raw_command(
            layout::netns_path("host", layout::netns::IP_ADDR),
            layout::content::IP_ADDR,
            &["ip", "-d", "addr", "show"],
        )
        .in_netns("host"),
        raw("ip/node-ip-d-addr.txt").as_bytes(),
        ok(4),
    )
    .unwrap();
    w.add_bytes(
        ArtifactSpec::raw_command(
            layout::netns_path("host", layout::netns::IP_ROUTE),
            layout::content::IP_ROUTE,
            &["ip", "route", "show", "table", "all"],
        )
        .in_netns("host"),
        raw("ip/node-ip-route-table-all.txt").as_bytes(),
        ok(3),
    )
    .unwrap();
    w.add_bytes(
        ArtifactSpec::raw_command(
            layout::node::IP_RULE,
            layout::content::IP_RULE,
            &["ip", "rule", "show"],
        ),
        raw("ip/node-ip-rule.txt").as_bytes(),
        ok(2),
    )
    .unwrap();
    w.add_bytes(
        ArtifactSpec::raw_command(
            layout::node::IP_NEIGH,
            layout::content::IP_NEIGH,
            &["ip", "neigh", "show"],
        ),
        raw("ip/node-ip-neigh.txt").as_bytes(),
        ok(2),
    )
    .unwrap();

    // Pod 1: native netlink (its routes only exist as text: parsed, then converted).
    let p1 = native_from_ip_j(POD1_NS, "pod1", "ip/pod1-ip-route-table-all.txt");
    w.add_json(
        native(
            layout::netns_path(POD1_NS, layout::netns::NETLINK),
            ArtifactSource::Netlink,
        )
        .in_netns(POD1_NS),
        &p1,
        Duration::from_millis(2),
    )
    .unwrap();
    w.add_bytes(
        ArtifactSpec::raw_file(
            layout::netns_path(POD1_NS, layout::netns::RESOLV_CONF),
            layout::content::RESOLV_CONF,
        )
        .in_netns(POD1_NS),
        raw("dns/resolv-pod.conf").as_bytes(),
        ok(0),
    )
    .unwrap();

    // Pod 2: the netlink dump failed, only the raw `ip` text exists (the fallback path).
    w.record_missing(
        native(
            layout::netns_path(POD2_NS, layout::netns::NETLINK),
            ArtifactSource::Netlink,
        )
        .in_netns(POD2_NS),
        ArtifactStatus::Failed,
        "netlink dump failed: Resource temporarily unavailable (os error 11)",
        Completion::default(),
    )
    .unwrap();
    w.add_bytes(
        ArtifactSpec::raw_command(
            layout::netns_path(POD2_NS, layout::netns::IP_ADDR),
            layout::content::IP_ADDR,
            &["ip", "addr", "show"],
        )
        .in_netns(POD2_NS),
        raw("ip/pod2-ip-addr.txt").as_bytes(),
        ok(3),
    )
    .unwrap();
    w.add_bytes(
        ArtifactSpec::raw_command(
            layout::netns_path(POD2_NS, layout::netns::IP_ROUTE),
            layout::content::IP_ROUTE,
            &["ip", "route", "show"],
        )
        .in_netns(POD2_NS),
        raw("ip/pod2-ip-route.txt").as_bytes(),
        ok(3),
    )
    .unwrap();

    // Correlations, as the collector would compute them for this lab.
    let pairs = vec![
        VethPair {
            netns: POD1_NS.into(),
            ifindex: 10,
            ifname: "eth0".into(),
            peer_netns: "host".into(),
            peer_ifindex: 11,
            peer_ifname: "veth4f7342d".into(),
        },
        VethPair {
            netns: POD2_NS.into(),
            ifindex: 2,
            ifname: "eth0".into(),
            peer_netns: "host".into(),
            peer_ifindex: 6,
            peer_ifname: "cali1a2b3c4d5e6".into(),
        },
    ];
    if correlations {
        w.add_json(
            native(layout::correlation::VETH_PAIRS, ArtifactSource::Derived),
            &pairs,
            Duration::ZERO,
        )
        .unwrap();
        let corr = PodCorrelation {
            node_name: Some("node-two".into()),
            pods: vec![
                PodNetns {
                    pod: "default/hello-world-5b446dd74b-pxtzt".into(),
                    uid: hello_uid.into(),
                    pod_ips: vec!["10.244.3.4".into()],
                    netns: Some(POD1_NS.into()),
                    matched_by: vec!["ip".into(), "cgroup-uid".into()],
                    ifname: Some("eth0".into()),
                    mtu: Some(1450),
                    host_veth: Some("veth4f7342d".into()),
                    host_veth_index: Some(11),
                },
                PodNetns {
                    pod: "kube-system/coredns-7db6d8ff4d-x8k2p".into(),
                    uid: dns_uid.into(),
                    pod_ips: vec!["10.244.3.20".into()],
                    netns: Some(POD2_NS.into()),
                    matched_by: vec!["ip".into()],
                    ifname: Some("eth0".into()),
                    mtu: Some(1500),
                    host_veth: Some("cali1a2b3c4d5e6".into()),
                    host_veth_index: Some(6),
                },
            ],
            unowned_netns: vec![],
        };
        w.add_json(
            native(layout::correlation::PODS, ArtifactSource::Derived),
            &corr,
            Duration::ZERO,
        )
        .unwrap();
    }

    // Kubernetes objects, modelled on the tutorial's `kubectl get pod -o wide` / `get service -A`.
    let mut kube_proxy = pod(
        "kube-system",
        "kube-proxy-8xq2w",
        "uid-kp",
        "node-two",
        "192.168.50.10",
        6 * 24 * 60,
    );
    kube_proxy.host_network = true;
    let pods = vec![
        pod(
            "default",
            "hello-world-5b446dd74b-7c7pk",
            "uid-7c7pk",
            "node-one",
            "10.244.18.4",
            22,
        ),
        pod(
            "default",
            "hello-world-5b446dd74b-pxtzt",
            hello_uid,
            "node-two",
            "10.244.3.4",
            22,
        ),
        pod(
            "kube-system",
            "coredns-7db6d8ff4d-x8k2p",
            dns_uid,
            "node-two",
            "10.244.3.20",
            15 * 24 * 60,
        ),
        kube_proxy,
    ];
    w.add_bytes(
        native(layout::k8s::PODS, ArtifactSource::KubernetesApi),
        &jsonl(&pods),
        ok(40),
    )
    .unwrap();
    let services = vec![
        svc(
            "default",
            "kubernetes",
            "10.96.0.1",
            &[("https", "TCP", 443)],
        ),
        svc(
            "kube-system",
            "csi-attacher-doplugin",
            "10.96.159.128",
            &[("dummy", "TCP", 12345)],
        ),
        svc(
            "kube-system",
            "csi-provisioner-doplugin",
            "10.96.61.61",
            &[("dummy", "TCP", 12345)],
        ),
        svc(
            "kube-system",
            "kube-dns",
            "10.96.0.10",
            &[("dns", "UDP", 53), ("dns-tcp", "TCP", 53)],
        ),
        svc(
            "kube-system",
            "kubernetes-dashboard",
            "10.96.226.209",
            &[("", "TCP", 443)],
        ),
    ];
    w.add_bytes(
        native(layout::k8s::SERVICES, ArtifactSource::KubernetesApi),
        &jsonl(&services),
        ok(30),
    )
    .unwrap();
    let slices = vec![
        slice(
            "default",
            "kubernetes",
            &[("192.168.50.11", true)],
            &[("https", "TCP", 6443)],
        ),
        slice(
            "kube-system",
            "kube-dns",
            &[("10.244.3.20", true)],
            &[("dns", "UDP", 53), ("dns-tcp", "TCP", 53)],
        ),
        slice(
            "kube-system",
            "kubernetes-dashboard",
            &[("10.244.18.9", false)],
            &[("", "TCP", 8443)],
        ),
    ];
    w.add_bytes(
        native(layout::k8s::ENDPOINT_SLICES, ArtifactSource::KubernetesApi),
        &jsonl(&slices),
        ok(30),
    )
    .unwrap();

    // DNS probes, each one a real dig run against dnsmasq on the kube-dns VIP (fixtures/raw/dns).
    let from = Some("default/hello-world-5b446dd74b-pxtzt");
    let report = DnsProbeReport {
        cluster_dns: ClusterDns {
            service_ips: vec!["10.96.0.10".parse().unwrap()],
            endpoint_ips: vec!["10.244.3.20".parse().unwrap()],
            cluster_domain: Some("cluster.local".into()),
            source: "api".into(),
        },
        probes: vec![
            probe("dig-noerror.txt", POD1_NS, from, "service-vip"),
            probe("dig-tcp.txt", POD1_NS, from, "service-vip"),
            probe("dig-nxdomain.txt", POD1_NS, from, "service-vip"),
            probe("dig-timeout.txt", POD1_NS, from, "nameserver"),
            probe("dig-refused.txt", POD1_NS, from, "nameserver"),
        ],
    };
    w.add_json(
        native(layout::dns::PROBES, ArtifactSource::Probe),
        &report,
        Duration::from_millis(1200),
    )
    .unwrap();

    // Sysctls, read out of real `sysctl` captures (fixtures/raw/sysctl).
    let netfilter = sysctl::parse_sysctl(&raw("sysctl/sysctl-net.netfilter.txt"));
    let ipv4 = sysctl::parse_sysctl(&raw("sysctl/sysctl-net.ipv4.txt"));
    let mut node_sysctls = std::collections::BTreeMap::new();
    for k in ["net.ipv4.ip_forward", "net.ipv4.conf.all.rp_filter"] {
        node_sysctls.insert(k.to_string(), ipv4.get(k).unwrap().to_string());
    }
    node_sysctls.insert(
        "net.netfilter.nf_conntrack_max".to_string(),
        netfilter
            .get("net.netfilter.nf_conntrack_max")
            .unwrap()
            .to_string(),
    );
    w.add_json(
        native(layout::node::SYSCTLS, ArtifactSource::File),
        &node_sysctls,
        Duration::ZERO,
    )
    .unwrap();
    let ct_sysctls: std::collections::BTreeMap<String, String> = netfilter
        .to_map()
        .into_iter()
        .filter(|(k, _)| k.starts_with("net.netfilter.nf_conntrack_"))
        .filter(|(k, _)| ["count", "max", "buckets"].iter().any(|s| k.ends_with(s)))
        .collect();
    w.add_json(
        native(layout::conntrack::SYSCTLS, ArtifactSource::File),
        &ct_sysctls,
        Duration::ZERO,
    )
    .unwrap();

    // Netfilter and kernel log: real captures of the other parsers' fixtures.
    w.add_bytes(
        ArtifactSpec::raw_command(
            layout::iptables::SAVE,
            layout::content::IPTABLES_SAVE,
            &["iptables-save", "-c"],
        )
        .with_attribute("backend", "nft"),
        raw("iptables/kube-proxy-v1.29-nft.txt").as_bytes(),
        ok(60),
    )
    .unwrap();
    w.add_bytes(
        ArtifactSpec::raw_command(
            layout::conntrack::TABLE,
            layout::content::CONNTRACK_LIST,
            &["conntrack", "-L", "-o", "extended"],
        ),
        raw("conntrack/conntrack-L.txt").as_bytes(),
        ok(20),
    )
    .unwrap();
    w.add_bytes(
        ArtifactSpec::raw_command(
            layout::conntrack::STATS,
            layout::content::CONNTRACK_STATS,
            &["conntrack", "-S"],
        ),
        raw("conntrack/conntrack-S.txt").as_bytes(),
        ok(5),
    )
    .unwrap();
    w.add_bytes(
        ArtifactSpec::raw_file(layout::node::KERNEL_LOG, layout::content::KERNEL_LOG),
        raw("kernel-log/dmesg-T.txt").as_bytes(),
        ok(5),
    )
    .unwrap();

    // No IPVS in this kernel: recorded, not silently absent.
    w.record_missing(
        ArtifactSpec::raw_command(
            layout::ipvs::LIST,
            layout::content::IPVSADM_LIST,
            &["ipvsadm", "-Ln"],
        ),
        ArtifactStatus::Unavailable,
        "the kernel has no IPVS (/proc/net/ip_vs is absent)",
        Completion::default(),
    )
    .unwrap();
    finish(w);
}

/// A bundle collected with `--no-api`: every Kubernetes artifact skipped.
fn build_no_api(path: &Path) {
    let w = BundleWriter::create(path, WriterOptions::default()).unwrap();
    for p in [layout::k8s::PODS, layout::k8s::SERVICES] {
        w.record_missing(
            ArtifactSpec::native(p, ArtifactSource::KubernetesApi),
            ArtifactStatus::Skipped,
            "--no-api given",
            Completion::default(),
        )
        .unwrap();
    }
    finish(w);
}

/// Only the tutorial's `ip addr` outputs, as raw text, one with a line `ip` never prints.
fn build_raw_only(path: &Path) {
    let w = BundleWriter::create(path, WriterOptions::default()).unwrap();
    let mut node = raw("ip/seed-node-ip-addr.txt");
    node.push_str("this is not ip output\n");
    for (ns, text) in [("host", node), (POD1_NS, raw("ip/seed-pod-ip-addr.txt"))] {
        w.add_bytes(
            ArtifactSpec::raw_command(
                layout::netns_path(ns, layout::netns::IP_ADDR),
                layout::content::IP_ADDR,
                &["ip", "addr"],
            )
            .in_netns(ns),
            text.as_bytes(),
            ok(1),
        )
        .unwrap();
    }
    finish(w);
}

/// The tutorial's kubernetes and kube-dns Services, for the dataplane-only bundles.
fn add_core_services(w: &BundleWriter) {
    let services = vec![
        svc(
            "default",
            "kubernetes",
            "10.96.0.1",
            &[("https", "TCP", 443)],
        ),
        svc(
            "kube-system",
            "kube-dns",
            "10.96.0.10",
            &[("dns", "UDP", 53), ("dns-tcp", "TCP", 53)],
        ),
    ];
    w.add_bytes(
        native(layout::k8s::SERVICES, ArtifactSource::KubernetesApi),
        &jsonl(&services),
        ok(30),
    )
    .unwrap();
}

/// An nftables-mode kube-proxy node (fixtures/raw/nft, a real `nft list ruleset`).
fn build_nft(path: &Path) {
    let w = BundleWriter::create(path, WriterOptions::default()).unwrap();
    w.add_bytes(
        ArtifactSpec::raw_command(
            layout::nft::RULESET,
            layout::content::NFT_RULESET,
            &["nft", "list", "ruleset"],
        ),
        raw("nft/kube-proxy-v1.31.txt").as_bytes(),
        ok(30),
    )
    .unwrap();
    add_core_services(&w);
    finish(w);
}

/// An IPVS-mode node: ipvsadm outputs (fixtures/raw/ipvs, ipvsadm's documented format).
fn build_ipvs(path: &Path) {
    let w = BundleWriter::create(path, WriterOptions::default()).unwrap();
    add_core_services(&w);
    for (p, f, argv) in [
        (
            layout::ipvs::LIST,
            "ipvs/ipvsadm-Ln.txt",
            &["ipvsadm", "-Ln"][..],
        ),
        (
            layout::ipvs::STATS,
            "ipvs/ipvsadm-Ln-stats.txt",
            &["ipvsadm", "-Ln", "--stats"][..],
        ),
    ] {
        w.add_bytes(
            ArtifactSpec::raw_command(p, layout::content::IPVSADM_LIST, argv),
            raw(f).as_bytes(),
            ok(3),
        )
        .unwrap();
    }
    finish(w);
}

/// A node with kube-proxy rules in both iptables backends: the save of the default
/// `iptables-save` (nft backend, kube-proxy v1.29, two DNS endpoints) and a stale legacy
/// save (kube-proxy v1.20, one DNS endpoint). Which one is live is the facts' call; the
/// `services` view must show the same one.
fn build_mixed(path: &Path) {
    let w = BundleWriter::create(path, WriterOptions::default()).unwrap();
    w.add_bytes(
        ArtifactSpec::raw_command(
            layout::iptables::SAVE,
            layout::content::IPTABLES_SAVE,
            &["iptables-save"],
        )
        .with_attribute("backend", "nft"),
        raw("iptables/kube-proxy-v1.29-nft.txt").as_bytes(),
        ok(60),
    )
    .unwrap();
    w.add_bytes(
        ArtifactSpec::raw_command(
            layout::iptables::LEGACY_SAVE,
            layout::content::IPTABLES_SAVE,
            &["iptables-legacy-save"],
        ),
        raw("iptables/kube-proxy-v1.20-legacy.txt").as_bytes(),
        ok(60),
    )
    .unwrap();
    add_core_services(&w);
    finish(w);
}

struct Built {
    _dir: tempfile::TempDir,
    mixed: PathBuf,
    example: PathBuf,
    no_corr: PathBuf,
    no_api: PathBuf,
    raw_only: PathBuf,
    ipvs: PathBuf,
    nft: PathBuf,
}

fn built() -> &'static Built {
    static B: OnceLock<Built> = OnceLock::new();
    B.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let example = dir.path().join("inspect-example.tar.zst");
        build_example(&example, true);
        let no_corr = dir.path().join("no-correlation.tar.zst");
        build_example(&no_corr, false);
        let no_api = dir.path().join("no-api.tar.zst");
        build_no_api(&no_api);
        let raw_only = dir.path().join("raw-only.tar.zst");
        build_raw_only(&raw_only);
        let ipvs = dir.path().join("ipvs.tar.zst");
        build_ipvs(&ipvs);
        let nft = dir.path().join("nft.tar.zst");
        build_nft(&nft);
        let mixed = dir.path().join("mixed.tar.zst");
        build_mixed(&mixed);
        Built {
            _dir: dir,
            mixed,
            example,
            no_corr,
            no_api,
            raw_only,
            ipvs,
            nft,
        }
    })
}

fn analyze(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_netsnap-analyze"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn inspect(extra: &[&str]) -> String {
    let b = built().example.to_str().unwrap().to_string();
    let mut args = vec!["inspect", b.as_str()];
    args.extend_from_slice(extra);
    let (code, out, err) = analyze(&args);
    assert_eq!(code, 0, "{extra:?}: {err}");
    assert!(err.is_empty(), "{extra:?}: {err}");
    out
}

fn inspect_json(extra: &[&str]) -> Vec<serde_json::Value> {
    let mut a = extra.to_vec();
    a.extend(["--format", "json"]);
    serde_json::from_str(&inspect(&a)).unwrap()
}

#[test]
fn every_view_table_and_json() {
    let cases: &[(&str, &[&str])] = &[
        ("pods", &["pods"]),
        ("pods_all", &["pods", "-A"]),
        ("pods_kube_system", &["pods", "-n", "kube-system"]),
        ("services_all", &["services", "-A"]),
        ("netns", &["netns"]),
        ("links", &["links"]),
        ("links_pod1", &["links", "--netns", POD1_NS]),
        ("addrs", &["addrs"]),
        ("routes", &["routes"]),
        ("routes_main", &["routes", "--table", "main"]),
        ("dns", &["dns"]),
        ("sysctl", &["sysctl"]),
        ("conntrack", &["conntrack"]),
        (
            "conntrack_tcp_established",
            &["conntrack", "-p", "tcp", "--state", "ESTABLISHED"],
        ),
        ("conntrack_summary", &["conntrack", "--summary"]),
        ("conntrack_stats", &["conntrack", "--stats"]),
        (
            "iptables_nat_kube_services",
            &["iptables", "--table", "nat", "--chain", "KUBE-SERVICES"],
        ),
        ("iptables_all", &["iptables"]),
        ("kernel_log", &["kernel-log"]),
    ];
    for (name, args) in cases {
        let table = inspect(args);
        insta::assert_snapshot!(format!("{name}_table"), table);
        // The JSON exactly as printed: key order is part of the stable format.
        let mut a = args.to_vec();
        a.extend(["--format", "json"]);
        let json = inspect(&a);
        let parsed: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
        assert!(!parsed.is_empty(), "{name}");
        insta::assert_snapshot!(format!("{name}_json"), json);
    }
}

#[test]
fn pods_join_netns_and_veth() {
    let out = inspect(&["pods"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("NAME "), "{out}");
    assert!(lines[0].ends_with("NETNS           VETH") || lines[0].contains("VETH"));
    // Only the default namespace, like kubectl.
    assert_eq!(lines.len(), 3, "{out}");
    let pxtzt = lines.iter().find(|l| l.contains("pxtzt")).unwrap();
    assert!(
        pxtzt.contains(POD1_NS) && pxtzt.contains("veth4f7342d"),
        "{pxtzt}"
    );
    assert!(pxtzt.contains(" 22m "), "{pxtzt}");
    // The other node's pod has no namespace here.
    let other = lines.iter().find(|l| l.contains("7c7pk")).unwrap();
    assert!(other.contains("<none>"), "{other}");
    let all = inspect_json(&["pods", "-A"]);
    assert_eq!(all.len(), 4);
    let kp = all
        .iter()
        .find(|p| p["name"] == "kube-proxy-8xq2w")
        .unwrap();
    assert_eq!(kp["netns"], "host");
    let empty = inspect(&["pods", "-n", "nope"]);
    assert_eq!(empty, "No resources found in nope namespace.\n");
}

/// Without the collector's correlations, the analyzer recomputes them from the
/// namespaces' links and addresses (the tutorial's `@ifN` method) and gets the same answer.
#[test]
fn correlations_are_recomputed_when_absent() {
    let run = |b: &Path, view: &str| {
        let (code, out, err) = analyze(&[
            "inspect",
            b.to_str().unwrap(),
            view,
            "-A",
            "--format",
            "json",
        ]);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<Vec<serde_json::Value>>(&out).unwrap()
    };
    let with = run(&built().example, "pods");
    let without = run(&built().no_corr, "pods");
    for (a, b) in with.iter().zip(&without) {
        assert_eq!(a["name"], b["name"]);
        assert_eq!(a["netns"], b["netns"], "{}", a["name"]);
        assert_eq!(a["host_veth"], b["host_veth"], "{}", a["name"]);
    }
    assert!(without.iter().any(|p| p["host_veth"] == "veth4f7342d"));
    let (code, out, _) = analyze(&[
        "inspect",
        built().no_corr.to_str().unwrap(),
        "links",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0);
    let links: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let veth = links
        .iter()
        .find(|l| l["name"] == "cali1a2b3c4d5e6")
        .unwrap();
    assert_eq!(veth["peer"], format!("{POD2_NS}:eth0"));
}

/// The tutorial's own method on its own outputs: eth0@if11 in the pod is the
/// node's interface 11, veth4f7342d. Unknown lines are reported, not hidden.
#[test]
fn tutorial_ip_addr_outputs_correlate() {
    let (code, out, err) = analyze(&[
        "inspect",
        built().raw_only.to_str().unwrap(),
        "links",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let eth0 = rows
        .iter()
        .find(|r| r["netns"] == POD1_NS && r["name"] == "eth0")
        .unwrap();
    assert_eq!(eth0["peer"], "host:veth4f7342d");
    let veth = rows.iter().find(|r| r["name"] == "veth4f7342d").unwrap();
    assert_eq!(veth["peer"], format!("{POD1_NS}:eth0"));
    assert_eq!(veth["master"], "docker0");
    // veth77f2275 and veth01 point at namespaces the bundle does not have.
    let other = rows.iter().find(|r| r["name"] == "veth01").unwrap();
    assert_eq!(other["peer"], serde_json::Value::Null);
    assert!(
        err.contains("netns/host/ip-addr.txt: 1 line(s) not understood, first at line 19"),
        "{err}"
    );
    assert_eq!(err.matches("not understood").count(), 1, "{err}");
}

#[test]
fn services_show_endpoints() {
    let rows = inspect_json(&["services", "-A"]);
    let dns = rows.iter().find(|s| s["name"] == "kube-dns").unwrap();
    assert_eq!(dns["ports"], serde_json::json!(["53/UDP", "53/TCP"]));
    assert_eq!(dns["endpoints"], serde_json::json!(["10.244.3.20:53"]));
    let dash = rows
        .iter()
        .find(|s| s["name"] == "kubernetes-dashboard")
        .unwrap();
    assert_eq!(dash["endpoints"], serde_json::json!([]));
    assert_eq!(dash["not_ready"], serde_json::json!(["10.244.18.9"]));
    let table = inspect(&["services", "-A"]);
    let line = table
        .lines()
        .find(|l| l.contains("kubernetes-dashboard"))
        .unwrap();
    assert!(line.contains("<none>"), "{line}");
}

#[test]
fn links_map_veth_peers_both_ways() {
    let rows = inspect_json(&["links"]);
    let host_veth = rows
        .iter()
        .find(|r| r["netns"] == "host" && r["name"] == "veth4f7342d")
        .unwrap();
    assert_eq!(host_veth["peer"], format!("{POD1_NS}:eth0"));
    assert_eq!(host_veth["peer_index"], 10);
    assert_eq!(host_veth["master"], "cni0");
    let pod_eth0 = rows
        .iter()
        .find(|r| r["netns"] == POD1_NS && r["name"] == "eth0")
        .unwrap();
    assert_eq!(pod_eth0["peer"], "host:veth4f7342d");
    assert_eq!(pod_eth0["peer_index"], 11);
    assert_eq!(pod_eth0["mtu"], 1450);
    // Pod 2 comes from the raw `ip addr` text (its netlink dump failed).
    let pod2 = rows
        .iter()
        .find(|r| r["netns"] == POD2_NS && r["name"] == "eth0")
        .unwrap();
    assert_eq!(pod2["peer"], "host:cali1a2b3c4d5e6");
    let vx = rows.iter().find(|r| r["name"] == "flannel.1").unwrap();
    assert_eq!(
        vx["detail"],
        "vni 1 local 192.168.50.10 dev eth0 dstport 8472"
    );
}

#[test]
fn routes_cover_both_sources() {
    let rows = inspect_json(&["routes"]);
    assert!(
        rows.iter()
            .any(|r| r["netns"] == "host" && r["type"] == "blackhole")
    );
    assert!(
        rows.iter()
            .any(|r| r["netns"] == "host" && r["table"] == "local" && r["dst"] == "10.96.0.10")
    );
    let pod2_default = rows
        .iter()
        .find(|r| r["netns"] == POD2_NS && r["dst"] == "default")
        .unwrap();
    assert_eq!(pod2_default["gateway"], "169.254.1.1");
    let main = inspect_json(&["routes", "--table", "main"]);
    assert!(!main.is_empty() && main.iter().all(|r| r["table"] == "main"));
}

#[test]
fn dns_view_shows_each_probe() {
    let rows = inspect_json(&["dns"]);
    let outcomes: Vec<&str> = rows
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        ["answer", "answer", "nxdomain", "timeout", "error"]
    );
    assert_eq!(rows[0]["answers"], serde_json::json!(["10.96.0.1"]));
    assert_eq!(rows[1]["transport"], "tcp");
    let table = inspect(&["dns"]);
    assert!(
        table.starts_with("cluster DNS: service 10.96.0.10 endpoints 10.244.3.20"),
        "{table}"
    );
}

#[test]
fn missing_data_exits_3_with_the_recorded_reason() {
    let b = built().example.to_str().unwrap();
    let (code, out, err) = analyze(&["inspect", b, "ipvs"]);
    assert_eq!(code, netsnap_analyzer::exit::NO_DATA);
    assert!(out.is_empty());
    assert_eq!(
        err,
        "netsnap-analyze: no data for view ipvs: ipvs/ipvsadm-Ln.txt unavailable: the kernel has no IPVS (/proc/net/ip_vs is absent)\n"
    );
    let no_api = built().no_api.to_str().unwrap();
    for view in ["pods", "services"] {
        let (code, out, err) = analyze(&["inspect", no_api, view, "--format", "json"]);
        assert_eq!(code, 3, "{view}: {err}");
        assert!(out.is_empty());
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("skipped: --no-api given"), "{err}");
    }
    // Nothing recorded at all: still one line, still exit 3.
    let (code, _, err) = analyze(&["inspect", no_api, "links"]);
    assert_eq!(code, 3);
    assert_eq!(
        err,
        "netsnap-analyze: no data for view links: netns/host/netlink.json was not collected (the manifest has no record of it)\n"
    );
}

#[test]
fn usage_errors_exit_2() {
    let b = built().example.to_str().unwrap();
    let (code, _, err) = analyze(&["inspect", b, "links", "--state", "ESTABLISHED"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--state does not apply to the links view"),
        "{err}"
    );
    let (code, _, _) = analyze(&["inspect", b, "nonsense"]);
    assert_eq!(code, 2);
    let (code, _, err) = analyze(&["inspect", "/nonexistent.tar.zst", "pods"]);
    assert_eq!(code, 2);
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn committed_example_is_current() {
    let committed = root().join("fixtures/bundles/inspect-example.tar.zst");
    if std::env::var_os("NETSNAP_UPDATE_FIXTURES").is_some() {
        std::fs::create_dir_all(committed.parent().unwrap()).unwrap();
        let _ = std::fs::remove_file(&committed);
        build_example(&committed, true);
    }
    let fresh = Bundle::open(&built().example, &ReaderOptions::default()).unwrap();
    let old = Bundle::open(&committed, &ReaderOptions::default()).unwrap_or_else(|e| {
        panic!("{e}; regenerate with NETSNAP_UPDATE_FIXTURES=1 cargo test -p netsnap-analyzer --test inspect")
    });
    let key = |b: &Bundle| {
        b.manifest()
            .artifacts
            .iter()
            .map(|a| (a.path.clone(), a.status, a.sha256.clone(), a.error.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        key(&old),
        key(&fresh),
        "stale: regenerate with NETSNAP_UPDATE_FIXTURES=1"
    );
}

fn inspect_at(bundle: &Path, extra: &[&str]) -> String {
    let b = bundle.to_str().unwrap().to_string();
    let mut args = vec!["inspect", b.as_str()];
    args.extend_from_slice(extra);
    let (code, out, err) = analyze(&args);
    assert_eq!(code, 0, "{extra:?}: {err}");
    out
}

#[test]
fn ipvs_like_ipvsadm() {
    let ipvs = &built().ipvs;
    let all = inspect_at(ipvs, &["ipvs"]);
    insta::assert_snapshot!("ipvs_table", all);
    assert!(all.starts_with("IP Virtual Server version 1.2.1 (size=4096)\n"));
    let one = inspect_at(ipvs, &["ipvs", "-u", "10.96.0.10:53"]);
    insta::assert_snapshot!("ipvs_udp_dns_table", one);
    // The seed's `ipvsadm -Ln -t` form: header lines, one service, its real servers.
    let lines: Vec<&str> = one.lines().collect();
    assert_eq!(lines[0], "Prot LocalAddress:Port Scheduler Flags");
    assert!(lines[2].starts_with("UDP  10.96.0.10:53 rr"), "{one}");
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("  -> 10.")).count(),
        2,
        "{one}"
    );
    let raw_json = inspect_at(ipvs, &["ipvs", "--format", "json"]);
    let json: Vec<serde_json::Value> = serde_json::from_str(&raw_json).unwrap();
    assert_eq!(json.len(), 9, "{raw_json}");
    assert_eq!(json[0]["service"], "10.96.0.1:443");
    // --stats was merged into the -Ln table.
    assert_eq!(json[0]["stats"]["conns"], 41);
    insta::assert_snapshot!("ipvs_json", raw_json);
    let none = inspect_at(ipvs, &["ipvs", "-t", "10.1.2.3:80"]);
    assert!(!none.contains("->  "), "{none}");
    let (code, _, err) = analyze(&["inspect", ipvs.to_str().unwrap(), "ipvs", "-t", "nonsense"]);
    assert_eq!(code, 2);
    assert!(err.contains("invalid -t value"), "{err}");
}

#[test]
fn conntrack_filters_and_summary_agree() {
    let all = inspect_json(&["conntrack"]);
    let tcp = inspect_json(&["conntrack", "-p", "tcp"]);
    assert!(!tcp.is_empty() && tcp.len() < all.len());
    assert!(tcp.iter().all(|r| r["protocol"] == "tcp"));
    let first_dst = all[0]["original"]
        .as_str()
        .unwrap()
        .split(" -> ")
        .nth(1)
        .unwrap();
    let ip = first_dst.rsplit_once(':').map_or(first_dst, |(a, _)| a);
    let by_dst = inspect_json(&["conntrack", "-d", ip]);
    assert!(!by_dst.is_empty());
    assert!(by_dst.iter().all(|r| {
        r["original"]
            .as_str()
            .unwrap()
            .contains(&format!("-> {ip}"))
    }));
    let summary = inspect_json(&["conntrack", "--summary"]);
    let entries = summary
        .iter()
        .find(|r| r["section"] == "table" && r["key"] == "entries")
        .unwrap();
    assert_eq!(entries["value"], all.len());
    let per_proto: u64 = summary
        .iter()
        .filter(|r| r["section"] == "protocol")
        .map(|r| r["value"].as_u64().unwrap())
        .sum();
    assert_eq!(per_proto, all.len() as u64);
    assert!(summary.iter().any(|r| r["key"] == "nf_conntrack_max"));
    let table = inspect(&["conntrack"]);
    assert!(table.ends_with(&format!("{} flow entries have been shown.\n", all.len())));
    let stats = inspect_json(&["conntrack", "--stats"]);
    assert_eq!(stats.last().unwrap()["cpu"], "total");
}

#[test]
fn kernel_log_classifies_lines() {
    let rows = inspect_json(&["kernel-log"]);
    assert_eq!(rows.len(), 60);
    assert!(rows.iter().any(|r| r["kind"] == "martian-source"));
}

#[test]
fn iptables_chain_like_iptables_l() {
    let out = inspect(&["iptables", "--table", "nat", "--chain", "KUBE-SERVICES"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("Chain KUBE-SERVICES ("), "{out}");
    assert!(lines[1].starts_with("target     prot opt source"), "{out}");
    let dns = lines
        .iter()
        .find(|l| l.starts_with("KUBE-SVC-TCOU7JCQXEZGVUNU"))
        .unwrap();
    assert!(dns.contains("10.96.0.10"), "{dns}");
    assert!(
        dns.contains("/* kube-system/kube-dns:dns cluster IP */"),
        "{dns}"
    );
    assert!(dns.contains("dpt:53"), "{dns}");
    let rows = inspect_json(&["iptables", "--table", "nat", "--chain", "KUBE-SERVICES"]);
    assert!(
        rows.iter()
            .all(|r| r["chain"] == "KUBE-SERVICES" && r["table"] == "nat")
    );
    let (code, _, err) = analyze(&[
        "inspect",
        built().example.to_str().unwrap(),
        "iptables",
        "--chain",
        "NO-SUCH-CHAIN",
    ]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn services_dataplane_column() {
    let rows = inspect_json(&["services", "-A"]);
    let dns = rows.iter().find(|s| s["name"] == "kube-dns").unwrap();
    assert!(
        dns["dataplane"]
            .as_str()
            .unwrap()
            .starts_with("iptables 2/2 ports"),
        "{dns}"
    );
    let ports = dns["dataplane_ports"].as_array().unwrap();
    assert_eq!(ports.len(), 2);
    assert!(
        ports
            .iter()
            .all(|p| p["iptables_endpoints"].as_u64().unwrap() >= 1)
    );
    // In the API, not on the node: the dump has no rules for it.
    let dash = rows
        .iter()
        .find(|s| s["name"] == "kubernetes-dashboard")
        .unwrap();
    assert_eq!(dash["dataplane"], "MISSING");
}

/// The DATAPLANE column from the other two kube-proxy modes.
#[test]
fn services_dataplane_ipvs_and_nft() {
    let row = |b: &Path, name: &str| {
        let out = inspect_at(b, &["services", "-A", "--format", "json"]);
        let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
        rows.into_iter().find(|r| r["name"] == name).unwrap()
    };
    let ipvs_dns = row(&built().ipvs, "kube-dns");
    assert_eq!(ipvs_dns["dataplane"], "ipvs 2/2 ports, 2 ep");
    // The nft ruleset maps kube-dns's UDP port only: half the Service is missing.
    let nft_dns = row(&built().nft, "kube-dns");
    assert_eq!(
        nft_dns["dataplane"].as_str().unwrap().split(',').next(),
        Some("nft 1/2 ports")
    );
    let tcp = nft_dns["dataplane_ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["port"] == "53/TCP")
        .unwrap();
    assert_eq!(tcp["nft_endpoints"], serde_json::Value::Null);
    assert!(
        row(&built().nft, "kubernetes")["dataplane"]
            .as_str()
            .unwrap()
            .starts_with("nft 1/1 ports")
    );
}

/// Every Service port's DATAPLANE cell, as `inspect services` shows it and as the fact
/// document (what the rules judge) has it: (vip, port/PROTO) -> (iptables endpoints,
/// iptables REJECT, nft endpoints, IPVS real servers).
type PortState = (Option<u64>, bool, Option<u64>, Option<u64>);

fn inspect_dataplane(bundle: &Path) -> Vec<((String, String), PortState)> {
    let out = inspect_at(bundle, &["services", "-A", "--format", "json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let mut cells: Vec<_> = rows
        .iter()
        .flat_map(|r| r["dataplane_ports"].as_array().cloned().unwrap_or_default())
        .map(|p| {
            (
                (
                    p["vip"].as_str().unwrap().to_string(),
                    p["port"].as_str().unwrap().to_string(),
                ),
                (
                    p["iptables_endpoints"].as_u64(),
                    p["iptables_no_endpoints_rule"].as_bool().unwrap(),
                    p["nft_endpoints"].as_u64(),
                    p["ipvs_real_servers"].as_u64(),
                ),
            )
        })
        .collect();
    cells.sort();
    cells
}

fn facts_dataplane(bundle: &Path) -> Vec<((String, String), PortState)> {
    let (code, out, err) = analyze(&["facts", bundle.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let facts: serde_json::Value = serde_json::from_str(&out).unwrap();
    let count = |st: &serde_json::Value, list: &str| {
        st["present"]
            .as_bool()
            .unwrap()
            .then(|| st[list].as_array().unwrap().len() as u64)
    };
    let mut cells: Vec<_> = facts["services"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["ports"].as_array().cloned().unwrap_or_default())
        .map(|p| {
            (
                (
                    p["vip"].as_str().unwrap().to_string(),
                    format!("{}/{}", p["port"], p["protocol"].as_str().unwrap()),
                ),
                (
                    count(&p["iptables"], "endpoints"),
                    p["iptables"]["reject"].as_bool().unwrap(),
                    count(&p["nft"], "endpoints"),
                    count(&p["ipvs"], "real_servers"),
                ),
            )
        })
        .collect();
    cells.sort();
    cells
}

/// `inspect services` computes no dataplane join of its own: on every test bundle, each
/// Service port's cell is what the facts (and so the rules) have, including on a node with
/// kube-proxy rules in both iptables backends, where the view once picked the backend
/// differently from the facts.
#[test]
fn services_dataplane_agrees_with_the_facts() {
    let b = built();
    for bundle in [&b.example, &b.ipvs, &b.nft, &b.mixed] {
        let shown = inspect_dataplane(bundle);
        assert!(!shown.is_empty(), "{}: no Service port", bundle.display());
        assert_eq!(shown, facts_dataplane(bundle), "{}", bundle.display());
    }
    // The mixed node: the facts take the first save with the kubelet's canary, the legacy
    // one (one DNS endpoint), not the default `iptables-save` (two).
    let mixed = inspect_dataplane(&b.mixed);
    let dns = mixed
        .iter()
        .find(|(k, _)| k == &("10.96.0.10".to_string(), "53/UDP".to_string()))
        .unwrap();
    assert_eq!(dns.1.0, Some(1), "{mixed:?}");
}

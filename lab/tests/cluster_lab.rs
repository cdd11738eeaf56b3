//! The cluster view on real two-node lab clusters: two lab nodes built as each other's peer
//! (both APIs list both nodes, each routes the other's pod subnet over `flannel.1` to the
//! other's VTEP), faults placed on one node and checked with the real tools, the real
//! `netsnap-collect` on each, and `netsnap-analyze analyze A B --format json` must name the
//! faulty node in exactly the expected cluster findings, and stay silent on a healthy pair.
//!
//! The analyzer binary is `target/debug/netsnap-analyze` (build it with
//! `cargo build -p netsnap-analyzer`), or `NETSNAP_ANALYZE_BIN`.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use netsnap_lab::{LabApiServer, LabGuard, LabNode, PeerNode, analyzer_bin, require_lab};

const API_ARGS: &[&str] = &["--sample-interval", "0.2", "--quiet"];
const DNS_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const KUBERNETES: &str = "kubernetes.default.svc.cluster.local";
const IP_A: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 10);
const IP_B: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 11);

fn ready() -> Option<(LabGuard, PathBuf)> {
    let lab = require_lab()?;
    if !lab.require_collector() || !lab.require_tools(&["dnsmasq", "dig", "conntrack"]) {
        return None;
    }
    let bin = analyzer_bin()?;
    Some((lab, bin))
}

/// Two node names unique to this test run.
fn names() -> (String, String) {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let tag = format!("{:06x}", (t ^ std::process::id()) & 0xff_ffff);
    (format!("lab-a{tag}"), format!("lab-b{tag}"))
}

/// What to vary on node B.
struct BSpec {
    subnet: u8,
    /// The pod subnet B believes A has (its API view of A and its route to A).
    a_subnet_seen: u8,
    /// The pod subnet A believes B has.
    b_subnet_seen: u8,
    kube_proxy_version: &'static str,
}

impl Default for BSpec {
    fn default() -> Self {
        BSpec {
            subnet: 1,
            a_subnet_seen: 0,
            b_subnet_seen: 1,
            kube_proxy_version: "v1.34.1",
        }
    }
}

/// A two-node flannel cluster: A (10.244.0.0/24, 172.18.0.10) and B (`spec`).
fn pair(lab: &LabGuard, spec: &BSpec) -> (LabNode, LabNode) {
    let (a, b) = names();
    let node_a = lab
        .node()
        .flannel()
        .dns()
        .pods(2)
        .name(&a)
        .node_ip(IP_A)
        .subnet(0)
        .peer(PeerNode {
            name: b.clone(),
            subnet: spec.b_subnet_seen,
            ip: IP_B,
        })
        .build()
        .unwrap();
    let node_b = lab
        .node()
        .flannel()
        .dns()
        .pods(2)
        .name(&b)
        .node_ip(IP_B)
        .subnet(spec.subnet)
        .peer(PeerNode {
            name: a,
            subnet: spec.a_subnet_seen,
            ip: IP_A,
        })
        .kube_proxy_version(spec.kube_proxy_version)
        .build()
        .unwrap();
    (node_a, node_b)
}

/// Collects `node` with its API served inside it; the bundle is copied into `dir`.
fn collect(node: &LabNode, dir: &Path) -> PathBuf {
    let api = LabApiServer::start(node).unwrap();
    let kc = api.kubeconfig.to_string_lossy().into_owned();
    let args: Vec<&str> = API_ARGS
        .iter()
        .copied()
        .chain(["--kubeconfig", &kc, "--node-name", node.name()])
        .collect();
    let run = node.collect(&args).unwrap();
    assert!(
        run.output.success(),
        "collector failed: {}",
        run.output.stderr
    );
    let dest = dir.join(format!("{}.tar.zst", node.name()));
    std::fs::copy(&run.bundle, &dest).unwrap();
    dest
}

fn analyze(bin: &Path, bundles: &[PathBuf]) -> serde_json::Value {
    let out = Command::new(bin)
        .args(["analyze", "--format", "json"])
        .args(bundles)
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "analyze failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// (rule, subject) of the cluster findings.
fn cluster_findings(r: &serde_json::Value) -> BTreeSet<(String, String)> {
    r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["node"] == "(cluster)")
        .map(|f| {
            (
                f["rule_id"].as_str().unwrap().to_string(),
                f["subject"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn cluster_not_evaluated(r: &serde_json::Value) -> Vec<String> {
    r["not_evaluated"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["node"] == "(cluster)")
        .map(|n| format!("{}: {}", n["rule_id"], n["reason"]))
        .collect()
}

fn pod_on(node: &LabNode) -> &netsnap_lab::LabPod {
    node.pods()
        .iter()
        .find(|p| p.namespace == "default")
        .unwrap()
}

#[test]
fn healthy_two_node_cluster_has_no_cluster_finding() {
    let Some((lab, bin)) = ready() else { return };
    let (a, b) = pair(&lab, &BSpec::default());
    // Each routes the other's pod subnet to the other's VTEP.
    let route = a
        .run_in_node(&["ip", "route", "show", "10.244.1.0/24"])
        .unwrap();
    assert!(
        route.stdout.contains("via 10.244.1.0 dev flannel.1"),
        "{}",
        route.stdout
    );
    let dir = tempfile::tempdir().unwrap();
    let bundles = vec![collect(&a, dir.path()), collect(&b, dir.path())];
    let r = analyze(&bin, &bundles);
    let rows: Vec<&str> = r["cluster"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node"].as_str().unwrap())
        .collect();
    assert_eq!(rows, [a.name(), b.name()]);
    assert_eq!(r["cluster"]["rules_evaluated"], 6, "{}", r["cluster"]);
    assert!(
        cluster_not_evaluated(&r).is_empty(),
        "{:?}",
        cluster_not_evaluated(&r)
    );
    assert!(
        cluster_findings(&r).is_empty(),
        "{}",
        serde_json::to_string_pretty(&r["findings"]).unwrap()
    );
    for row in r["cluster"]["nodes"].as_array().unwrap() {
        for sev in ["critical", "error", "warning"] {
            assert_eq!(row[sev], 0, "{row}");
        }
    }
}

#[test]
fn faults_on_one_node_are_named_by_the_cluster_rules() {
    let Some((lab, bin)) = ready() else { return };
    let (a, mut b) = pair(
        &lab,
        &BSpec {
            kube_proxy_version: "v1.33.7",
            ..BSpec::default()
        },
    );
    // B: its route to A's pods points at a VTEP no node has (a replaced node's), and the
    // DNS Service's rules are gone, so DNS through the VIP fails on B only.
    b.set_peer_route_gateway(Ipv4Addr::new(10, 244, 9, 0))
        .unwrap();
    let got = b
        .run_in_node(&["ip", "route", "get", "10.244.0.3"])
        .unwrap();
    assert!(
        got.stdout.contains("via 10.244.9.0 dev flannel.1"),
        "{}",
        got.stdout
    );
    b.omit_from_kube_services("kube-system", "kube-dns")
        .unwrap();
    assert!(b.dig_from(pod_on(&b), DNS_VIP, KUBERNETES, false).is_err());
    assert_eq!(
        a.dig_from(pod_on(&a), DNS_VIP, KUBERNETES, false).unwrap(),
        ["10.96.0.1"]
    );
    let dir = tempfile::tempdir().unwrap();
    let bundles = vec![collect(&a, dir.path()), collect(&b, dir.path())];
    let r = analyze(&bin, &bundles);
    let want: BTreeSet<(String, String)> = [
        (
            "cluster-pod-route-wrong-node",
            format!("{} -> {} 10.244.0.0/24", b.name(), a.name()),
        ),
        ("cluster-dns-node-split", b.name().to_string()),
        (
            "cluster-kube-proxy-version-skew",
            "kube-proxy version".into(),
        ),
    ]
    .into_iter()
    .map(|(r, s)| (r.to_string(), s))
    .collect();
    assert_eq!(cluster_findings(&r), want);
    let route = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule_id"] == "cluster-pod-route-wrong-node")
        .unwrap();
    let msg = route["message"].as_str().unwrap();
    assert!(
        msg.contains("via 10.244.9.0 dev flannel.1") && msg.contains("10.244.0.0"),
        "{msg}"
    );
    // The evidence names the node whose bundle it comes from.
    assert_eq!(route["evidence"][0]["node"], b.name());
    // The per-node table: B has the node-level DNS findings, A none.
    let rows = r["cluster"]["nodes"].as_array().unwrap();
    assert_eq!(rows[0]["critical"], 0);
    assert!(rows[1]["critical"].as_u64().unwrap() > 0, "{}", rows[1]);
}

#[test]
fn overlapping_pod_cidrs_and_a_pod_ip_on_both_nodes() {
    let Some((lab, bin)) = ready() else { return };
    // B was handed A's pod subnet: both allocate 10.244.0.0/24, the DNS pods of both are
    // 10.244.0.2. (Each one's API view of the other has another subnet, so that the routes
    // to it load: a node cannot route its own subnet to a peer.)
    let (a, b) = pair(
        &lab,
        &BSpec {
            subnet: 0,
            a_subnet_seen: 5,
            b_subnet_seen: 6,
            ..BSpec::default()
        },
    );
    assert_eq!(a.dns_pod().unwrap().ip, b.dns_pod().unwrap().ip);
    let dir = tempfile::tempdir().unwrap();
    let bundles = vec![collect(&a, dir.path()), collect(&b, dir.path())];
    let r = analyze(&bin, &bundles);
    let found = cluster_findings(&r);
    assert!(
        found.contains(&(
            "cluster-pod-cidr-overlap".to_string(),
            format!("{} 10.244.0.0/24 / {} 10.244.0.0/24", a.name(), b.name())
        )),
        "{found:?}"
    );
    let dns_ip = a.dns_pod().unwrap().ip.to_string();
    assert!(
        found.contains(&("cluster-pod-ip-on-two-nodes".to_string(), dns_ip)),
        "{found:?}"
    );
    // Nothing else at cluster level: routes to the other's pods are the node's own
    // connected route (not judged), DNS works on both, same kube-proxy.
    let rules: BTreeSet<&str> = found.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(
        rules,
        ["cluster-pod-cidr-overlap", "cluster-pod-ip-on-two-nodes"]
            .into_iter()
            .collect()
    );
}

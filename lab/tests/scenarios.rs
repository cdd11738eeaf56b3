//! End-to-end fault scenarios: a lab node is built, one real fault is injected
//! and checked with the real tools (so a test cannot pass on a fake), the real
//! `netsnap-collect` runs inside the node, and `netsnap-analyze analyze
//! --format json` must name exactly the expected rules (no other finding at
//! warning or above). Healthy nodes of both styles must produce none.
//!
//! The collector reads the lab's API objects from a fake API server bound
//! inside the node (`LabApiServer`) and sends its DNS probes from the pods.
//!
//! IPVS cannot run on this kernel (no ip_vs module), so the IPVS rules are
//! covered by the analyzer's tests on bundles assembled from the real-format
//! `ipvsadm` fixtures in `fixtures/raw/ipvs/`, not here.
//!
//! The analyzer binary is `target/debug/netsnap-analyze` (build it with
//! `cargo build -p netsnap-analyzer`), or `NETSNAP_ANALYZE_BIN`.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

use netsnap_lab::{
    Backend, CtEntry, LabApiServer, LabGuard, LabNode, LabPort, LabService, Proto, analyzer_bin,
    require_lab,
};

const ARGS: &[&str] = &["--no-api", "--sample-interval", "0.2", "--quiet"];
const API_ARGS: &[&str] = &["--sample-interval", "0.2", "--quiet"];
const DNS_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const KUBERNETES: &str = "kubernetes.default.svc.cluster.local";

/// Gate: lab, collector and analyzer present.
fn ready() -> Option<(LabGuard, PathBuf)> {
    let lab = require_lab()?;
    if !lab.require_collector() || !lab.require_tools(&["dnsmasq", "dig", "conntrack"]) {
        return None;
    }
    let bin = analyzer_bin()?;
    Some((lab, bin))
}

/// The analyzer's JSON report for one fresh collection of `node`, with the
/// lab's API objects served by a fake API server inside the node.
fn analyze(node: &LabNode, bin: &PathBuf) -> serde_json::Value {
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
    let out = Command::new(bin)
        .args(["analyze", "--format", "json"])
        .arg(&run.bundle)
        .output()
        .unwrap();
    // 0 = nothing at or above --fail-on, 1 = findings; 2 would be a broken bundle.
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "analyze failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    redaction_keeps_the_report(bin, &run.bundle, &report, out.status.code());
    report
}

/// The report without what a redaction necessarily changes: the bundle
/// summary (path, hashes) and the quoted evidence text (cut at a character
/// count, and replacements are longer than some originals).
fn comparable(report: &serde_json::Value) -> serde_json::Value {
    let mut v = report.clone();
    v.as_object_mut().unwrap().remove("bundles");
    for f in v["findings"].as_array_mut().into_iter().flatten() {
        for e in f["evidence"].as_array_mut().into_iter().flatten() {
            e.as_object_mut().unwrap().remove("text");
        }
    }
    v
}

/// Rule invariance of `netsnap-analyze redact` on every scenario bundle: the
/// redacted bundle's report has the same rules, severities, counts and
/// evidence lines, and maps back to the original report through the map.
fn redaction_keeps_the_report(
    bin: &PathBuf,
    bundle: &std::path::Path,
    report: &serde_json::Value,
    code: Option<i32>,
) {
    let redacted = bundle.with_extension("redacted.tar.zst");
    let map = bundle.with_extension("map.json");
    let run = |args: &[&std::ffi::OsStr]| Command::new(bin).args(args).output().unwrap();
    let r = run(&[
        "redact".as_ref(),
        bundle.as_os_str(),
        "-o".as_ref(),
        redacted.as_os_str(),
        "--map".as_ref(),
        map.as_os_str(),
    ]);
    assert!(
        r.status.success(),
        "redact: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    let a = run(&[
        "analyze".as_ref(),
        "--format".as_ref(),
        "json".as_ref(),
        redacted.as_os_str(),
    ]);
    assert_eq!(
        a.status.code(),
        code,
        "same exit status on the redacted bundle"
    );
    let red_report = bundle.with_extension("redacted-report.json");
    std::fs::write(&red_report, &a.stdout).unwrap();
    let back = run(&[
        "unredact".as_ref(),
        red_report.as_os_str(),
        "--map".as_ref(),
        map.as_os_str(),
    ]);
    assert!(back.status.success());
    let back: serde_json::Value = serde_json::from_slice(&back.stdout).unwrap();
    assert_eq!(
        comparable(report),
        comparable(&back),
        "the redacted bundle's report differs from the original's beyond the map"
    );
    let red: serde_json::Value = serde_json::from_slice(&a.stdout).unwrap();
    assert_eq!(red["summary"], report["summary"]);
}

/// One fresh collection of `node` (API objects served as in [`analyze`]); the bundle
/// lives in the node's temporary directory until the node is torn down.
fn collect_bundle(node: &LabNode) -> PathBuf {
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
    run.bundle
}

/// `netsnap-analyze diff --format json A B`: exit code and the diff document.
fn diff_json(bin: &PathBuf, a: &PathBuf, b: &PathBuf) -> (i32, serde_json::Value) {
    let out = Command::new(bin)
        .args(["diff", "--format", "json"])
        .arg(a)
        .arg(b)
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "diff failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.code().unwrap(),
        serde_json::from_slice(&out.stdout).unwrap(),
    )
}

fn diff_changes(d: &serde_json::Value, section: &str) -> Vec<serde_json::Value> {
    d["sections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == section)
        .map(|s| s["changes"].as_array().unwrap().clone())
        .unwrap_or_default()
}

fn rule_ids(list: &serde_json::Value) -> BTreeSet<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule_id"].as_str().unwrap().to_string())
        .collect()
}

/// Rule ids of findings at warning or above.
fn serious(report: &serde_json::Value) -> BTreeSet<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| {
            matches!(
                f["severity"].as_str(),
                Some("warning" | "error" | "critical")
            )
        })
        .map(|f| f["rule_id"].as_str().unwrap().to_string())
        .collect()
}

fn not_evaluated(report: &serde_json::Value) -> BTreeSet<String> {
    report["not_evaluated"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule_id"].as_str().unwrap().to_string())
        .collect()
}

fn expect(report: &serde_json::Value, ids: &[&str]) {
    let want: BTreeSet<String> = ids.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        serious(report),
        want,
        "findings: {}\nnot evaluated: {}",
        serde_json::to_string_pretty(&report["findings"]).unwrap(),
        report["not_evaluated"]
    );
}

#[test]
fn healthy_flannel_node_has_no_finding() {
    let Some((lab, bin)) = ready() else { return };
    let node = lab.node().flannel().dns().pods(3).build().unwrap();
    let client = node.pods()[1].clone();
    assert!(node.dig_from(&client, DNS_VIP, KUBERNETES, false).is_ok());
    assert_eq!(
        egress_reply_destination(&node, &client),
        node.node_ip().to_string()
    );
    let r = analyze(&node, &bin);
    expect(&r, &[]);
    // Node-local rules really ran (not skipped for missing data).
    let skipped = not_evaluated(&r);
    for id in [
        "conntrack-near-max",
        "ip-forward-disabled",
        "iptables-mixed-backends",
    ] {
        assert!(!skipped.contains(id), "{id} not evaluated");
    }
    // With the fake API server the Kubernetes-side rules ran too.
    for id in [
        "service-missing-from-iptables",
        "pod-ip-not-in-any-netns",
        "dns-vip-failing",
        "pod-cidr-route-missing",
        "pod-egress-masquerade-missing",
    ] {
        assert!(!skipped.contains(id), "{id} not evaluated");
    }
}

#[test]
fn healthy_routed_node_has_no_finding() {
    let Some((lab, bin)) = ready() else { return };
    let node = lab.node().routed().dns().pods(3).build().unwrap();
    let client = node.pods()[1].clone();
    assert!(node.dig_from(&client, DNS_VIP, KUBERNETES, false).is_ok());
    // calico's cali-nat-outgoing (ipset match) masquerades the pod's egress.
    assert_eq!(
        egress_reply_destination(&node, &client),
        node.node_ip().to_string()
    );
    // The other node's block is learnt over BGP via its address.
    let peer_pod = node.peer_pod_cidr().replace(".0/24", ".5");
    let route = node
        .run_in_node(&["ip", "route", "get", &peer_pod])
        .unwrap()
        .stdout;
    assert!(
        route.contains(&format!("via {} dev eth0", node.peer_ip())),
        "{route}"
    );
    expect(&analyze(&node, &bin), &[]);
}

#[test]
fn conntrack_over_90_percent() {
    let Some((lab, bin)) = ready() else { return };
    let node = lab.node().flannel().pods(1).build().unwrap();
    node.fill_conntrack_to(0.92).unwrap();
    let (count, max) = (
        node.conntrack_count().unwrap(),
        node.conntrack_max().unwrap(),
    );
    assert!(count as f64 > 0.9 * max as f64, "{count}/{max}");
    // Cap the dump: the rule reads the kernel's count and max.
    let run_args: Vec<&str> = ARGS
        .iter()
        .copied()
        .chain(["--conntrack-max-entries", "1000"])
        .collect();
    let run = node.collect(&run_args).unwrap();
    assert!(run.output.success(), "{}", run.output.stderr);
    let out = Command::new(&bin)
        .args(["analyze", "--format", "json"])
        .arg(&run.bundle)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "error finding => exit 1");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    expect(&r, &["conntrack-near-max"]);
}

#[test]
fn ip_forward_disabled() {
    let Some((lab, bin)) = ready() else { return };
    let node = lab.node().flannel().pods(1).build().unwrap();
    node.set_ip_forward(false).unwrap();
    assert_eq!(node.sysctl("net.ipv4.ip_forward").unwrap(), "0");
    expect(&analyze(&node, &bin), &["ip-forward-disabled"]);
}

#[test]
fn bridge_nf_call_iptables_disabled_on_a_bridge_node() {
    let Some((lab, bin)) = ready() else { return };
    let node = lab.node().flannel().dns().pods(1).build().unwrap();
    if !node
        .sysctl_exists("net.bridge.bridge-nf-call-iptables")
        .unwrap()
    {
        eprintln!("br_netfilter not loaded on this host: fault not reproducible here");
        return;
    }
    let dns_ip = node.dns_pod().unwrap().ip;
    let client = node.pods()[1].clone();
    assert!(node.dig_from(&client, DNS_VIP, KUBERNETES, false).is_ok());
    node.set_bridge_nf_call_iptables(false).unwrap();
    // Really broken: the VIP fails from a pod on the DNS pod's bridge, the endpoint answers.
    assert!(node.dig_from(&client, DNS_VIP, KUBERNETES, false).is_err());
    assert!(node.dig_from(&client, dns_ip, KUBERNETES, false).is_ok());
    expect(
        &analyze(&node, &bin),
        &["bridge-nf-call-iptables-disabled", "dns-vip-failing"],
    );
}

#[test]
fn kube_chains_in_both_iptables_backends() {
    let Some((lab, bin)) = ready() else { return };
    if !lab.require_tools(&["iptables-legacy-save", "iptables-nft-save"]) {
        return;
    }
    let mut node = lab.node().flannel().dns().pods(1).build().unwrap();
    node.apply_iptables(Backend::Legacy).unwrap();
    for save in ["iptables-legacy-save", "iptables-nft-save"] {
        let out = node.run_in_node(&[save, "-t", "nat"]).unwrap();
        assert!(
            out.stdout.contains(":KUBE-SERVICES"),
            "{save}: no KUBE-SERVICES"
        );
    }
    expect(&analyze(&node, &bin), &["iptables-mixed-backends"]);
}

fn web(vip: [u8; 4]) -> LabService {
    LabService::selecting(
        "default",
        "web",
        Ipv4Addr::from(vip),
        vec![LabPort::new("http", 80, Proto::Tcp).target(8080)],
        ("app", "web"),
    )
}

#[test]
fn service_with_ready_endpoints_missing_from_kube_services() {
    let Some((lab, bin)) = ready() else { return };
    let mut node = lab
        .node()
        .flannel()
        .dns()
        .pods(2)
        .service(web([10, 96, 0, 20]))
        .build()
        .unwrap();
    node.omit_from_kube_services("default", "web").unwrap();
    let nat = node
        .run_in_node(&["iptables-nft-save", "-t", "nat"])
        .unwrap();
    assert!(!nat.stdout.contains("-A KUBE-SERVICES -d 10.96.0.20/32"));
    assert!(nat.stdout.contains("-A KUBE-SERVICES -d 10.96.0.10/32"));
    expect(&analyze(&node, &bin), &["service-missing-from-iptables"]);
}

#[test]
fn service_without_endpoints_rejects() {
    let Some((lab, bin)) = ready() else { return };
    let node = lab
        .node()
        .flannel()
        .dns()
        .pods(1)
        // The selector matches no pod: no endpoints, kube-proxy REJECTs.
        .service(LabService::selecting(
            "default",
            "empty",
            Ipv4Addr::new(10, 96, 0, 30),
            vec![LabPort::new("http", 80, Proto::Tcp)],
            ("app", "nothing"),
        ))
        .build()
        .unwrap();
    let filter = node
        .run_in_node(&["iptables-nft-save", "-t", "filter"])
        .unwrap();
    assert!(
        filter
            .stdout
            .lines()
            .any(|l| l.contains("10.96.0.30/32") && l.contains("REJECT")),
        "{}",
        filter.stdout
    );
    // An ordinary (non-critical) Service without endpoints is reported at info severity:
    // nothing at warning or above, but the finding names it.
    let r = analyze(&node, &bin);
    expect(&r, &[]);
    let f = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule_id"] == "service-no-endpoints")
        .unwrap_or_else(|| panic!("no service-no-endpoints: {}", r["findings"]));
    assert_eq!(f["severity"], "info");
    assert!(f["message"].as_str().unwrap().contains("default/empty"));
}

#[test]
fn running_pod_whose_ip_is_in_no_netns() {
    let Some((lab, bin)) = ready() else { return };
    let mut node = lab.node().flannel().dns().pods(1).build().unwrap();
    let ghost = node.add_ghost_pod("default", "ghost-1").unwrap();
    let addrs = node
        .sh("ip -o addr; for n in $(ip netns list | cut -d' ' -f1); do ip -n $n -o addr; done")
        .unwrap();
    assert!(!addrs.stdout.contains(&format!(" {}/", ghost.ip)));
    expect(&analyze(&node, &bin), &["pod-ip-not-in-any-netns"]);
}

#[test]
fn leaked_netns_with_a_pod_cidr_ip() {
    let Some((lab, bin)) = ready() else { return };
    let mut node = lab.node().flannel().dns().pods(1).build().unwrap();
    let leak = node.leak_netns().unwrap();
    let addrs = node
        .run_in_node(&["ip", "-n", &leak.netns, "-o", "addr"])
        .unwrap();
    assert!(addrs.stdout.contains(&format!(" {}/", leak.ip)));
    // The leak keeps its host veth on cni0: that veth leads to no pod either.
    expect(&analyze(&node, &bin), &["netns-unknown-ip", "veth-orphan"]);
}

#[test]
fn orphan_veth() {
    let Some((lab, bin)) = ready() else { return };
    let mut node = lab.node().flannel().dns().pods(1).build().unwrap();
    let orphan = node.orphan_veth().unwrap();
    let link = node
        .run_in_node(&["ip", "-d", "link", "show", &orphan.host_veth])
        .unwrap();
    assert!(link.stdout.contains("veth"), "{}", link.stdout);
    expect(&analyze(&node, &bin), &["veth-orphan"]);
}

#[test]
fn pod_mtu_1500_on_a_1450_overlay() {
    let Some((lab, bin)) = ready() else { return };
    let mut node = lab.node().flannel().dns().pods(2).build().unwrap();
    let i = node
        .pods()
        .iter()
        .position(|p| p.namespace == "default")
        .unwrap();
    node.set_pod_mtu(i, 1500).unwrap();
    let pod = node.pods()[i].clone();
    let link = node
        .run_in_pod(&pod, &["ip", "link", "show", "eth0"])
        .unwrap();
    assert!(link.stdout.contains("mtu 1500"), "{}", link.stdout);
    let vx = node
        .run_in_node(&["ip", "link", "show", "flannel.1"])
        .unwrap();
    assert!(vx.stdout.contains("mtu 1450"), "{}", vx.stdout);
    expect(&analyze(&node, &bin), &["mtu-mismatch"]);
}

#[test]
fn redacted_collection_hides_the_lab_and_a_planted_canary() {
    let Some((lab, bin)) = ready() else { return };
    let node = lab.node().flannel().dns().pods(2).build().unwrap();
    let canary = "CANARY-d41d8cd98f00b204e980";
    node.sh(&format!(
        "printf '%s\\n' '{{\"name\":\"extra\",\"plugins\":[{{\"type\":\"macvlan\",\"token\":\"{canary}\",\"ipam\":{{\"password\":\"{canary}\"}}}}]}}' > /etc/cni/net.d/20-extra.conflist"
    ))
    .unwrap();
    let api = LabApiServer::start(&node).unwrap();
    let kc = api.kubeconfig.to_string_lossy().into_owned();
    let args: Vec<&str> = API_ARGS
        .iter()
        .copied()
        .chain(["--kubeconfig", &kc, "--node-name", node.name(), "--redact"])
        .collect();
    let run = node.collect(&args).unwrap();
    assert!(
        run.output.success(),
        "collector failed: {}",
        run.output.stderr
    );
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut zstd_decoder(&run.bundle), &mut bytes).unwrap();
    let hay = String::from_utf8_lossy(&bytes);
    let mut needles: Vec<String> = vec![canary.to_string(), node.name().to_string()];
    for p in node.pods() {
        needles.push(p.ip.to_string());
        needles.push(p.name.clone());
    }
    for n in &needles {
        assert!(!hay.contains(n.as_str()), "{n} reached the redacted bundle");
    }
    // The redacted bundle still diagnoses: a healthy node, no finding.
    let out = Command::new(&bin)
        .args(["analyze", "--format", "json"])
        .arg(&run.bundle)
        .output()
        .unwrap();
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    expect(&r, &[]);
    assert!(
        not_evaluated(&r).is_empty(),
        "not evaluated: {}",
        r["not_evaluated"]
    );
}

/// A zstd decoder over a file, via the `zstd` program (no crate dependency here).
fn zstd_decoder(path: &std::path::Path) -> impl std::io::Read {
    let out = Command::new("zstd")
        .args(["-dc"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "zstd -dc failed");
    std::io::Cursor::new(out.stdout)
}

#[test]
fn dns_pod_stopped() {
    let Some((lab, bin)) = ready() else { return };
    let mut node = lab.node().flannel().dns().pods(1).build().unwrap();
    let dns_ip = node.dns_pod().unwrap().ip;
    let client = node.pods()[1].clone();
    node.stop_dns().unwrap();
    assert!(node.dig_from(&client, dns_ip, KUBERNETES, false).is_err());
    assert!(node.dig_from(&client, DNS_VIP, KUBERNETES, false).is_err());
    expect(&analyze(&node, &bin), &["dns-endpoint-failing"]);
}

#[test]
fn stale_udp_conntrack_to_a_deleted_pod_ip() {
    let Some((lab, bin)) = ready() else { return };
    let vip = Ipv4Addr::new(10, 96, 0, 40);
    let svc = LabService::selecting(
        "default",
        "syslog",
        vip,
        vec![LabPort::new("syslog", 514, Proto::Udp)],
        ("app", "web"),
    );
    let mut node = lab
        .node()
        .flannel()
        .dns()
        .pods(2)
        .service(svc)
        .build()
        .unwrap();
    let webs: Vec<usize> = node
        .pods()
        .iter()
        .enumerate()
        .filter(|(_, p)| p.namespace == "default")
        .map(|(i, _)| i)
        .collect();
    let (old, new) = (node.pods()[webs[0]].ip, node.pods()[webs[1]].ip);
    // A client kept sending to the VIP: its UDP flow was DNATed to the old pod.
    node.conntrack_insert(&[CtEntry::udp_dnat(
        Ipv4Addr::new(10, 244, 1, 7),
        40000,
        vip,
        514,
        (old, 514),
    )])
    .unwrap();
    node.delete_pod(webs[0]).unwrap();
    node.set_service_endpoints("default", "syslog", vec![new])
        .unwrap();
    let ct = node.run_in_node(&["conntrack", "-L", "-p", "udp"]).unwrap();
    assert!(
        ct.stdout.contains(&format!("src={old}")),
        "entry to the deleted pod is gone: {}",
        ct.stdout
    );
    expect(&analyze(&node, &bin), &["conntrack-stale-udp"]);
}

#[test]
fn docker0_inside_the_service_range() {
    let Some((lab, bin)) = ready() else { return };
    let node = lab.node().flannel().dns().pods(1).build().unwrap();
    // A leftover docker0 numbered inside the Service range (the lab's ClusterIPs are
    // 10.96.0.x): its connected route now claims those addresses on the host.
    let add = node
        .sh("ip link add docker0 type bridge && ip addr add 10.96.0.200/24 dev docker0 && ip link set docker0 up")
        .unwrap();
    assert!(add.success(), "{}", add.stderr);
    let vip = DNS_VIP.to_string();
    let route = node.run_in_node(&["ip", "route", "get", &vip]).unwrap();
    assert!(route.stdout.contains("dev docker0"), "{}", route.stdout);
    let r = analyze(&node, &bin);
    expect(&r, &["cidr-overlap"]);
    let f = &r["findings"].as_array().unwrap()[0];
    assert!(f["message"].as_str().unwrap().contains("on docker0"), "{f}");
}

/// The address the outside answers for a pod's egress packet: sends one DNS query from
/// `pod` to the outside host (172.18.0.1, beyond the node's uplink; nothing listens, the
/// packet is what matters) and reads the reply tuple's destination from the node's
/// conntrack table: the node IP when masqueraded, the pod IP when not.
fn egress_reply_destination(node: &LabNode, pod: &netsnap_lab::LabPod) -> String {
    let outside = "172.18.0.1";
    let ip = pod.ip.to_string();
    node.run_in_node(&["conntrack", "-D", "-p", "udp", "-s", &ip, "-d", outside])
        .ok();
    let at = format!("@{outside}");
    let _ = node.run_in_pod(
        pod,
        &["dig", "+time=1", "+tries=1", &at, "example.com", "A"],
    );
    let out = node
        .run_in_node(&["conntrack", "-L", "-p", "udp", "-s", &ip, "-d", outside])
        .unwrap();
    // `udp 17 29 src=POD dst=OUT sport=A dport=53 [UNREPLIED] src=OUT dst=X sport=53 dport=B ...`
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains(&format!("src={ip} ")))
        .unwrap_or_else(|| panic!("no conntrack entry for the egress probe: {}", out.stdout));
    line.split_whitespace()
        .filter_map(|w| w.strip_prefix("dst="))
        .nth(1)
        .unwrap()
        .to_string()
}

#[test]
fn pod_egress_masquerade_missing() {
    let Some((lab, bin)) = ready() else { return };
    let mut node = lab.node().flannel().pods(1).build().unwrap();
    let pod = node.pods()[0].clone();
    let node_ip = node.node_ip().to_string();
    // Healthy: flannel's FLANNEL-POSTRTG masquerades the pod's egress to the node IP.
    assert_eq!(egress_reply_destination(&node, &pod), node_ip);
    node.remove_pod_masquerade().unwrap();
    // Really broken: the packet leaves with the pod IP, which the outside cannot route back.
    assert_eq!(egress_reply_destination(&node, &pod), pod.ip.to_string());
    expect(&analyze(&node, &bin), &["pod-egress-masquerade-missing"]);
}

#[test]
fn route_to_the_other_nodes_pods_missing() {
    let Some((lab, bin)) = ready() else { return };
    let node = lab.node().flannel().pods(1).build().unwrap();
    // A pod address on the other node (served by the API with its podCIDR and InternalIP).
    let peer_pod = node.peer_pod_cidr().replace(".0/24", ".5");
    let route_get = || {
        node.run_in_node(&["ip", "route", "get", &peer_pod])
            .unwrap()
            .stdout
    };
    assert!(route_get().contains("dev flannel.1"), "{}", route_get());
    node.remove_peer_route().unwrap();
    // Really broken: the other node's pods now go to the default gateway.
    let now = route_get();
    assert!(now.contains("via 172.18.0.1 dev eth0"), "{now}");
    let report = analyze(&node, &bin);
    expect(&report, &["pod-cidr-route-missing"]);
    let finding = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule_id"] == "pod-cidr-route-missing")
        .unwrap();
    assert!(
        finding["subject"]
            .as_str()
            .unwrap()
            .contains(&node.peer_pod_cidr()),
        "{finding}"
    );
}

#[test]
fn snat_without_random_fully_and_source_ports_running_short() {
    let Some((lab, bin)) = ready() else { return };
    let mut node = lab.node().flannel().pods(2).build().unwrap();
    node.set_masquerade_random_fully(false).unwrap();
    let backend = node.backends()[0];
    let nat = node
        .run_in_node(&[backend.save(), "-t", "nat"])
        .unwrap()
        .stdout;
    assert!(
        nat.contains("! -d 224.0.0.0/4 -m comment --comment \"flanneld masq\" -j MASQUERADE\n"),
        "{nat}"
    );
    // 15,000 pod flows masqueraded to one external API: more than half of the node's
    // 28,232 source ports (ip_local_port_range) toward it.
    assert_eq!(
        node.sysctl("net.ipv4.ip_local_port_range")
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["32768", "60999"]
    );
    let api = Ipv4Addr::new(93, 184, 216, 34);
    let pods: Vec<Ipv4Addr> = node.pods().iter().map(|p| p.ip).collect();
    let flows: Vec<CtEntry> = (0..15_000u16)
        .map(|i| {
            CtEntry::tcp_snat(
                pods[usize::from(i) % pods.len()],
                20_000 + i,
                api,
                443,
                (node.node_ip(), 32_768 + i),
            )
        })
        .collect();
    node.conntrack_insert(&flows).unwrap();
    // Really there: the kernel's table holds them, SNATed to the node IP.
    let listed = node
        .run_in_node(&["conntrack", "-L", "-p", "tcp", "-d", "93.184.216.34"])
        .unwrap()
        .stdout;
    let snated = listed
        .lines()
        .filter(|l| l.contains(&format!("dst={} sport=443", node.node_ip())))
        .count();
    assert_eq!(snated, 15_000);
    expect(
        &analyze(&node, &bin),
        &["snat-masquerade-without-random-fully"],
    );
}

#[test]
fn forward_reject_before_the_cni_accept() {
    let Some((lab, bin)) = ready() else { return };
    let node = lab.node().flannel().pods(1).build().unwrap();
    let pod = node.pods()[0].clone();
    let ipt = node.backends()[0].iptables();
    let peer_pod = node.peer_pod_cidr().replace(".0/24", ".5");
    // A host firewall's catch-all REJECT (CentOS /etc/sysconfig/iptables), then flanneld
    // appends its FORWARD accept after it: the accept exists but is never reached.
    node.sh(&format!(
        "{ipt} -A FORWARD -j REJECT --reject-with icmp-host-prohibited && \
         {ipt} -N FLANNEL-FWD && \
         {ipt} -A FLANNEL-FWD -s 10.244.0.0/16 -m comment --comment 'flanneld forward' -j ACCEPT && \
         {ipt} -A FLANNEL-FWD -d 10.244.0.0/16 -m comment --comment 'flanneld forward' -j ACCEPT && \
         {ipt} -A FORWARD -m comment --comment 'flanneld forward' -j FLANNEL-FWD"
    ))
    .unwrap();
    // Really broken: a connection to the other node's pod is refused by the REJECT at once.
    let out = node
        .run_in_pod(
            &pod,
            &[
                "bash",
                "-c",
                &format!("timeout 5 bash -c 'echo > /dev/tcp/{peer_pod}/8080' 2>&1; true"),
            ],
        )
        .unwrap();
    assert!(
        out.stdout.contains("No route to host"),
        "{} {}",
        out.stdout,
        out.stderr
    );
    let report = analyze(&node, &bin);
    expect(&report, &["forward-chain-drops-pod-traffic"]);
    let finding = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule_id"] == "forward-chain-drops-pod-traffic")
        .unwrap();
    assert!(
        finding["message"]
            .as_str()
            .unwrap()
            .contains("-A FORWARD -j REJECT --reject-with icmp-host-prohibited"),
        "{finding}"
    );
    // The evidence is the REJECT line, and its kernel counters show it hit the packets.
    let text = finding["evidence"][0]["text"].as_str().unwrap();
    assert!(
        text.ends_with("] -A FORWARD -j REJECT --reject-with icmp-host-prohibited")
            && !text.starts_with("[0:"),
        "{finding}"
    );
}

/// `diff` on one node before and after a fault injected between two collections.
#[test]
fn diff_same_node_before_and_after_ip_forward_off() {
    let Some((lab, bin)) = ready() else { return };
    let node = lab.node().flannel().dns().pods(2).build().unwrap();
    let before = collect_bundle(&node);
    node.set_ip_forward(false).unwrap();
    assert_eq!(node.sysctl("net.ipv4.ip_forward").unwrap(), "0");
    let after = collect_bundle(&node);
    let (code, d) = diff_json(&bin, &before, &after);
    assert_eq!(code, 1, "{d}");
    assert_eq!(d["worse"], true);
    assert!(
        rule_ids(&d["findings"]["new"]).contains("ip-forward-disabled"),
        "{}",
        d["findings"]
    );
    let sysctls = diff_changes(&d, "sysctls");
    assert!(
        sysctls
            .iter()
            .any(|c| c["item"] == "net.ipv4.ip_forward" && c["before"] == "1" && c["after"] == "0"),
        "{sysctls:?}"
    );
    // Same node, same pods: nothing appeared or went away.
    assert!(diff_changes(&d, "pods").is_empty(), "{d}");
    assert!(diff_changes(&d, "services").is_empty(), "{d}");
    // And back: the fault fixed, the finding is resolved, exit 0.
    node.set_ip_forward(true).unwrap();
    let fixed = collect_bundle(&node);
    let (code, d) = diff_json(&bin, &after, &fixed);
    assert_eq!(code, 0, "{d}");
    assert!(rule_ids(&d["findings"]["resolved"]).contains("ip-forward-disabled"));
}

/// `diff` on two nodes built alike, one of which lost a Service's `KUBE-SERVICES` jump:
/// "works on node A, not on node B".
#[test]
fn diff_two_nodes_one_missing_a_service() {
    let Some((lab, bin)) = ready() else { return };
    let svc = web([10, 96, 0, 20]);
    let a = lab
        .node()
        .flannel()
        .pods(1)
        .service(svc.clone())
        .build()
        .unwrap();
    let mut b = lab.node().flannel().pods(1).service(svc).build().unwrap();
    b.omit_from_kube_services("default", "web").unwrap();
    let nat = |n: &LabNode| {
        n.run_in_node(&[n.backends()[0].save(), "-t", "nat"])
            .unwrap()
            .stdout
    };
    assert!(nat(&a).contains("-A KUBE-SERVICES -d 10.96.0.20/32"));
    assert!(!nat(&b).contains("-A KUBE-SERVICES -d 10.96.0.20/32"));
    let (ba, bb) = (collect_bundle(&a), collect_bundle(&b));
    let (code, d) = diff_json(&bin, &ba, &bb);
    assert_eq!(code, 1, "{d}");
    assert!(rule_ids(&d["findings"]["new"]).contains("service-missing-from-iptables"));
    let dp = diff_changes(&d, "dataplane");
    assert!(
        dp.iter()
            .any(|c| c["item"] == "10.96.0.20:80/tcp iptables" && c["after"] == "missing"),
        "{dp:?}"
    );
    assert_ne!(d["a"]["node"], d["b"]["node"]);
}

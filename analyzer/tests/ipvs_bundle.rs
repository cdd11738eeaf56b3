//! IPVS scenarios on bundles assembled from real-format `ipvsadm -Ln` output (issue 7).
//!
//! IPVS cannot run on this kernel (no `ip_vs` module, no `/proc/net/ip_vs`), so the lab
//! scenarios cannot program a real IPVS table. Instead the IPVS table of every bundle
//! here is the real-format `ipvsadm -Ln` capture in `fixtures/raw/ipvs/ipvsadm-Ln.txt`,
//! read from that file at test time, written with the real `BundleWriter` next to
//! Kubernetes objects (Services, EndpointSlices, Pods) and a host netlink snapshot whose
//! `kube-ipvs0` dummy link carries the Service VIPs. Faults are produced by editing the
//! Kubernetes side or removing lines from the fixture text, and every bundle goes through
//! the real `netsnap-analyze analyze --format json` binary; the `trace_*` tests run the
//! real `netsnap-analyze trace` through the IPVS table (issue 17): the kernel's IPVS
//! schedules at LOCAL_IN after filter INPUT and sends the request out through LOCAL_OUT
//! (filter OUTPUT) and POSTROUTING, never FORWARD, and only for a VIP local to the node.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use netsnap_bundle::testing::TestNode;
use netsnap_bundle::{
    ArtifactSource, ArtifactSpec, BundleWriter, Completion, WriterOptions, layout,
};
use serde_json::{Value, json};

/// The real-format IPVS table, as `ipvsadm -Ln` printed it.
fn ipvsadm_fixture() -> String {
    std::fs::read_to_string(format!(
        "{}/../fixtures/raw/ipvs/ipvsadm-Ln.txt",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// 1-based line number of the only fixture line containing `needle`.
fn fixture_line(text: &str, needle: &str) -> u64 {
    let hits: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(hits.len(), 1, "{needle:?} must occur once: {hits:?}");
    hits[0] as u64
}

/// The fixture without the line containing `needle` (which must exist).
fn without_line(text: &str, needle: &str) -> String {
    let before = text.lines().count();
    let out: String = text
        .lines()
        .filter(|l| !l.contains(needle))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(out.lines().count(), before - 1, "{needle:?}");
    out
}

fn ok() -> Completion {
    Completion {
        exit_status: Some(0),
        duration: Duration::from_millis(5),
        ..Completion::default()
    }
}

fn jsonl(values: &[Value]) -> String {
    values.iter().map(|v| format!("{v}\n")).collect()
}

/// The VIPs of the Services below that have an IPVS virtual server in the fixture.
const BOUND_VIPS: [&str; 5] = [
    "10.96.0.1",
    "10.96.0.10",
    "10.96.45.7",
    "10.96.77.1",
    "10.96.0.20",
];

/// The Kubernetes side of the node.
struct Cluster {
    services: Vec<Value>,
    slices: Vec<Value>,
    pods: Vec<Value>,
}

/// Services, slices and pods that match the fixture's IPVS table exactly.
fn consistent_cluster() -> Cluster {
    let t = "2026-11-01T00:00:00Z";
    let svc = |ns: &str, name: &str, ty: &str, vip: &str, ports: Value| {
        json!({"namespace": ns, "name": name, "uid": format!("s-{name}"), "type": ty,
               "cluster_ips": [vip], "ports": ports, "selector": {"app": name}, "created_at": t})
    };
    let slice = |ns: &str, svc: &str, ips: &[&str], ports: Value| {
        let eps: Vec<Value> = ips
            .iter()
            .map(|ip| json!({"addresses": [ip], "ready": true, "serving": true, "terminating": false, "node_name": "worker-2"}))
            .collect();
        json!({"namespace": ns, "name": format!("{svc}-abc"), "service_name": svc, "address_type": "IPv4",
               "created_at": t, "endpoints": eps, "ports": ports})
    };
    let pod = |ns: &str, name: &str, ip: &str| {
        json!({"namespace": ns, "name": name, "uid": format!("p-{name}"), "node_name": "worker-2",
               "phase": "Running", "ready": true, "pod_ips": [ip], "created_at": t})
    };
    Cluster {
        services: vec![
            svc(
                "default",
                "kubernetes",
                "ClusterIP",
                "10.96.0.1",
                json!([{"name": "https", "protocol": "TCP", "port": 443, "target_port": "6443"}]),
            ),
            svc(
                "kube-system",
                "kube-dns",
                "ClusterIP",
                "10.96.0.10",
                json!([{"name": "dns-tcp", "protocol": "TCP", "port": 53, "target_port": "53"},
                       {"name": "dns", "protocol": "UDP", "port": 53, "target_port": "53"}]),
            ),
            svc(
                "shop",
                "web",
                "NodePort",
                "10.96.45.7",
                json!([{"name": "http", "protocol": "TCP", "port": 80, "target_port": "8080", "node_port": 30080}]),
            ),
            svc(
                "telecom",
                "diameter",
                "ClusterIP",
                "10.96.77.1",
                json!([{"name": "diameter", "protocol": "SCTP", "port": 3868, "target_port": "3868"}]),
            ),
            svc(
                "logging",
                "syslog",
                "ClusterIP",
                "10.96.0.20",
                json!([{"name": "syslog", "protocol": "UDP", "port": 514, "target_port": "514"}]),
            ),
        ],
        slices: vec![
            json!({"namespace": "default", "name": "kubernetes", "service_name": "kubernetes", "address_type": "IPv4",
                   "created_at": t, "endpoints": [{"addresses": ["192.168.10.11"], "ready": true}],
                   "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}),
            slice(
                "kube-system",
                "kube-dns",
                &["10.244.1.3", "10.244.2.4"],
                json!([{"name": "dns-tcp", "port": 53, "protocol": "TCP"}, {"name": "dns", "port": 53, "protocol": "UDP"}]),
            ),
            // 10.244.2.9 has weight 0 in the fixture: it is terminating (draining).
            json!({"namespace": "shop", "name": "web-abc", "service_name": "web", "address_type": "IPv4", "created_at": t,
                   "endpoints": [
                       {"addresses": ["10.244.1.8"], "ready": true, "serving": true, "terminating": false, "node_name": "worker-1"},
                       {"addresses": ["10.244.2.9"], "ready": false, "serving": false, "terminating": true, "node_name": "worker-2"}],
                   "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}),
            slice(
                "telecom",
                "diameter",
                &["10.244.2.20"],
                json!([{"name": "diameter", "port": 3868, "protocol": "SCTP"}]),
            ),
            slice(
                "logging",
                "syslog",
                &["10.244.1.9"],
                json!([{"name": "syslog", "port": 514, "protocol": "UDP"}]),
            ),
        ],
        pods: vec![
            pod("kube-system", "coredns-1", "10.244.1.3"),
            pod("kube-system", "coredns-2", "10.244.2.4"),
            pod("shop", "web-1", "10.244.1.8"),
            pod("shop", "web-2", "10.244.2.9"),
            pod("telecom", "diameter-1", "10.244.2.20"),
            pod("logging", "syslog-1", "10.244.1.9"),
        ],
    }
}

/// Host links, addresses and routes: `kube-ipvs0` (DOWN/NOARP, as kube-proxy creates it)
/// carries `vips`.
fn host_netlink(vips: &[&str]) -> Value {
    let mut addrs = vec![
        json!({"ifindex": 1, "address": "127.0.0.1", "prefix_len": 8, "scope": "host"}),
        json!({"ifindex": 2, "address": "192.168.10.11", "prefix_len": 24, "scope": "global"}),
    ];
    addrs.extend(
        vips.iter()
            .map(|a| json!({"ifindex": 20, "address": a, "prefix_len": 32, "scope": "global"})),
    );
    // The kernel adds a local-table route for every address, also on the DOWN kube-ipvs0
    // (that is how IPVS gets the VIP's packets at LOCAL_IN); a real collection has them.
    let local = |a: &str, oif: u32, dev: &str| {
        json!({"table": 255, "family": "inet", "dst": format!("{a}/32"), "oif": oif, "dev": dev,
               "route_type": "local", "protocol": "kernel", "scope": "host", "prefsrc": a})
    };
    let mut routes = vec![
        json!({"table": 254, "family": "inet", "dst": "default", "gateway": "192.168.10.1", "oif": 2, "dev": "ens5", "route_type": "unicast", "protocol": "dhcp"}),
        local("192.168.10.11", 2, "ens5"),
    ];
    routes.extend(vips.iter().map(|a| local(a, 20, "kube-ipvs0")));
    json!({
        "netns": "host",
        "links": [
            {"index": 1, "name": "lo", "mtu": 65536, "oper_state": "UNKNOWN"},
            {"index": 2, "name": "ens5", "mtu": 1500, "oper_state": "UP"},
            {"index": 20, "name": "kube-ipvs0", "kind": "dummy", "mtu": 1500, "oper_state": "DOWN", "flags": ["BROADCAST", "NOARP"]}
        ],
        "addrs": addrs,
        "routes": routes
    })
}

/// kube-proxy iptables-mode service rules (KUBE-SVC/KUBE-SEP DNAT chains) for kube-dns,
/// left behind next to the IPVS table, with the same (current) endpoints.
fn iptables_with_kube_svc() -> String {
    "# Generated by iptables-nft-save v1.8.9 (nf_tables) on Sat Nov 28 03:00:01 2026
*mangle
:PREROUTING ACCEPT [0:0]
:KUBE-IPTABLES-HINT - [0:0]
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-TCOU7JCQXEZGVUNU - [0:0]
:KUBE-SEP-DNS1 - [0:0]
:KUBE-SEP-DNS2 - [0:0]
-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-SERVICES -d 10.96.0.10/32 -p udp -m comment --comment \"kube-system/kube-dns:dns cluster IP\" -m udp --dport 53 -j KUBE-SVC-TCOU7JCQXEZGVUNU
-A KUBE-SVC-TCOU7JCQXEZGVUNU -m comment --comment \"kube-system/kube-dns:dns -> 10.244.1.3:53\" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-DNS1
-A KUBE-SVC-TCOU7JCQXEZGVUNU -m comment --comment \"kube-system/kube-dns:dns -> 10.244.2.4:53\" -j KUBE-SEP-DNS2
-A KUBE-SEP-DNS1 -p udp -m comment --comment \"kube-system/kube-dns:dns\" -m udp -j DNAT --to-destination 10.244.1.3:53
-A KUBE-SEP-DNS2 -p udp -m comment --comment \"kube-system/kube-dns:dns\" -m udp -j DNAT --to-destination 10.244.2.4:53
COMMIT
"
    .to_string()
}

/// Write a bundle from an IPVS table, the Kubernetes side, the VIPs on kube-ipvs0 and
/// optionally an iptables-save.
fn write_bundle(path: &Path, ipvs: &str, c: &Cluster, vips: &[&str], iptables: Option<&str>) {
    let w = BundleWriter::create(path, WriterOptions::default()).unwrap();
    w.add_bytes(
        ArtifactSpec::raw_command(
            layout::ipvs::LIST,
            layout::content::IPVSADM_LIST,
            &["ipvsadm", "-Ln"],
        ),
        ipvs.as_bytes(),
        ok(),
    )
    .unwrap();
    w.add_json(
        ArtifactSpec::native(
            layout::netns_path(layout::HOST_NETNS, layout::netns::NETLINK),
            ArtifactSource::Netlink,
        ),
        &host_netlink(vips),
        Duration::ZERO,
    )
    .unwrap();
    for (p, v) in [
        (layout::k8s::SERVICES, &c.services),
        (layout::k8s::ENDPOINT_SLICES, &c.slices),
        (layout::k8s::PODS, &c.pods),
    ] {
        w.add_bytes(
            ArtifactSpec::native(p, ArtifactSource::KubernetesApi),
            jsonl(v).as_bytes(),
            ok(),
        )
        .unwrap();
    }
    // An IPVS-mode node: the iptables save holds kube-proxy's IPVS helpers (or, without a
    // given text, only the empty filter table) and nft lists nothing of its own. Both were
    // collected, so the rules that tell the proxy mode apart can judge.
    let empty_save =
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";
    w.add_bytes(
        ArtifactSpec::raw_command(
            layout::nft::RULESET,
            layout::content::NFT_RULESET,
            &["nft", "list", "ruleset"],
        ),
        b"",
        ok(),
    )
    .unwrap();
    if let Some(text) = iptables.or(Some(empty_save)) {
        w.add_bytes(
            ArtifactSpec::raw_command(
                layout::iptables::SAVE,
                layout::content::IPTABLES_SAVE,
                &["iptables-save", "-c"],
            )
            .with_attribute("backend", "nft"),
            text.as_bytes(),
            ok(),
        )
        .unwrap();
    }
    let t = chrono::DateTime::parse_from_rfc3339("2026-11-28T03:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    TestNode::new("worker-1", t + chrono::Duration::seconds(3))
        .kernel("6.1.0-27-amd64")
        .machine("x86_64")
        .took(3)
        .finish(w)
        .unwrap();
}

/// Run the real `netsnap-analyze analyze --format json` on a bundle built from the inputs.
fn analyze(ipvs: &str, c: &Cluster, vips: &[&str], iptables: Option<&str>) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ipvs.tar.zst");
    write_bundle(&path, ipvs, c, vips, iptables);
    let out = Command::new(env!("CARGO_BIN_EXE_netsnap-analyze"))
        .args(["analyze", "--format", "json"])
        .arg(&path)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let code = out.status.code();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        matches!(code, Some(0 | 1)),
        "exit {code:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["bundles"][0]["proxy_mode"], "ipvs", "{v:#}");
    v
}

/// Findings at warning or above.
fn serious(report: &Value) -> Vec<&Value> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] != "info")
        .collect()
}

/// The rule ids of the findings at warning or above.
fn serious_ids(report: &Value) -> BTreeSet<String> {
    serious(report)
        .iter()
        .map(|f| f["rule_id"].as_str().unwrap().to_string())
        .collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

#[test]
fn consistent_ipvs_node_has_no_finding_at_warning_or_above() {
    let r = analyze(&ipvsadm_fixture(), &consistent_cluster(), &BOUND_VIPS, None);
    assert_eq!(serious_ids(&r), set(&[]), "{r:#}");
    // Silence because the IPVS rules ran and found nothing, not because they were skipped.
    let skipped: BTreeSet<&str> = r["not_evaluated"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["rule_id"].as_str().unwrap())
        .collect();
    for id in [
        "service-missing-from-ipvs",
        "ipvs-stale-real-server",
        "ipvs-no-real-servers",
        "ipvs-vip-not-bound",
        "ipvs-weight-zero-stuck",
    ] {
        assert!(!skipped.contains(id), "{id} not evaluated: {r:#}");
    }
}

#[test]
fn vip_missing_from_kube_ipvs0_is_not_bound() {
    // kube-ipvs0 lost the diameter VIP; the IPVS table and the Kubernetes side are intact.
    let fixture = ipvsadm_fixture();
    let vips: Vec<&str> = BOUND_VIPS
        .into_iter()
        .filter(|v| *v != "10.96.77.1")
        .collect();
    let r = analyze(&fixture, &consistent_cluster(), &vips, None);
    assert_eq!(serious_ids(&r), set(&["ipvs-vip-not-bound"]), "{r:#}");
    let f = serious(&r)[0];
    assert_eq!(f["subject"], "telecom/diameter 10.96.77.1", "{f:#}");
    assert_eq!(f["evidence"][0]["path"], layout::ipvs::LIST, "{f:#}");
    assert_eq!(
        f["evidence"][0]["line"],
        fixture_line(&fixture, "SCTP  10.96.77.1:3868"),
        "{f:#}"
    );
}

#[test]
fn ready_service_without_virtual_server_is_missing_from_ipvs() {
    let mut c = consistent_cluster();
    // Remove the syslog virtual server and its real server from the table.
    let ipvs = without_line(
        &without_line(&ipvsadm_fixture(), "UDP  10.96.0.20:514"),
        "-> 10.244.1.9:514",
    );
    // A fresh-looking but old enough Service kube-proxy never programmed.
    c.services.push(json!({"namespace": "shop", "name": "cart", "uid": "s-cart", "type": "ClusterIP",
        "cluster_ips": ["10.96.112.40"], "ports": [{"name": "http", "protocol": "TCP", "port": 80, "target_port": "8080"}],
        "selector": {"app": "cart"}, "created_at": "2026-11-01T00:00:00Z"}));
    c.slices.push(json!({"namespace": "shop", "name": "cart-abc", "service_name": "cart", "address_type": "IPv4",
        "created_at": "2026-11-01T00:00:00Z",
        "endpoints": [{"addresses": ["10.244.1.12"], "ready": true, "node_name": "worker-1"}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}));
    let vips: Vec<&str> = BOUND_VIPS
        .into_iter()
        .filter(|v| *v != "10.96.0.20")
        .collect();
    let r = analyze(&ipvs, &c, &vips, None);
    assert_eq!(
        serious_ids(&r),
        set(&["service-missing-from-ipvs"]),
        "{r:#}"
    );
    let subjects: BTreeSet<&str> = serious(&r)
        .iter()
        .map(|f| f["subject"].as_str().unwrap())
        .collect();
    assert_eq!(
        subjects,
        BTreeSet::from([
            "logging/syslog:syslog 10.96.0.20:514/udp",
            "shop/cart:http 10.96.112.40:80/tcp"
        ]),
        "{r:#}"
    );
}

#[test]
fn real_server_that_is_no_ready_endpoint_is_stale() {
    let fixture = ipvsadm_fixture();
    let mut c = consistent_cluster();
    // coredns-2 was replaced: the slice now lists 10.244.2.5, IPVS still sends to 10.244.2.4.
    let dns = c
        .slices
        .iter_mut()
        .find(|s| s["service_name"] == "kube-dns")
        .unwrap();
    dns["endpoints"][1]["addresses"] = json!(["10.244.2.5"]);
    c.pods.retain(|p| p["name"] != "coredns-2");
    c.pods.push(json!({"namespace": "kube-system", "name": "coredns-3", "uid": "p-coredns-3", "node_name": "worker-2",
        "phase": "Running", "ready": true, "pod_ips": ["10.244.2.5"], "created_at": "2026-11-01T00:00:00Z"}));
    let r = analyze(&fixture, &c, &BOUND_VIPS, None);
    assert_eq!(serious_ids(&r), set(&["ipvs-stale-real-server"]), "{r:#}");
    let found = serious(&r);
    assert_eq!(found.len(), 2, "the TCP and the UDP virtual server: {r:#}");
    // No pod owns 10.244.2.4 any more: critical.
    assert!(found.iter().all(|f| f["severity"] == "critical"), "{r:#}");
    // The evidence is the real-server line of the fixture, under each virtual server.
    let tcp_vs = fixture_line(&fixture, "TCP  10.96.0.10:53");
    let udp_vs = fixture_line(&fixture, "UDP  10.96.0.10:53");
    let lines: Vec<u64> = fixture
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains("-> 10.244.2.4:53"))
        .map(|(i, _)| i as u64 + 1)
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(tcp_vs < lines[0] && udp_vs < lines[1] && lines[0] < udp_vs);
    let mut evidence: Vec<(String, u64)> = found
        .iter()
        .flat_map(|f| f["evidence"].as_array().unwrap())
        .map(|e| {
            (
                e["path"].as_str().unwrap().to_string(),
                e["line"].as_u64().unwrap(),
            )
        })
        .collect();
    evidence.sort();
    assert_eq!(
        evidence,
        vec![
            (layout::ipvs::LIST.to_string(), lines[0]),
            (layout::ipvs::LIST.to_string(), lines[1]),
        ],
        "{r:#}"
    );
    // The evidence text is the fixture's own line.
    let text = found[0]["evidence"][0]["text"].as_str().unwrap_or_default();
    assert!(text.contains("10.244.2.4:53"), "{r:#}");
}

#[test]
fn virtual_server_without_real_servers_while_endpoints_are_ready() {
    let fixture = ipvsadm_fixture();
    // kube-proxy lost the SCTP real server; the Service still has a ready endpoint.
    let ipvs = without_line(&fixture, "-> 10.244.2.20:3868");
    let r = analyze(&ipvs, &consistent_cluster(), &BOUND_VIPS, None);
    assert_eq!(serious_ids(&r), set(&["ipvs-no-real-servers"]), "{r:#}");
    let found = serious(&r);
    assert_eq!(found.len(), 1, "{r:#}");
    assert_eq!(
        found[0]["subject"],
        "telecom/diameter:diameter 10.96.77.1:3868/sctp"
    );
    // The virtual server line precedes the removed line, so its number is the fixture's.
    assert_eq!(found[0]["evidence"][0]["path"], layout::ipvs::LIST, "{r:#}");
    assert_eq!(
        found[0]["evidence"][0]["line"],
        fixture_line(&fixture, "SCTP  10.96.77.1:3868"),
        "{r:#}"
    );
}

#[test]
fn ipvs_with_kube_proxy_iptables_service_rules_is_mixed_mode() {
    let r0 = analyze(&ipvsadm_fixture(), &consistent_cluster(), &BOUND_VIPS, None);
    assert_eq!(r0["bundles"][0]["proxy_mode"], "ipvs");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mixed.tar.zst");
    write_bundle(
        &path,
        &ipvsadm_fixture(),
        &consistent_cluster(),
        &BOUND_VIPS,
        Some(&iptables_with_kube_svc()),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_netsnap-analyze"))
        .args(["analyze", "--format", "json"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "an error-level finding");
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["bundles"][0]["proxy_mode"], "mixed", "{r:#}");
    assert_eq!(serious_ids(&r), set(&["kube-proxy-mode-mixed"]), "{r:#}");
    let f = serious(&r)[0];
    assert!(
        f["message"].as_str().unwrap().contains("ipvs")
            && f["message"].as_str().unwrap().contains("iptables"),
        "{f:#}"
    );
}

/// Runs the real `netsnap-analyze trace --format json` on a bundle built from the inputs.
fn trace(
    ipvs: &str,
    c: &Cluster,
    vips: &[&str],
    iptables: Option<&str>,
    from: &str,
    to: &str,
) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ipvs.tar.zst");
    write_bundle(&path, ipvs, c, vips, iptables);
    let out = Command::new(env!("CARGO_BIN_EXE_netsnap-analyze"))
        .args(["trace", "--format", "json"])
        .arg(&path)
        .args(["--from", from, "--to", to])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn stages(branch: &Value) -> Vec<String> {
    branch["hops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["stage"].as_str().unwrap().to_string())
        .collect()
}

/// An IPVS node's filter table: FORWARD drops everything (IPVS-NATed requests never
/// cross FORWARD), and INPUT drops `input_drop` if given.
fn filter_save(input_drop: Option<&str>) -> String {
    let drop = input_drop
        .map(|d| format!("-A INPUT -d {d}/32 -p udp -m udp --dport 53 -j DROP\n"))
        .unwrap_or_default();
    format!(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n{drop}COMMIT\n"
    )
}

#[test]
fn trace_through_ipvs_crosses_input_then_output_never_forward() {
    // In the kernel IPVS schedules at LOCAL_IN (after mangle and filter INPUT) and sends
    // the request to the real server through LOCAL_OUT and POSTROUTING: a FORWARD policy
    // of DROP does not stop it.
    let f = ipvsadm_fixture();
    let save = filter_save(None);
    let t = trace(
        &f,
        &consistent_cluster(),
        &BOUND_VIPS,
        Some(&save),
        "10.244.1.50",
        "10.96.0.10:53/udp",
    );
    let branches = t["branches"].as_array().unwrap();
    assert_eq!(branches.len(), 2, "{t:#}");
    let line = fixture_line(&f, "UDP  10.96.0.10:53 rr");
    let mut targets = BTreeSet::new();
    for b in branches {
        assert_eq!(b["probability"], 0.5, "{b:#}");
        assert_eq!(b["outcome"]["kind"], "sent", "{b:#}");
        let st = stages(b);
        let pos = |s: &str| st.iter().position(|x| x == s);
        let (Some(i), Some(v), Some(o)) = (pos("filter INPUT"), pos("ipvs"), pos("filter OUTPUT"))
        else {
            panic!("INPUT, ipvs and OUTPUT expected: {st:?}");
        };
        assert!(i < v && v < o, "{st:?}");
        assert!(st.iter().all(|s| !s.contains("FORWARD")), "{st:?}");
        let h = &b["hops"][v];
        let detail = h["detail"].as_str().unwrap();
        assert!(detail.contains("(scheduler rr)"), "{h}");
        assert_eq!(h["evidence"][0]["line"], line, "{h}");
        targets.insert(
            detail
                .split(" -> ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(targets, set(&["10.244.1.3:53", "10.244.2.4:53"]));

    // A weight-0 real server (draining) gets no new connection.
    let t = trace(
        &f,
        &consistent_cluster(),
        &BOUND_VIPS,
        Some(&save),
        "10.244.1.50",
        "10.96.45.7:80/tcp",
    );
    let branches = t["branches"].as_array().unwrap();
    assert_eq!(branches.len(), 1, "{t:#}");
    assert_eq!(branches[0]["probability"], 1.0);
    assert!(
        branches[0]
            .to_string()
            .contains("10.96.45.7:80/tcp -> 10.244.1.8:8080"),
        "{t:#}"
    );
}

#[test]
fn trace_dropped_in_input_never_reaches_ipvs() {
    let f = ipvsadm_fixture();
    let save = filter_save(Some("10.96.0.10"));
    let t = trace(
        &f,
        &consistent_cluster(),
        &BOUND_VIPS,
        Some(&save),
        "10.244.1.50",
        "10.96.0.10:53/udp",
    );
    // Dropped before IPVS schedules: one branch, not one per real server.
    let branches = t["branches"].as_array().unwrap();
    assert_eq!(branches.len(), 1, "{t:#}");
    for b in branches {
        assert_eq!(b["probability"], 1.0, "{b:#}");
        assert_eq!(b["outcome"]["kind"], "dropped", "{b:#}");
        assert!(
            b["outcome"]["detail"].as_str().unwrap().contains("INPUT"),
            "{b:#}"
        );
        assert!(!stages(b).contains(&"ipvs".to_string()), "{b:#}");
    }
}

#[test]
fn trace_to_a_vip_not_bound_to_kube_ipvs0_bypasses_ipvs() {
    // Without the VIP on kube-ipvs0 the packet is not local: no LOCAL_IN, no IPVS; it is
    // forwarded to the VIP itself (here dropped by the FORWARD policy).
    let f = ipvsadm_fixture();
    let vips: Vec<&str> = BOUND_VIPS
        .into_iter()
        .filter(|v| *v != "10.96.0.10")
        .collect();
    let save = filter_save(None);
    let t = trace(
        &f,
        &consistent_cluster(),
        &vips,
        Some(&save),
        "10.244.1.50",
        "10.96.0.10:53/udp",
    );
    let branches = t["branches"].as_array().unwrap();
    assert_eq!(branches.len(), 1, "{t:#}");
    assert!(!stages(&branches[0]).contains(&"ipvs".to_string()), "{t:#}");
    assert_eq!(branches[0]["outcome"]["kind"], "dropped", "{t:#}");
    assert!(
        t["notes"]
            .to_string()
            .contains("IPVS never sees the packet"),
        "{t:#}"
    );
}

#[test]
fn trace_to_a_virtual_server_without_real_servers_is_rejected() {
    // The kernel's IPVS answers ICMP port unreachable when it finds no real server.
    let fixture = ipvsadm_fixture();
    let ipvs = without_line(&fixture, "-> 10.244.2.20:3868");
    let t = trace(
        &ipvs,
        &consistent_cluster(),
        &BOUND_VIPS,
        Some(&filter_save(None)),
        "10.244.1.50",
        "10.96.77.1:3868/sctp",
    );
    let branches = t["branches"].as_array().unwrap();
    assert_eq!(branches.len(), 1, "{t:#}");
    let b = &branches[0];
    assert_eq!(b["outcome"]["kind"], "rejected", "{b:#}");
    assert!(
        b["outcome"]["detail"]
            .as_str()
            .unwrap()
            .contains("no real server"),
        "{b:#}"
    );
    assert_eq!(stages(b).last().unwrap(), "ipvs", "{b:#}");
}

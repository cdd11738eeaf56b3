//! Regenerates the example bundles in `fixtures/bundles/` from real lab nodes
//! (real namespaces, real kube-proxy rules, real conntrack entries, real
//! dnsmasq) with the real `netsnap-collect`. Run as root:
//! `cargo build -p netsnap-collector && cargo test -p netsnap-lab --test make_example_bundles -- --ignored`.
//! The lab's API objects are served by a fake API server bound inside the node
//! (`LabApiServer`), so the bundles carry `k8s/` objects, the pod correlation
//! and DNS probes from the pods.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::net::Ipv4Addr;
use std::path::PathBuf;

use netsnap_lab::{LabApiServer, LabNode, LabPort, LabService, Proto, require_lab};

/// Bundles stay small: the conntrack dump is capped (the count and maximum are
/// still recorded from the kernel).
const ARGS: &[&str] = &[
    "--sample-interval",
    "0.2",
    "--quiet",
    "--conntrack-max-entries",
    "2000",
];

fn out_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/bundles")
}

fn save(node: &LabNode, name: &str) {
    let api = LabApiServer::start(node).unwrap();
    let kc = api.kubeconfig.to_string_lossy().into_owned();
    let args: Vec<&str> = ARGS
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
    let dest = out_dir().join(name);
    std::fs::copy(&run.bundle, &dest).unwrap();
    let size = std::fs::metadata(&dest).unwrap().len();
    assert!(size < 1 << 20, "{name} is {size} bytes, over 1 MiB");
    eprintln!("wrote {} ({size} bytes)", dest.display());
}

fn web_service() -> LabService {
    LabService::selecting(
        "default",
        "web",
        Ipv4Addr::new(10, 96, 0, 20),
        vec![LabPort::new("http", 80, Proto::Tcp).target(8080)],
        ("app", "web"),
    )
}

#[test]
#[ignore = "regenerates fixtures/bundles; run with --ignored"]
fn make_example_bundles() {
    let Some(lab) = require_lab() else { return };
    if !lab.require_collector() || !lab.require_tools(&["dnsmasq", "dig", "conntrack"]) {
        return;
    }

    let node = lab
        .node()
        .flannel()
        .dns()
        .pods(3)
        .service(web_service())
        .build()
        .unwrap();
    save(&node, "healthy-flannel.tar.zst");
    drop(node);

    let node = lab
        .node()
        .flannel()
        .dns()
        .pods(3)
        .service(web_service())
        .build()
        .unwrap();
    node.fill_conntrack_to(0.92).unwrap();
    let (count, max) = (
        node.conntrack_count().unwrap(),
        node.conntrack_max().unwrap(),
    );
    assert!(count as f64 >= 0.9 * max as f64, "conntrack {count}/{max}");
    save(&node, "conntrack-near-max.tar.zst");
    drop(node);

    let mut node = lab
        .node()
        .flannel()
        .dns()
        .pods(3)
        .service(web_service())
        .build()
        .unwrap();
    node.omit_from_kube_services("default", "web").unwrap();
    let save_out = node
        .run_in_node(&["iptables-nft-save", "-t", "nat"])
        .unwrap();
    assert!(
        !save_out
            .stdout
            .contains("-A KUBE-SERVICES -d 10.96.0.20/32")
    );
    save(&node, "service-missing.tar.zst");
    drop(node);

    let mut node = lab
        .node()
        .flannel()
        .dns()
        .pods(3)
        .service(web_service())
        .build()
        .unwrap();
    node.omit_from_kube_services("kube-system", "kube-dns")
        .unwrap();
    let client = node
        .pods()
        .iter()
        .find(|p| p.namespace == "default")
        .unwrap()
        .clone();
    let dns_ip = node.dns_pod().unwrap().ip;
    let name = "kubernetes.default.svc.cluster.local";
    let vip = Ipv4Addr::new(10, 96, 0, 10);
    assert!(
        node.dig_from(&client, vip, name, false).is_err(),
        "DNS via the VIP still answers"
    );
    assert_eq!(
        node.dig_from(&client, dns_ip, name, false).unwrap(),
        vec!["10.96.0.1".to_string()]
    );
    save(&node, "dns-vip-failing.tar.zst");
}

/// A two-node flannel cluster (`lab-node-a` 10.244.0.0/24, `lab-node-b` 10.244.1.0/24, each
/// the other's peer) with faults placed on B: its route to A's pods points at a VTEP no node
/// has, the DNS Service's rules are gone (DNS through the VIP fails on B only), and its
/// kube-proxy reports v1.33.7. Written to `fixtures/bundles/cluster/`.
#[test]
#[ignore = "regenerates fixtures/bundles/cluster; run with --ignored"]
fn make_cluster_example_bundles() {
    use netsnap_lab::PeerNode;
    let Some(lab) = require_lab() else { return };
    if !lab.require_collector() || !lab.require_tools(&["dnsmasq", "dig", "conntrack"]) {
        return;
    }
    let (ip_a, ip_b) = (Ipv4Addr::new(172, 18, 0, 10), Ipv4Addr::new(172, 18, 0, 11));
    let a = lab
        .node()
        .flannel()
        .dns()
        .pods(2)
        .service(web_service())
        .name("lab-node-a")
        .node_ip(ip_a)
        .peer(PeerNode {
            name: "lab-node-b".into(),
            subnet: 1,
            ip: ip_b,
        })
        .build()
        .unwrap();
    let mut b = lab
        .node()
        .flannel()
        .dns()
        .pods(2)
        .service(web_service())
        .name("lab-node-b")
        .node_ip(ip_b)
        .subnet(1)
        .peer(PeerNode {
            name: "lab-node-a".into(),
            subnet: 0,
            ip: ip_a,
        })
        .kube_proxy_version("v1.33.7")
        .build()
        .unwrap();
    b.set_peer_route_gateway(Ipv4Addr::new(10, 244, 9, 0))
        .unwrap();
    let route = b
        .run_in_node(&["ip", "route", "get", "10.244.0.3"])
        .unwrap();
    assert!(route.stdout.contains("via 10.244.9.0 dev flannel.1"));
    b.omit_from_kube_services("kube-system", "kube-dns")
        .unwrap();
    let name = "kubernetes.default.svc.cluster.local";
    let vip = Ipv4Addr::new(10, 96, 0, 10);
    let client = |n: &LabNode| {
        n.pods()
            .iter()
            .find(|p| p.namespace == "default")
            .unwrap()
            .clone()
    };
    assert!(b.dig_from(&client(&b), vip, name, false).is_err());
    assert_eq!(
        a.dig_from(&client(&a), vip, name, false).unwrap(),
        vec!["10.96.0.1".to_string()]
    );
    std::fs::create_dir_all(out_dir().join("cluster")).unwrap();
    save(&a, "cluster/lab-node-a.tar.zst");
    save(&b, "cluster/lab-node-b.tar.zst");
}

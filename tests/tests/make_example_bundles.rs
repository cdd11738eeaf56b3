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

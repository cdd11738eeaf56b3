//! `netsnap-analyze import` on a REAL sosreport: the Debian `sosreport` package runs
//! inside a lab node (`sos report --batch -o networking,ipvs,kernel`, entered with the
//! lab's `nsenter`), the node carrying two injected faults — `net.ipv4.ip_forward=0`,
//! whose data sos carries (`sysctl -a` of the kernel plugin), and a Service missing from
//! `KUBE-SERVICES`, whose data it does not (this sos collects `iptables -nvL` listings
//! only, not `iptables-save`). The imported bundle must yield the first as a finding
//! and report the rules needing iptables as not evaluated, with the import's reason.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use netsnap_lab::{LabPort, LabService, Proto, analyzer_bin, require_lab};

#[test]
fn sosreport_of_a_faulty_node_imports_and_analyzes() {
    let Some(lab) = require_lab() else { return };
    if !lab.require_tools(&["sos", "xz"]) {
        return;
    }
    let Some(bin) = analyzer_bin() else { return };
    let web = LabService::selecting(
        "default",
        "web",
        Ipv4Addr::new(10, 96, 0, 20),
        vec![LabPort::new("http", 80, Proto::Tcp).target(8080)],
        ("app", "web"),
    );
    let mut node = lab.node().flannel().pods(2).service(web).build().unwrap();
    node.set_ip_forward(false).unwrap();
    assert_eq!(node.sysctl("net.ipv4.ip_forward").unwrap(), "0");
    node.omit_from_kube_services("default", "web").unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let out = node
        .run_in_node_raw(
            &[
                "sos",
                "report",
                "--batch",
                "-o",
                "networking,ipvs,kernel",
                "-k",
                "networking.ethtool_namespaces=off",
                "--tmp-dir",
                dir,
            ],
            &[],
            Duration::from_secs(600),
        )
        .unwrap();
    assert!(
        out.status.success(),
        "sos failed: {}\n{}",
        out.stdout,
        out.stderr
    );
    let tarball = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            n.starts_with("sosreport-") && n.ends_with(".tar.xz")
        })
        .unwrap_or_else(|| panic!("no sosreport tarball: {}", out.stdout));

    let bundle = tmp.path().join("imported.tar.zst");
    let imp = Command::new(&bin)
        .args([
            "import",
            tarball.to_str().unwrap(),
            "-o",
            bundle.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let imp_err = String::from_utf8_lossy(&imp.stderr);
    assert_eq!(imp.status.code(), Some(0), "{imp_err}");
    assert!(imp_err.contains("Sosreport"), "{imp_err}");

    // The node's own interfaces came through `ip -d address` (flannel style: cni0, flannel.1).
    let links = Command::new(&bin)
        .args([
            "inspect",
            bundle.to_str().unwrap(),
            "links",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    let links: serde_json::Value = serde_json::from_slice(&links.stdout).unwrap();
    let names: Vec<&str> = links
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["name"].as_str())
        .collect();
    assert!(
        names.contains(&"cni0") && names.contains(&"flannel.1"),
        "{names:?}"
    );

    let rep = Command::new(&bin)
        .args(["analyze", bundle.to_str().unwrap(), "--format", "json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&rep.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&rep.stderr)));
    let ids: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule_id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"ip-forward-disabled"), "{ids:?}");
    assert!(!ids.contains(&"service-missing-from-iptables"));
    let not_eval: Vec<(&str, &str)> = v["not_evaluated"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["rule_id"].as_str().unwrap(),
                n["reason"].as_str().unwrap(),
            )
        })
        .collect();
    for rule in ["service-missing-from-iptables", "kube-proxy-rules-absent"] {
        let (_, reason) = not_eval
            .iter()
            .find(|(r, _)| *r == rule)
            .unwrap_or_else(|| panic!("{rule} not reported as not evaluated: {not_eval:?}"));
        assert!(reason.contains("not in the sosreport"), "{rule}: {reason}");
    }
    node.teardown();
}

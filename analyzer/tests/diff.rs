//! `netsnap-analyze diff A B` on the real example bundles of `fixtures/bundles/` (collected
//! in lab nodes): the healthy node against the node whose Service lost its
//! `KUBE-SERVICES` jump, both ways, a bundle against itself, and the three formats.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

fn bundle(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/bundles")
        .join(name)
}

fn diff(a: &str, b: &str, extra: &[&str]) -> (i32, String) {
    // Relative names from the bundles' directory: the snapshot holds no checkout path.
    let out = Command::new(env!("CARGO_BIN_EXE_netsnap-analyze"))
        .current_dir(bundle(""))
        .arg("diff")
        .arg(a)
        .arg(b)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
    )
}

fn json(a: &str, b: &str) -> (i32, serde_json::Value) {
    let (code, out) = diff(a, b, &["--format", "json"]);
    (code, serde_json::from_str(&out).unwrap())
}

fn section<'a>(d: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    d["sections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
}

#[test]
fn service_dropped_from_kube_services_is_worse() {
    let (code, d) = json("healthy-flannel.tar.zst", "service-missing.tar.zst");
    assert_eq!(code, 1, "a new finding: exit 1");
    assert_eq!(d["schema_version"], 1);
    assert_eq!(d["kind"], "netsnap-diff");
    assert_eq!(d["worse"], true);
    let new: Vec<&str> = d["findings"]["new"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule_id"].as_str().unwrap())
        .collect();
    assert_eq!(new, ["service-missing-from-iptables"]);
    assert!(d["findings"]["resolved"].as_array().unwrap().is_empty());
    // The dataplane of the Service port: three endpoints before, no KUBE-SERVICES rule after.
    let dp = section(&d, "dataplane").expect("dataplane section");
    let changes = dp["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{dp}");
    assert_eq!(changes[0]["item"], "10.96.0.20:80/tcp iptables");
    assert_eq!(
        changes[0]["before"],
        "10.244.0.3:8080, 10.244.0.4:8080, 10.244.0.5:8080"
    );
    assert_eq!(changes[0]["after"], "missing");
    // One rule fewer in nat.
    let rc = section(&d, "rule counts").expect("rule counts");
    assert!(
        rc["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["item"] == "iptables nft v4 nat"
                && c["before"] == "46"
                && c["after"] == "45"),
        "{rc}"
    );
    // Same kube-proxy mode and Services on both: no such sections.
    assert!(section(&d, "kube-proxy").is_none());
    assert!(section(&d, "services").is_none());
    // Per-veth sysctls follow the veths, not listed on their own.
    if let Some(s) = section(&d, "sysctls") {
        assert!(
            !s.to_string().contains(".conf.veth"),
            "per-veth sysctls listed: {s}"
        );
    }
}

#[test]
fn the_other_way_round_resolves_and_exits_0() {
    let (code, d) = json("service-missing.tar.zst", "healthy-flannel.tar.zst");
    assert_eq!(code, 0);
    assert_eq!(d["worse"], false);
    assert!(d["findings"]["new"].as_array().unwrap().is_empty());
    assert_eq!(
        d["findings"]["resolved"][0]["rule_id"],
        "service-missing-from-iptables"
    );
}

#[test]
fn a_bundle_against_itself_has_no_difference() {
    let (code, d) = json("dns-vip-failing.tar.zst", "dns-vip-failing.tar.zst");
    assert_eq!(code, 0);
    assert!(d["sections"].as_array().unwrap().is_empty(), "{d}");
    for k in ["new", "resolved", "changed", "not_evaluated_in_b"] {
        assert!(d["findings"][k].as_array().unwrap().is_empty(), "{k}");
    }
    let (_, text) = diff("dns-vip-failing.tar.zst", "dns-vip-failing.tar.zst", &[]);
    assert!(text.contains("findings: 0 new, 0 resolved, 0 changed"));
    assert!(text.contains("no other difference"));
}

#[test]
fn fail_on_threshold_and_conntrack_pressure() {
    // conntrack-near-max is an error finding: worse at --fail-on error, not at critical.
    let (code, d) = json("healthy-flannel.tar.zst", "conntrack-near-max.tar.zst");
    assert_eq!(code, 1);
    let ct = section(&d, "conntrack").expect("conntrack section");
    let count = ct["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["item"] == "count/max")
        .expect("count/max");
    assert!(
        count["after"].as_str().unwrap().contains("262144"),
        "{count}"
    );
    let (code, _) = diff(
        "healthy-flannel.tar.zst",
        "conntrack-near-max.tar.zst",
        &["--fail-on", "critical"],
    );
    assert_eq!(code, 0);
}

#[test]
fn text_and_markdown_renderings() {
    let (_, text) = diff("healthy-flannel.tar.zst", "service-missing.tar.zst", &[]);
    assert!(text.contains("findings: 1 new, 0 resolved, 0 changed, 0 not evaluated in B (worse)"));
    assert!(
        text.contains(
            "  + service-missing-from-iptables default/web:http 10.96.0.20:80/tcp [error]"
        )
    );
    assert!(text.contains(
        "  10.96.0.20:80/tcp iptables: 10.244.0.3:8080, 10.244.0.4:8080, 10.244.0.5:8080 -> missing"
    ));
    let (_, md) = diff(
        "healthy-flannel.tar.zst",
        "service-missing.tar.zst",
        &["--format", "markdown"],
    );
    assert!(md.starts_with("# netsnap diff\n"));
    assert!(md.contains("## Findings (worse)"));
    assert!(md.contains("| new | service-missing-from-iptables |"));
    assert!(md.contains("## dataplane"));
    insta::assert_snapshot!("diff_markdown_service_missing", md);
}

#[test]
fn unreadable_bundle_is_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_netsnap-analyze"))
        .args(["diff", "/nonexistent/a.tar.zst"])
        .arg(bundle("healthy-flannel.tar.zst"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("opening /nonexistent/a.tar.zst"), "{err}");
}

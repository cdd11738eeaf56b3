//! The cluster view of `analyze` over several node bundles, on the real example bundles of
//! `fixtures/bundles/`: the per-node summary, the cluster rules, the same bundle given twice,
//! directories of bundles, and cluster rules over nodes with missing data (never a finding
//! from it). The two-node lab set with placed faults is `fixtures/bundles/cluster/` (and the
//! lab test `tests/tests/cluster_lab.rs`).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::path::{Path, PathBuf};
use std::process::Command;

use netsnap_analyzer::analyze::cluster::CLUSTER_NODE;
use netsnap_analyzer::analyze::{Report, analyze};
use netsnap_analyzer::rules::RuleSet;
use netsnap_bundle::{ArtifactStatus, Bundle, Manifest, ReaderOptions, layout};

fn fixture(name: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/bundles")).join(name)
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_netsnap-analyze"));
    c.env("NO_COLOR", "1");
    c
}

fn run(args: &[&Path]) -> (i32, String, String) {
    let out = bin().arg("analyze").args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn json(args: &[&Path]) -> serde_json::Value {
    let out = bin()
        .arg("analyze")
        .args(args)
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn cluster_findings<'a>(r: &'a serde_json::Value, rule: &str) -> Vec<&'a serde_json::Value> {
    r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["node"] == CLUSTER_NODE && f["rule_id"] == rule)
        .collect()
}

fn node_of(path: &Path) -> String {
    let b = Bundle::open(path, &ReaderOptions::default()).unwrap();
    b.manifest().node.name.clone().unwrap()
}

#[test]
fn per_node_table_and_cluster_rules_over_the_example_bundles() {
    let (healthy, dns, svc) = (
        fixture("healthy-flannel.tar.zst"),
        fixture("dns-vip-failing.tar.zst"),
        fixture("service-missing.tar.zst"),
    );
    let r = json(&[&healthy, &dns, &svc]);
    let rows = r["cluster"]["nodes"].as_array().unwrap();
    let names: Vec<String> = rows
        .iter()
        .map(|n| n["node"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, [node_of(&healthy), node_of(&dns), node_of(&svc)]);
    // Each row counts that node's own findings.
    for row in rows {
        let own = r["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["node"] == row["node"] && f["severity"] == "error")
            .count();
        assert_eq!(row["error"].as_u64().unwrap() as usize, own, "{row}");
        assert_eq!(row["proxy_mode"], "iptables");
        assert_eq!(row["proxy_backend"], "nft");
        assert_eq!(row["outcome"], "complete");
    }
    assert_eq!(r["cluster"]["rules_evaluated"], 6, "{}", r["cluster"]);
    // DNS through the VIP fails on one node only: the split names that node.
    let split = cluster_findings(&r, "cluster-dns-node-split");
    assert_eq!(split.len(), 1);
    assert_eq!(split[0]["subject"].as_str().unwrap(), node_of(&dns));
    assert!(
        split[0]["message"]
            .as_str()
            .unwrap()
            .contains(&node_of(&healthy))
    );
    // These lab nodes were built alone, each with the pod CIDR 10.244.0.0/24 and the same
    // first pod IPs: analyzed as one cluster, that is what they are.
    assert_eq!(cluster_findings(&r, "cluster-pod-cidr-overlap").len(), 3);
    let ips = cluster_findings(&r, "cluster-pod-ip-on-two-nodes");
    assert!(ips.iter().any(|f| f["subject"] == "10.244.0.2"), "{ips:?}");
    // Evidence of a cluster finding is quoted from the bundle of the node it names.
    let overlap = &cluster_findings(&r, "cluster-pod-cidr-overlap")[0];
    for e in overlap["evidence"].as_array().unwrap() {
        let node = e["node"].as_str().unwrap();
        let text = e["text"].as_str().unwrap();
        assert!(text.contains(&format!("\"name\":\"{node}\"")), "{e}");
    }
    // Same kube-proxy mode and version everywhere, routes are connected routes: silent.
    for quiet in [
        "cluster-kube-proxy-mode-skew",
        "cluster-kube-proxy-version-skew",
        "cluster-pod-route-wrong-node",
    ] {
        assert!(cluster_findings(&r, quiet).is_empty(), "{quiet}");
    }
    // The text report starts with the table.
    let (code, text, _) = run(&[&healthy, &dns]);
    assert_eq!(code, 1);
    let first = text.lines().next().unwrap();
    for col in [
        "NODE",
        "CAPTURED",
        "KUBE-PROXY",
        "OUTCOME",
        "CRITICAL",
        "INFO",
    ] {
        assert!(first.contains(col), "{first}");
    }
    assert!(
        text.contains("6 cluster rule(s) evaluated over 2 nodes"),
        "{text}"
    );
    assert!(text.contains(" [cluster]"), "{text}");
}

#[test]
fn one_bundle_has_no_cluster_view() {
    let r = json(&[&fixture("healthy-flannel.tar.zst")]);
    assert!(r.get("cluster").is_none());
    let cluster_rules = r["not_evaluated"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["rule_id"].as_str().unwrap().starts_with("cluster-"))
        .count();
    assert_eq!(cluster_rules, 0);
}

#[test]
fn the_same_bundle_twice_is_refused() {
    let healthy = fixture("healthy-flannel.tar.zst");
    let (code, out, err) = run(&[&healthy, &fixture("dns-vip-failing.tar.zst"), &healthy]);
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty());
    assert!(
        err.contains("is given twice: give each bundle once"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    // A copy under another name is the same collection.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("again.tar.zst");
    std::fs::copy(&healthy, &copy).unwrap();
    let (code, _, err) = run(&[&healthy, &copy]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("again.tar.zst is the same bundle as")
            && err.contains(&format!("node {}", node_of(&healthy))),
        "{err}"
    );
}

#[test]
fn a_directory_of_bundles_is_one_cluster() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["healthy-flannel.tar.zst", "service-missing.tar.zst"] {
        std::fs::copy(fixture(name), dir.path().join(name)).unwrap();
    }
    std::fs::write(dir.path().join("README.txt"), "not a bundle").unwrap();
    let r = json(&[dir.path()]);
    let rows: Vec<&str> = r["cluster"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["path"].as_str().unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows[0].ends_with("healthy-flannel.tar.zst"), "{rows:?}");
    let empty = tempfile::tempdir().unwrap();
    let (code, _, err) = run(&[empty.path()]);
    assert_eq!(code, 2);
    assert!(err.contains("nor a directory of bundles"), "{err}");
}

/// An extracted copy of a fixture bundle with one artifact recorded as failed.
fn with_failed(name: &str, failed: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let b = Bundle::open(fixture(name), &ReaderOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(name.trim_end_matches(".tar.zst"));
    copy_tree(b.root(), &root);
    let mpath = root.join(layout::MANIFEST);
    let mut m: Manifest = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    for path in failed {
        let r = m.artifacts.iter_mut().find(|a| a.path == *path).unwrap();
        r.status = ArtifactStatus::Failed;
        r.error = Some("timed out after 5 s (killed); rerun with --timeout 60s".into());
        r.size = 0;
        r.sha256 = None;
        r.truncated = None;
        r.exit_status = None;
        std::fs::remove_file(root.join(path)).unwrap();
    }
    std::fs::write(&mpath, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    (dir, root)
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

fn analyze_paths(paths: &[&Path]) -> Report {
    let rules = RuleSet::builtin().unwrap();
    let opened: Vec<(String, Bundle)> = paths
        .iter()
        .map(|p| {
            (
                p.display().to_string(),
                Bundle::open(p, &ReaderOptions::default()).unwrap(),
            )
        })
        .collect();
    let refs: Vec<(String, &Bundle)> = opened.iter().map(|(p, b)| (p.clone(), b)).collect();
    analyze(&refs, &rules).unwrap()
}

fn cluster_rule_findings(r: &Report, rule: &str) -> Vec<String> {
    r.findings
        .iter()
        .filter(|f| f.node == CLUSTER_NODE && f.rule_id == rule)
        .map(|f| f.subject.clone())
        .collect()
}

#[test]
fn a_cluster_rule_never_concludes_from_missing_data() {
    let dns = fixture("dns-vip-failing.tar.zst");
    // Two nodes, the healthy one's probes failed to run: nothing to compare.
    let (_d1, healthy_no_probes) = with_failed("healthy-flannel.tar.zst", &["dns/probes.json"]);
    let r = analyze_paths(&[&healthy_no_probes, &dns]);
    assert!(cluster_rule_findings(&r, "cluster-dns-node-split").is_empty());
    let ne = r
        .not_evaluated
        .iter()
        .find(|n| n.rule_id == "cluster-dns-node-split")
        .expect("not evaluated");
    assert_eq!(ne.node, CLUSTER_NODE);
    assert!(
        ne.reason.contains("usable on 1 of 2 nodes") && ne.reason.contains("timed out"),
        "{}",
        ne.reason
    );
    // Three nodes, one without probes: the rule runs over the other two and says which
    // node it left out.
    let healthy = fixture("healthy-flannel.tar.zst");
    let (_d2, svc_no_probes) = with_failed("service-missing.tar.zst", &["dns/probes.json"]);
    let r = analyze_paths(&[&healthy, &svc_no_probes, &dns]);
    assert_eq!(
        cluster_rule_findings(&r, "cluster-dns-node-split"),
        [node_of(&dns)]
    );
    let svc_node = node_of(&fixture("service-missing.tar.zst"));
    let split = r
        .findings
        .iter()
        .find(|f| f.rule_id == "cluster-dns-node-split")
        .unwrap();
    assert!(
        split.message.contains(&format!("without {svc_node}")),
        "{}",
        split.message
    );
    assert!(
        r.partial_data
            .iter()
            .any(|p| p.rule_id == "cluster-dns-node-split" && p.reason.contains(&svc_node))
    );
    // A node whose Node list failed claims no pod CIDR: the overlaps left are the other
    // two nodes' only.
    let (_d3, healthy_no_nodes) = with_failed("healthy-flannel.tar.zst", &["k8s/nodes.jsonl"]);
    let r = analyze_paths(&[&healthy_no_nodes, &svc_no_probes, &dns]);
    let healthy_node = node_of(&healthy);
    let overlaps = cluster_rule_findings(&r, "cluster-pod-cidr-overlap");
    assert_eq!(overlaps.len(), 1, "{overlaps:?}");
    assert!(!overlaps[0].contains(&healthy_node), "{overlaps:?}");
    let (_d4, dns_no_nodes) = with_failed("dns-vip-failing.tar.zst", &["k8s/nodes.jsonl"]);
    let r = analyze_paths(&[&healthy_no_nodes, &dns_no_nodes]);
    assert!(cluster_rule_findings(&r, "cluster-pod-cidr-overlap").is_empty());
    assert!(
        r.not_evaluated
            .iter()
            .any(|n| n.rule_id == "cluster-pod-cidr-overlap" && n.reason.contains("0 of 2"))
    );
}

/// The two-node lab set of `fixtures/bundles/cluster/` (faults placed on `lab-node-b`, see
/// `fixtures/bundles/README.md`), given as a directory, in the three formats.
#[test]
fn two_node_example_set_snapshots() {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let report = |format: &str| {
        let out = bin()
            .current_dir(root)
            .args(["analyze", "fixtures/bundles/cluster", "--format", format])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let text = report("text");
    insta::assert_snapshot!("cluster_example_text", text);
    insta::assert_snapshot!("cluster_example_markdown", report("markdown"));
    let r: serde_json::Value = serde_json::from_str(&report("json")).unwrap();
    insta::assert_json_snapshot!("cluster_example_json", r["cluster"]);
    let found: Vec<(String, String)> = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["node"] == CLUSTER_NODE)
        .map(|f| {
            (
                f["rule_id"].as_str().unwrap().to_string(),
                f["subject"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            (
                "cluster-dns-node-split".to_string(),
                "lab-node-b".to_string()
            ),
            (
                "cluster-pod-route-wrong-node".to_string(),
                "lab-node-b -> lab-node-a 10.244.0.0/24".to_string()
            ),
            (
                "cluster-kube-proxy-version-skew".to_string(),
                "kube-proxy version".to_string()
            ),
        ]
    );
    // Healthy A: no finding of its own; B: the DNS Service's node findings.
    let rows = r["cluster"]["nodes"].as_array().unwrap();
    assert_eq!(
        (rows[0]["node"].as_str(), rows[0]["critical"].as_u64()),
        (Some("lab-node-a"), Some(0))
    );
    assert_eq!(
        (rows[1]["node"].as_str(), rows[1]["critical"].as_u64()),
        (Some("lab-node-b"), Some(4))
    );
}

/// `facts --cluster` prints the document cluster rules see: the same joins the report used.
#[test]
fn facts_cluster_prints_the_cluster_document() {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let out = bin()
        .current_dir(root)
        .args(["facts", "--cluster", "fixtures/bundles/cluster"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["schema_version"], 1);
    let names: Vec<&str> = doc["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["lab-node-a", "lab-node-b"]);
    let verdicts: Vec<(&str, &str)> = doc["pod_routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["from"].as_str().unwrap(), r["verdict"].as_str().unwrap()))
        .collect();
    assert_eq!(
        verdicts,
        [("lab-node-a", "target"), ("lab-node-b", "foreign")]
    );
    assert_eq!(
        doc["dns_vip"]["answering"],
        serde_json::json!(["lab-node-a"])
    );
    assert_eq!(doc["proxy_versions"].as_array().unwrap().len(), 2);
    // One bundle is not a cluster.
    let out = bin()
        .current_dir(root)
        .args([
            "facts",
            "--cluster",
            "fixtures/bundles/cluster/lab-node-a.tar.zst",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("two or more node bundles"));
}

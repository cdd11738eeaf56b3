//! Joining the node bundles of a fan-out run (`--api-scope node`) with the run's
//! cluster bundle (`--api-scope cluster`): rules that need cluster lists run on
//! the joined data, and are *not evaluated* with the node bundle's reason when
//! the cluster bundle is not given.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use netsnap_analyzer::analyze::analyze;
use netsnap_analyzer::join::{JoinError, join_runs};
use netsnap_analyzer::rules::RuleSet;
use netsnap_bundle::k8s::CLUSTER_LISTS;
use netsnap_bundle::{
    ArtifactSource, ArtifactSpec, ArtifactStatus, Bundle, BundleWriter, CollectionInfo,
    CollectionOutcome, Completion, NodeInfo, ReaderOptions, ToolInfo, WriterOptions, layout,
};
use serde_json::json;

fn finish(w: BundleWriter, node: Option<&str>, options: serde_json::Value) {
    let t = chrono::DateTime::parse_from_rfc3339("2026-11-28T03:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    w.finish(
        ToolInfo {
            name: "netsnap-collect".into(),
            version: "0.1.0".into(),
        },
        NodeInfo {
            name: node.map(str::to_string),
            hostname: node.unwrap_or("gatherer").into(),
            kernel_release: "6.1.0-27-amd64".into(),
            machine: Some("x86_64".into()),
        },
        CollectionInfo {
            started_at: t,
            finished_at: t + chrono::Duration::seconds(4),
            outcome: CollectionOutcome::Complete,
            options,
            notes: vec![],
            resource_usage: None,
        },
    )
    .unwrap();
}

/// A node-scope bundle: node data, the cluster lists recorded as skipped.
fn node_bundle(path: &Path, node: &str, run: &str) {
    let w = BundleWriter::create(path, WriterOptions::default()).unwrap();
    w.add_json(
        ArtifactSpec::native(layout::node::SYSCTLS, ArtifactSource::File),
        &json!({"net.ipv4.ip_forward": "1"}),
        Duration::ZERO,
    )
    .unwrap();
    // The node's only namespace, with no pod address in it: duplicate-pod-ip needs every
    // namespace's addresses (and here judges the pods from the cluster list).
    w.add_json(
        ArtifactSpec::native(
            layout::netns_path(layout::HOST_NETNS, layout::netns::NETLINK),
            ArtifactSource::Netlink,
        ),
        &json!({"netns": "host", "links": [], "addrs": [], "routes": []}),
        Duration::ZERO,
    )
    .unwrap();
    for p in CLUSTER_LISTS {
        w.record_missing(
            ArtifactSpec::native(*p, ArtifactSource::KubernetesApi),
            ArtifactStatus::Skipped,
            format!("api-scope node: cluster lists are in the cluster bundle of run {run} (analyze it together with this bundle)"),
            Completion::default(),
        )
        .unwrap();
    }
    finish(w, Some(node), json!({"api_scope": "node", "run_id": run}));
}

/// A cluster bundle whose pod list has two live pods sharing one IP.
fn cluster_bundle(path: &Path, run: Option<&str>) {
    cluster_bundle_with_events(path, run, "");
}

/// [`cluster_bundle`] with `events` as its Events list: two passes of one run differ there.
fn cluster_bundle_with_events(path: &Path, run: Option<&str>, events: &str) {
    let w = BundleWriter::create(path, WriterOptions::default()).unwrap();
    let pod = |name: &str, node: &str| {
        json!({"namespace": "shop", "name": name, "uid": format!("u-{name}"), "node_name": node,
               "phase": "Running", "pod_ips": ["10.244.1.7"], "ready": true})
    };
    let pods = format!("{}\n{}\n", pod("web-a", "node-a"), pod("web-b", "node-b"));
    let add = |p: &str, text: &str| {
        w.add_bytes(
            ArtifactSpec::native(p, ArtifactSource::KubernetesApi)
                .with_attribute("api_scope", "cluster"),
            text.as_bytes(),
            Completion::default(),
        )
        .unwrap();
    };
    add(layout::k8s::PODS, &pods);
    add(layout::k8s::SERVICES, "");
    add(layout::k8s::ENDPOINT_SLICES, "");
    add(
        layout::k8s::NODES,
        &format!(
            "{}\n",
            json!({"name": "node-a", "uid": "n1", "pod_cidrs": ["10.244.1.0/24"]})
        ),
    );
    add(layout::k8s::EVENTS, events);
    finish(w, None, json!({"api_scope": "cluster", "run_id": run}));
}

fn open(p: &Path) -> Bundle {
    Bundle::open(p, &ReaderOptions::default()).unwrap()
}

#[test]
fn node_bundle_alone_leaves_cluster_rules_not_evaluated_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let n = dir.path().join("node-a.tar.zst");
    node_bundle(&n, "node-a", "r1");
    let (bundles, summary) = join_runs(vec![("node-a".into(), open(&n))]).unwrap();
    assert!(summary.joined.is_empty());
    let refs: Vec<(String, &Bundle)> = bundles.iter().map(|(p, b)| (p.clone(), b)).collect();
    let r = analyze(&refs, &RuleSet::builtin().unwrap()).unwrap();
    let ne = r
        .not_evaluated
        .iter()
        .find(|n| n.rule_id == "duplicate-pod-ip")
        .expect("duplicate-pod-ip needs the cluster pod list");
    assert!(
        ne.reason.contains("api-scope node") && ne.reason.contains("run r1"),
        "{}",
        ne.reason
    );
    assert!(r.findings.iter().all(|f| f.rule_id != "duplicate-pod-ip"));
}

#[test]
fn node_bundles_take_the_cluster_lists_of_their_run() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        dir.path().join("node-a.tar.zst"),
        dir.path().join("node-b.tar.zst"),
        dir.path().join("cluster.tar.zst"),
    );
    node_bundle(&a, "node-a", "r1");
    node_bundle(&b, "node-b", "r1");
    cluster_bundle(&c, Some("r1"));
    let (bundles, summary) = join_runs(vec![
        ("node-a".into(), open(&a)),
        ("node-b".into(), open(&b)),
        ("cluster".into(), open(&c)),
    ])
    .unwrap();
    assert_eq!(bundles.len(), 2, "the cluster bundle is not a node");
    assert_eq!(summary.joined.len(), 2);
    for (_, nb) in &bundles {
        for p in CLUSTER_LISTS {
            let rec = nb.record(p).unwrap();
            assert_eq!(rec.status, ArtifactStatus::Ok, "{p}");
            assert!(rec.attributes["joined_from"].ends_with("cluster.tar.zst"));
        }
        assert!(
            nb.read_text(layout::k8s::PODS)
                .unwrap()
                .unwrap()
                .contains("web-b")
        );
    }
    let refs: Vec<(String, &Bundle)> = bundles.iter().map(|(p, b)| (p.clone(), b)).collect();
    let r = analyze(&refs, &RuleSet::builtin().unwrap()).unwrap();
    assert!(
        r.not_evaluated
            .iter()
            .all(|n| n.rule_id != "duplicate-pod-ip"),
        "{:?}",
        r.not_evaluated
    );
    // The joined pod list is really used: both nodes see the shared IP.
    let dups: Vec<&str> = r
        .findings
        .iter()
        .filter(|f| f.rule_id == "duplicate-pod-ip")
        .map(|f| f.node.as_str())
        .collect();
    assert_eq!(dups.len(), 2, "{:?}", r.findings);
    // The cluster bundle's files outlive it: it was consumed by the join.
    drop(r);
    for (_, nb) in &bundles {
        assert!(nb.artifact_file(layout::k8s::PODS).unwrap().is_file());
    }
}

#[test]
fn mismatched_or_lone_cluster_bundles_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (a, c, c2, c0) = (
        dir.path().join("node-a.tar.zst"),
        dir.path().join("cluster.tar.zst"),
        dir.path().join("cluster2.tar.zst"),
        dir.path().join("cluster-norun.tar.zst"),
    );
    node_bundle(&a, "node-a", "r1");
    cluster_bundle(&c, Some("r2"));
    // A second cluster pass of the same run (not a copy of the first: that is refused as
    // the same bundle given twice, see tests/cluster.rs, the_same_bundle_twice_is_refused).
    cluster_bundle_with_events(&c2, Some("r2"), "{\"reason\":\"Pulled\"}\n");
    cluster_bundle(&c0, None);
    let e = join_runs(vec![("node-a".into(), open(&a)), ("c".into(), open(&c))]).unwrap_err();
    assert_eq!(e, JoinError::Unmatched("c".into(), "r2".into()));
    assert!(e.to_string().contains("--run-id r2"), "{e}");
    let e = join_runs(vec![("c".into(), open(&c))]).unwrap_err();
    assert_eq!(e, JoinError::OnlyCluster("c".into()));
    let e = join_runs(vec![
        ("node-a".into(), open(&a)),
        ("c".into(), open(&c)),
        ("c2".into(), open(&c2)),
    ])
    .unwrap_err();
    assert_eq!(
        e,
        JoinError::Duplicate("c".into(), "c2".into(), "r2".into())
    );
    let e = join_runs(vec![("node-a".into(), open(&a)), ("c0".into(), open(&c0))]).unwrap_err();
    assert_eq!(e, JoinError::NoRunId("c0".into()));
}

#[test]
fn cli_analyze_joins_node_and_cluster_bundles() {
    let dir = tempfile::tempdir().unwrap();
    let (a, c) = (
        dir.path().join("node-a.tar.zst"),
        dir.path().join("cluster.tar.zst"),
    );
    node_bundle(&a, "node-a", "r1");
    cluster_bundle(&c, Some("r1"));
    #[allow(clippy::disallowed_methods)] // runs the binary under test
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_netsnap-analyze"))
        .args(["analyze", "--format", "json"])
        .arg(&a)
        .arg(&c)
        .output()
        .unwrap();
    // 1: the duplicate pod IP from the cluster list is a finding.
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rep: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rep["bundles"].as_array().unwrap().len(), 1);
    assert!(
        rep["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["rule_id"] == "duplicate-pod-ip")
    );
    #[allow(clippy::disallowed_methods)]
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_netsnap-analyze"))
        .arg("analyze")
        .arg(&c)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is a cluster bundle"), "{err}");
}

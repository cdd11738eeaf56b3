//! API load of each collection path, measured against a simulated cluster
//! (`tests/support/simcluster.rs`) that counts every request and byte it serves:
//! `node` scope transfers only the node's own objects whatever the cluster size,
//! a 1,000-collector fan-out stays within [`NODE_SCOPE_REQUESTS`] per node with
//! 429s injected and honoured, and the `cluster` pass lists each resource once.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use netsnap_bundle::k8s::{ApiClientReport, ApiScope, CLUSTER_LISTS, NodeRecord, PodRecord};
use netsnap_bundle::testing::TestNode;
use netsnap_bundle::{
    ArtifactStatus, Bundle, BundleWriter, Manifest, ReaderOptions, TruncationReason, WriterOptions,
    layout,
};
use netsnap_collector::kube::{KubeOptions, KubeOutcome, NODE_SCOPE_REQUESTS, collect_api};
use support::apiserver::{self, ApiServer, Mode, Served, kubeconfig_with_token, query};
use support::simcluster::{Sim, SimSpec};

async fn sim_server(spec: SimSpec) -> (ApiServer, Arc<Sim>) {
    let sim = Arc::new(Sim::new(spec));
    (apiserver::start(Mode::Sim(sim.clone())).await, sim)
}

fn options(kubeconfig: &Path, scope: ApiScope, node: Option<&str>) -> KubeOptions {
    KubeOptions {
        kubeconfig: Some(kubeconfig.to_path_buf()),
        // Generous: a 5,000-pod watch-cache answer is one request, decoded by a debug
        // build on a loaded 2-core CI machine; these tests count requests, not seconds.
        request_timeout: Duration::from_secs(60),
        kubelet_fallback: false,
        scope,
        node_name: node.map(str::to_string),
        run_id: Some("run-1".into()),
        ..KubeOptions::default()
    }
}

/// Runs one collector as client `token`; returns what it saw and its bundle (when `open`).
async fn collect(
    dir: &Path,
    port: u16,
    token: &str,
    tweak: impl FnOnce(&mut KubeOptions),
    scope: ApiScope,
    node: Option<&str>,
    open: bool,
) -> (KubeOutcome, Option<(Bundle, Manifest)>) {
    let kc = dir.join(format!("{token}.kubeconfig"));
    kubeconfig_with_token(&kc, port, token);
    let mut opts = options(&kc, scope, node);
    tweak(&mut opts);
    let path = dir.join(format!("{token}.tar.zst"));
    let writer = BundleWriter::create(&path, WriterOptions::default()).unwrap();
    let out = collect_api(&writer, &opts).await;
    if !open {
        // The fan-out reads the outcomes only; an unfinished bundle leaves nothing behind.
        drop(writer);
        return (out, None);
    }
    let now = chrono::Utc::now();
    let (path, manifest) = writer.finish_as(&TestNode::new("node-1", now)).unwrap();
    let b = Bundle::open(&path, &ReaderOptions::default()).unwrap();
    (out, Some((b, manifest)))
}

fn lines<T: serde::de::DeserializeOwned>(b: &Bundle, path: &str) -> Vec<T> {
    b.read_text(path)
        .unwrap()
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn served_by(server: &ApiServer, token: &str) -> Vec<Served> {
    server
        .served
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.token == token)
        .cloned()
        .collect()
}

fn path_of(target: &str) -> String {
    query(target).0
}

/// Cluster-wide list paths: a node-scope collector must never ask for them.
const CLUSTER_WIDE: &[&str] = &[
    "/api/v1/nodes",
    "/api/v1/services",
    "/apis/discovery.k8s.io/v1/endpointslices",
    "/api/v1/events",
];

fn assert_node_local_only(served: &[Served]) {
    for s in served {
        let (path, q) = query(&s.target);
        assert!(
            !CLUSTER_WIDE.contains(&path.as_str()),
            "cluster-wide list {}",
            s.target
        );
        if path == "/api/v1/pods" {
            assert!(
                q.get("fieldSelector")
                    .is_some_and(|f| f.starts_with("spec.nodeName=")),
                "pod list without the node field selector: {}",
                s.target
            );
        }
    }
}

#[tokio::test]
async fn node_scope_on_a_150000_pod_cluster_transfers_only_its_own_pods() {
    let (server, sim) = sim_server(SimSpec::new(150_000, 5_000)).await;
    let dir = tempfile::tempdir().unwrap();
    let (out, b) = collect(
        dir.path(),
        server.port,
        "node-1234",
        |_| {},
        ApiScope::Node,
        Some("node-1234"),
        true,
    )
    .await;
    let (b, m) = b.unwrap();
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let served = served_by(&server, "node-1234");
    assert!(served.iter().all(|s| s.code == 200), "{served:?}");

    // A constant number of requests, each node-local, each from the watch cache.
    assert_eq!(served.len() as u64, NODE_SCOPE_REQUESTS, "{served:#?}");
    assert_node_local_only(&served);
    let paths: BTreeSet<String> = served.iter().map(|s| path_of(&s.target)).collect();
    let want: BTreeSet<String> = [
        "/version",
        "/api/v1/nodes/node-1234",
        "/api/v1/pods",
        "/api/v1/namespaces/kube-system/services/kube-dns",
        "/apis/discovery.k8s.io/v1/namespaces/kube-system/endpointslices",
        "/api/v1/namespaces/kube-system/configmaps/kube-proxy",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(paths, want);
    for s in served.iter().filter(|s| path_of(&s.target) != "/version") {
        assert_eq!(
            query(&s.target)
                .1
                .get("resourceVersion")
                .map(String::as_str),
            Some("0"),
            "not served from the watch cache: {}",
            s.target
        );
    }
    let pods_req = served
        .iter()
        .find(|s| path_of(&s.target) == "/api/v1/pods")
        .unwrap();
    let q = query(&pods_req.target).1;
    assert_eq!(q["fieldSelector"], "spec.nodeName=node-1234");
    assert_eq!(q["limit"], "500");

    // Bytes: its 30 pods, not the cluster's 150,000.
    let total: u64 = served.iter().map(|s| s.bytes).sum();
    let one_pod = serde_json::to_vec(&sim.pod(0)).unwrap().len() as u64;
    let all_pods = one_pod * 150_000;
    assert!(
        pods_req.bytes < 31 * one_pod && pods_req.bytes > 29 * one_pod,
        "{} bytes for 30 pods of ~{one_pod}",
        pods_req.bytes
    );
    assert!(
        total < 200 << 10,
        "{total} bytes for one node (a full pod list is ~{all_pods})"
    );

    // The report and the manifest say exactly what the server counted.
    let report: ApiClientReport =
        serde_json::from_str(&b.read_text(layout::k8s::API_CLIENT).unwrap().unwrap()).unwrap();
    assert_eq!(report.requests, served.len() as u64);
    assert_eq!(report.bytes, total);
    assert_eq!(report.throttled, 0);
    assert_eq!(report.api_scope, ApiScope::Node);
    assert_eq!(report.run_id.as_deref(), Some("run-1"));
    assert_eq!(report.read_mode, "watch-cache (resourceVersion=0)");
    let rec = m.artifact(layout::k8s::NODE_PODS).unwrap();
    assert_eq!(rec.status, ArtifactStatus::Ok);
    let a = &rec.attributes;
    assert_eq!(a["api_scope"], "node");
    assert_eq!(a["list_scope"], "node");
    assert_eq!(a["run_id"], "run-1");
    assert_eq!(a["resource_version"], "0 (watch cache)");
    assert_eq!(a["requests"], "1");
    assert_eq!(a["bytes"], pods_req.bytes.to_string());

    // What landed: this node's pods and Node; the cluster lists are left to the
    // cluster bundle of the run, and say so.
    let pods: Vec<PodRecord> = lines(&b, layout::k8s::NODE_PODS);
    assert_eq!(pods.len(), 30);
    assert!(
        pods.iter()
            .all(|p| p.node_name.as_deref() == Some("node-1234"))
    );
    assert_eq!(out.local_pods.len(), 30);
    assert!(out.local_pods_listed);
    let node: NodeRecord =
        serde_json::from_str(&b.read_text(layout::k8s::NODE).unwrap().unwrap()).unwrap();
    assert_eq!(node.name, "node-1234");
    assert_eq!(out.node_pod_cidrs, vec!["10.132.210.0/24"]);
    for path in CLUSTER_LISTS {
        let r = m.artifact(path).unwrap();
        assert_eq!(r.status, ArtifactStatus::Skipped, "{path}");
        let e = r.error.as_deref().unwrap();
        assert!(
            e.contains("api-scope node") && e.contains("cluster bundle of run run-1"),
            "{e}"
        );
    }
    // DNS probes still know the cluster DNS addresses.
    assert_eq!(
        out.dns_service_ips,
        vec!["10.96.0.10".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(out.dns_endpoint_ips.len(), 2, "{:?}", out.dns_endpoint_ips);
}

#[tokio::test]
async fn node_scope_pages_a_big_node_one_request_per_page() {
    // 1,100 pods on one node: three pages of 500; only the first carries
    // resourceVersion=0 (the simulator, like the API server, refuses it with a token).
    let (server, _) = sim_server(SimSpec::new(1_100, 1)).await;
    let dir = tempfile::tempdir().unwrap();
    let (out, b) = collect(
        dir.path(),
        server.port,
        "t",
        |_| {},
        ApiScope::Node,
        Some("node-0"),
        true,
    )
    .await;
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let pods: Vec<Served> = served_by(&server, "t")
        .into_iter()
        .filter(|s| path_of(&s.target) == "/api/v1/pods")
        .collect();
    assert_eq!(pods.len(), 3, "{pods:#?}");
    let qs: Vec<BTreeMap<String, String>> = pods.iter().map(|s| query(&s.target).1).collect();
    assert_eq!(qs[0].get("resourceVersion").map(String::as_str), Some("0"));
    assert!(!qs[0].contains_key("continue"));
    assert_eq!(qs[1]["continue"], "sim-500");
    assert_eq!(qs[2]["continue"], "sim-1000");
    assert!(qs[1..].iter().all(|q| !q.contains_key("resourceVersion")));
    let (b, m) = b.unwrap();
    assert_eq!(lines::<PodRecord>(&b, layout::k8s::NODE_PODS).len(), 1_100);
    assert_eq!(
        m.artifact(layout::k8s::NODE_PODS).unwrap().attributes["requests"],
        "3"
    );
    assert_eq!(
        served_by(&server, "t").len() as u64,
        NODE_SCOPE_REQUESTS + 2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_of_1000_collectors_stays_within_the_request_budget_and_honours_429() {
    const NODES: usize = 1_000;
    let mut spec = SimSpec::new(30_000, NODES);
    // Every tenth collector's pod list is throttled once, with Retry-After: 1.
    spec.throttle_tokens = (0..NODES)
        .filter(|k| k % 10 == 0)
        .map(Sim::node_name)
        .collect();
    spec.retry_after_secs = 1;
    let (server, _) = sim_server(spec).await;
    let dir = tempfile::tempdir().unwrap();
    let port = server.port;
    let started = Instant::now();
    let outs: Vec<(usize, KubeOutcome)> = futures::stream::iter(0..NODES)
        .map(|k| {
            let dir = dir.path().to_path_buf();
            async move {
                let name = Sim::node_name(k);
                let (out, _) = collect(
                    &dir,
                    port,
                    &name,
                    |_| {},
                    ApiScope::Node,
                    Some(&name),
                    false,
                )
                .await;
                (k, out)
            }
        })
        .buffer_unordered(100)
        .collect()
        .await;
    let took = started.elapsed();
    assert_eq!(outs.len(), NODES);

    let served = server.served.lock().unwrap().clone();
    assert_node_local_only(&served);
    let mut by_token: BTreeMap<&str, Vec<&Served>> = BTreeMap::new();
    for s in &served {
        by_token.entry(s.token.as_str()).or_default().push(s);
    }
    assert_eq!(by_token.len(), NODES);
    let mut max_bytes = 0;
    for (k, out) in &outs {
        let name = Sim::node_name(*k);
        let mine = &by_token[name.as_str()];
        let throttled = mine.iter().filter(|s| s.code == 429).count() as u64;
        let answered = mine.iter().filter(|s| s.code == 200).count() as u64;
        assert_eq!(answered, NODE_SCOPE_REQUESTS, "{name}: {mine:#?}");
        assert_eq!(throttled, u64::from(k % 10 == 0), "{name}");
        assert!(out.errors.is_empty(), "{name}: {:?}", out.errors);
        assert_eq!(out.counts[layout::k8s::NODE_PODS], 30, "{name}");
        let report = out.api_report.as_ref().unwrap();
        assert_eq!(report.requests, answered + throttled, "{name}");
        assert_eq!(report.throttled, throttled, "{name}");
        let bytes: u64 = mine.iter().map(|s| s.bytes).sum();
        assert_eq!(report.bytes, bytes, "{name}");
        max_bytes = max_bytes.max(bytes);
        if throttled > 0 {
            // The retry waited for Retry-After, as measured by the server.
            let pods: Vec<&&Served> = mine
                .iter()
                .filter(|s| path_of(&s.target) == "/api/v1/pods")
                .collect();
            assert_eq!(pods.len(), 2, "{name}");
            assert_eq!(pods[0].code, 429);
            let gap = pods[1].at.duration_since(pods[0].at);
            assert!(
                gap >= Duration::from_millis(990),
                "{name}: retried after {gap:?}"
            );
            assert!(report.retry_wait_ms >= 1000, "{name}: {report:?}");
        } else {
            assert_eq!(report.retry_wait_ms, 0);
        }
    }
    let total = served.len() as u64;
    assert_eq!(total, NODE_SCOPE_REQUESTS * NODES as u64 + 100);
    eprintln!(
        "fan-out of {NODES} node-scope collectors: {total} requests ({} per node + 100 retries), at most {max_bytes} bytes per node, {:.1}s",
        NODE_SCOPE_REQUESTS,
        took.as_secs_f64()
    );
}

#[tokio::test]
async fn a_429_whose_retry_after_passes_the_deadline_is_recorded_not_waited_for() {
    let mut spec = SimSpec::new(100, 10);
    spec.throttle_tokens = ["node-3".to_string()].into();
    spec.retry_after_secs = 120;
    let (server, _) = sim_server(spec).await;
    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let (out, b) = collect(
        dir.path(),
        server.port,
        "node-3",
        |o| o.request_timeout = Duration::from_secs(3),
        ApiScope::Node,
        Some("node-3"),
        true,
    )
    .await;
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    let (_, m) = b.unwrap();
    let r = m.artifact(layout::k8s::NODE_PODS).unwrap();
    assert_eq!(r.status, ArtifactStatus::Failed);
    let e = r.error.as_deref().unwrap();
    assert!(
        e.starts_with("HTTP 429") && e.contains("would pass the deadline"),
        "{e}"
    );
    // An API answer, not a dead server: the later requests were still sent.
    assert_eq!(
        m.artifact(layout::k8s::KUBE_PROXY_CONFIG).unwrap().status,
        ArtifactStatus::Ok
    );
    assert_eq!(out.api_report.unwrap().throttled, 1);
}

#[tokio::test]
async fn byte_cap_cuts_the_list_and_marks_it_truncated() {
    let (server, sim) = sim_server(SimSpec::new(3_000, 100)).await;
    let one_pod = serde_json::to_vec(&sim.pod(0)).unwrap().len() as u64;
    let dir = tempfile::tempdir().unwrap();
    // Pages of 5 pods; the cap allows about two and a half pages.
    let cap = 12 * one_pod;
    let (out, b) = collect(
        dir.path(),
        server.port,
        "node-7",
        |o| {
            o.page_size = 5;
            o.max_bytes = Some(cap);
        },
        ApiScope::Node,
        Some("node-7"),
        true,
    )
    .await;
    let (b, m) = b.unwrap();
    let r = m.artifact(layout::k8s::NODE_PODS).unwrap();
    assert_eq!(r.status, ArtifactStatus::Partial, "{r:?}");
    assert_eq!(
        r.truncated.as_ref().map(|t| t.reason),
        Some(TruncationReason::EntryCap)
    );
    let e = r.error.as_deref().unwrap();
    assert!(
        e.contains("API byte cap") && e.contains("--api-max-bytes"),
        "{e}"
    );
    let kept = lines::<PodRecord>(&b, layout::k8s::NODE_PODS).len();
    assert!(kept == 5 || kept == 10, "{kept} pods kept");
    // Nothing more is asked once the cap is reached.
    let cm = m.artifact(layout::k8s::KUBE_PROXY_CONFIG).unwrap();
    assert_eq!(cm.status, ArtifactStatus::Failed);
    assert!(cm.error.as_deref().unwrap().starts_with("not attempted"));
    let report = out.api_report.unwrap();
    assert!(report.byte_cap_hit);
    assert!(
        served_by(&server, "node-7")
            .iter()
            .all(|s| !s.target.contains("configmaps"))
    );
    // The count stops at the cap plus at most one HTTP frame.
    assert!(report.bytes <= cap + 64 * 1024, "{}", report.bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_pass_lists_each_cluster_resource_once() {
    // A watch cache that ignores `limit` at resourceVersion=0: one answer per list.
    let mut spec = SimSpec::new(5_000, 500);
    spec.ignore_limit_at_rv0 = true;
    let (server, _) = sim_server(spec).await;
    let dir = tempfile::tempdir().unwrap();
    let (out, b) = collect(
        dir.path(),
        server.port,
        "cluster",
        |_| {},
        ApiScope::Cluster,
        None,
        true,
    )
    .await;
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let served = served_by(&server, "cluster");
    let mut per_path: BTreeMap<String, usize> = BTreeMap::new();
    for s in &served {
        *per_path.entry(path_of(&s.target)).or_default() += 1;
        assert_eq!(
            query(&s.target).1.get("fieldSelector").map(String::as_str),
            (path_of(&s.target) == "/api/v1/events").then_some("involvedObject.kind=Pod")
        );
    }
    let want: BTreeMap<String, usize> = [
        "/version",
        "/api/v1/nodes",
        "/api/v1/pods",
        "/api/v1/services",
        "/apis/discovery.k8s.io/v1/endpointslices",
        "/api/v1/events",
    ]
    .into_iter()
    .map(|p| (p.to_string(), 1))
    .collect();
    assert_eq!(per_path, want, "no node-local request, each list once");
    let (b, m) = b.unwrap();
    // The unpaginated answer is the whole list.
    assert_eq!(lines::<PodRecord>(&b, layout::k8s::PODS).len(), 5_000);
    assert_eq!(lines::<NodeRecord>(&b, layout::k8s::NODES).len(), 500);
    for path in CLUSTER_LISTS {
        let r = m.artifact(path).unwrap();
        assert_eq!(r.status, ArtifactStatus::Ok, "{path}");
        assert_eq!(r.attributes["list_scope"], "cluster");
        assert_eq!(r.attributes["requests"], "1");
        assert_eq!(r.attributes["api_scope"], "cluster");
    }
    assert!(m.artifact(layout::k8s::NODE_PODS).is_none());
    assert!(m.artifact(layout::k8s::KUBE_PROXY_CONFIG).is_none());

    // The same pass against a paginating server: one list per resource, one request per page.
    let (server, _) = sim_server(SimSpec::new(5_000, 500)).await;
    let (out, _) = collect(
        dir.path(),
        server.port,
        "cluster2",
        |_| {},
        ApiScope::Cluster,
        None,
        false,
    )
    .await;
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let pods: Vec<Served> = served_by(&server, "cluster2")
        .into_iter()
        .filter(|s| path_of(&s.target) == "/api/v1/pods")
        .collect();
    assert_eq!(pods.len(), 10);
    let firsts = pods
        .iter()
        .filter(|s| !query(&s.target).1.contains_key("continue"))
        .count();
    assert_eq!(firsts, 1, "the pod list was started once");
    assert_eq!(out.counts[layout::k8s::PODS], 5_000);
}

#[test]
#[allow(clippy::disallowed_methods)] // runs the binary under test
fn binary_cluster_pass_writes_an_api_only_cluster_bundle() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    // 500 pods: the binary's request timeout (20 s) also holds a debug build on a loaded
    // machine; the subject is what a cluster bundle holds, not its size.
    let (server, _) = rt.block_on(sim_server(SimSpec::new(500, 20)));
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kc");
    kubeconfig_with_token(&kc, server.port, "cluster-pass");
    let out_path = dir.path().join("cluster.tar.zst");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_netsnap-collect"))
        .args(["--kubeconfig", kc.to_str().unwrap(), "-q"])
        .args(["--api-scope", "cluster", "--run-id", "r42"])
        .arg("-o")
        .arg(&out_path)
        .env_remove("KUBECONFIG")
        .env("NODE_NAME", "node-3")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b = Bundle::open(&out_path, &ReaderOptions::default()).unwrap();
    let m = b.manifest();
    assert_eq!(m.node.name, None, "a cluster bundle describes no node");
    assert_eq!(
        netsnap_bundle::k8s::api_scope_of(m),
        (Some(ApiScope::Cluster), Some("r42".to_string()))
    );
    let paths: Vec<&str> = m.artifacts.iter().map(|a| a.path.as_str()).collect();
    assert!(
        paths.iter().all(|p| p.starts_with("k8s/")),
        "node-local artifacts in a cluster bundle: {paths:?}"
    );
    for path in CLUSTER_LISTS {
        assert_eq!(
            m.artifact(path).unwrap().status,
            ArtifactStatus::Ok,
            "{path}"
        );
    }
    assert_eq!(lines::<PodRecord>(&b, layout::k8s::PODS).len(), 500);
    drop(server);
}

/// The README's "API load of each collection path" table: requests and bytes one
/// collection costs the API server, per path and cluster size (30 pods per node).
/// `cargo test -p netsnap-collector --test api_load -- --ignored --nocapture api_load_figures`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "prints the README figures; minutes in a debug build"]
async fn api_load_figures() {
    let dir = tempfile::tempdir().unwrap();
    println!("| pods (nodes) | path | requests | bytes |");
    println!("|---|---|---:|---:|");
    // The full and cluster lists of 150,000 pods (~515 MB of JSON) take most of an
    // hour in a debug build: that size measures the node scope only.
    for pods in [1_500usize, 15_000, 150_000] {
        let nodes = pods / 30;
        let lists = pods <= 15_000;
        let mut spec = SimSpec::new(pods, nodes);
        spec.ignore_limit_at_rv0 = false;
        let (server, _) = sim_server(spec).await;
        let cost = |token: &str| {
            let s = served_by(&server, token);
            (s.len(), s.iter().map(|s| s.bytes).sum::<u64>())
        };
        if lists {
            let (out, _) = collect(
                dir.path(),
                server.port,
                "full",
                |o| o.request_timeout = Duration::from_secs(600),
                ApiScope::Full,
                Some("node-1"),
                false,
            )
            .await;
            assert!(out.errors.is_empty(), "{:?}", out.errors);
        }
        let (fr, fb) = cost("full");
        let (out, _) = collect(
            dir.path(),
            server.port,
            "node",
            |_| {},
            ApiScope::Node,
            Some("node-1"),
            false,
        )
        .await;
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        let (nr, nb) = cost("node");
        if lists {
            let (out, _) = collect(
                dir.path(),
                server.port,
                "cluster",
                |o| o.request_timeout = Duration::from_secs(600),
                ApiScope::Cluster,
                None,
                false,
            )
            .await;
            assert!(out.errors.is_empty(), "{:?}", out.errors);
        }
        let (cr, cb) = cost("cluster");
        let n = nodes as u64;
        let label = format!("{pods} ({nodes})");
        if !lists {
            println!("| {label} | node scope, one node | {nr} | {nb} |");
            println!(
                "| {label} | fan-out after: {nodes} x node (+ the cluster pass) | {} | {} |",
                nr as u64 * n,
                nb * n
            );
            continue;
        }
        println!("| {label} | full, one node (before: every node) | {fr} | {fb} |");
        println!("| {label} | node scope, one node | {nr} | {nb} |");
        println!("| {label} | cluster pass, once per run | {cr} | {cb} |");
        println!(
            "| {label} | fan-out before: {nodes} x full | {} | {} |",
            fr as u64 * n,
            fb * n
        );
        println!(
            "| {label} | fan-out after: {nodes} x node + 1 cluster pass | {} | {} |",
            nr as u64 * n + cr as u64,
            nb * n + cb
        );
    }
}

//! The real `kube::Client` over a real loopback socket against a test server
//! speaking the Kubernetes REST paths (see `tests/support/apiserver.rs`).
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use netsnap_bundle::k8s::{EventRecord, PodRecord, RuntimePod, ServiceRecord};
use netsnap_bundle::testing::TestNode;
use netsnap_bundle::{
    ArtifactSource, ArtifactStatus, Bundle, BundleWriter, Manifest, ReaderOptions, WriterOptions,
    layout,
};
use netsnap_collector::Cancel;
use netsnap_collector::kube::runtime::{CommandOutput, CommandRunner, RunFuture};
use netsnap_collector::kube::{
    API_ARTIFACTS, KubeOptions, KubeOutcome, collect_api, collect_runtime,
};
use netsnap_collector::sys::exec::Exec;
use support::apiserver::{self, Mode, closed_port, fixture_dir, kubeconfig};

fn finish(writer: BundleWriter) -> (Bundle, Manifest) {
    let now = chrono::Utc::now();
    let (path, manifest) = writer.finish_as(&TestNode::new("node-1", now)).unwrap();
    let bundle = Bundle::open(&path, &ReaderOptions::default()).unwrap();
    (bundle, manifest)
}

async fn run(dir: &Path, opts: KubeOptions) -> (KubeOutcome, Bundle, Manifest, Duration) {
    let writer = BundleWriter::create(dir.join("b.tar.zst"), WriterOptions::default()).unwrap();
    let t = Instant::now();
    let out = collect_api(&writer, &opts).await;
    let took = t.elapsed();
    let (b, m) = finish(writer);
    (out, b, m, took)
}

fn opts(kubeconfig: &Path) -> KubeOptions {
    KubeOptions {
        kubeconfig: Some(kubeconfig.to_path_buf()),
        context: Some("lab".into()),
        request_timeout: Duration::from_secs(5),
        kubelet_fallback: false,
        ..KubeOptions::default()
    }
}

fn lines<T: serde::de::DeserializeOwned>(b: &Bundle, path: &str) -> Vec<T> {
    b.read_text(path)
        .unwrap()
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn fixture_items(name: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture_dir().join("api").join(name)).unwrap())
            .unwrap();
    v["items"].as_array().unwrap().clone()
}

fn all_fixture_pods() -> Vec<serde_json::Value> {
    (1..=3)
        .flat_map(|i| fixture_items(&format!("pods-page-{i}.json")))
        .collect()
}

#[tokio::test]
async fn streams_every_page_projects_and_drops_secrets() {
    let server = apiserver::start(Mode::Normal).await;
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(dir.path(), server.port, closed_port());
    let mut o = opts(&kc);
    o.node_name = Some("node-a".into());
    let (out, b, m, _) = run(dir.path(), o).await;
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert!(out.api_reachable);

    // Every page was requested, with the limit and the previous page's token.
    let reqs = server.requests.lock().unwrap().clone();
    let pod_reqs: Vec<&String> = reqs
        .iter()
        .filter(|r| r.starts_with("/api/v1/pods"))
        .collect();
    assert_eq!(pod_reqs.len(), 3, "{reqs:?}");
    assert!(
        pod_reqs.iter().all(|r| r.contains("limit=500")),
        "{pod_reqs:?}"
    );
    assert!(!pod_reqs[0].contains("continue="));
    for (i, r) in pod_reqs.iter().enumerate().skip(1) {
        let page: serde_json::Value = serde_json::from_slice(
            &std::fs::read(fixture_dir().join(format!("api/pods-page-{i}.json"))).unwrap(),
        )
        .unwrap();
        let token = page["metadata"]["continue"].as_str().unwrap();
        assert!(
            r.contains(&format!("continue={token}")),
            "{r} lacks {token}"
        );
    }
    assert!(reqs.iter().any(|r| r.starts_with("/api/v1/events?")
        && r.contains("fieldSelector=involvedObject.kind%3DPod")));
    assert!(
        server
            .auth
            .lock()
            .unwrap()
            .iter()
            .all(|a| a == "Bearer netsnap-test-token")
    );

    // Every object of every page is stored, in order.
    let fixture_pods = all_fixture_pods();
    let pods: Vec<PodRecord> = lines(&b, layout::k8s::PODS);
    let names: Vec<String> = pods.iter().map(|p| p.name.clone()).collect();
    let want: Vec<String> = fixture_pods
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, want);
    assert_eq!(out.counts[layout::k8s::PODS], want.len() as u64);

    // The projection keeps what analysis needs…
    let web = pods
        .iter()
        .find(|p| p.name == "web-7d9f8b6c5d-abcde")
        .unwrap();
    assert_eq!(web.pod_ips, vec!["10.244.1.7", "fd00:10:244:1::7"]);
    assert_eq!(web.node_name.as_deref(), Some("node-a"));
    assert_eq!(web.owner.as_ref().unwrap().kind, "ReplicaSet");
    assert_eq!(
        web.annotations.get("kubernetes.io/psp").map(String::as_str),
        Some("restricted")
    );
    assert!(web.ready);
    assert_eq!(web.container_ports[0].container_port, 8080);
    let kp = pods
        .iter()
        .find(|p| p.name.starts_with("kube-proxy"))
        .unwrap();
    assert!(kp.host_network);
    let pending = pods
        .iter()
        .find(|p| p.name.starts_with("batch-job"))
        .unwrap();
    assert!(pending.pod_ips.is_empty());
    assert!(!pending.ready);
    let exporter = pods
        .iter()
        .find(|p| p.name.starts_with("node-exporter"))
        .unwrap();
    assert_eq!(exporter.restarts, 3);
    assert_eq!(
        (exporter.containers_ready, exporter.containers_total),
        (0, 1)
    );

    // …and drops what must never reach a ticket.
    let pods_text = b.read_text(layout::k8s::PODS).unwrap().unwrap();
    for secret in [
        "hunter2",
        "DB_PASSWORD",
        "API_TOKEN",
        "last-applied-configuration",
        "db-credentials",
        "kube-api-access",
        "restartedAt",
        "serviceAccountToken",
    ] {
        assert!(
            fixture_pods.iter().any(|p| p.to_string().contains(secret)),
            "fixture must contain {secret} for this check to mean anything"
        );
        assert!(
            !pods_text.contains(secret),
            "{secret} leaked into pods.jsonl"
        );
    }
    let services: Vec<ServiceRecord> = lines(&b, layout::k8s::SERVICES);
    let web_svc = services.iter().find(|s| s.name == "web").unwrap();
    assert_eq!(web_svc.external_traffic_policy.as_deref(), Some("Local"));
    assert_eq!(web_svc.ports[0].target_port.as_deref(), Some("http"));
    assert_eq!(web_svc.ports[0].node_port, Some(31080));
    assert_eq!(
        web_svc.annotations.keys().collect::<Vec<_>>(),
        vec!["service.kubernetes.io/topology-mode"]
    );
    let dns_svc = services.iter().find(|s| s.name == "kube-dns").unwrap();
    assert!(
        dns_svc.annotations.is_empty(),
        "prometheus annotations are not allow-listed"
    );

    // What correlation and DNS need.
    assert_eq!(out.node_name.as_deref(), Some("node-a"));
    assert_eq!(out.node_name_source.as_deref(), Some("option"));
    assert_eq!(out.node_pod_cidrs, vec!["10.244.1.0/24"]);
    let local: BTreeSet<&str> = out.local_pods.iter().map(|p| p.name.as_str()).collect();
    let want_local: BTreeSet<&str> = fixture_pods
        .iter()
        .filter(|p| p["spec"]["nodeName"] == "node-a")
        .map(|p| p["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(local, want_local);
    assert_eq!(
        out.dns_service_ips,
        vec!["10.96.0.10".parse::<std::net::IpAddr>().unwrap()]
    );
    // The not-ready endpoint 10.244.2.4 is excluded.
    assert_eq!(
        out.dns_endpoint_ips,
        vec![
            "10.244.1.2".parse::<std::net::IpAddr>().unwrap(),
            "10.244.2.3".parse().unwrap()
        ]
    );

    // Events: reasons of interest about this node's pods, newest first.
    let events: Vec<EventRecord> = lines(&b, layout::k8s::EVENTS);
    let reasons: Vec<&str> = events.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(
        reasons,
        vec![
            "FailedCreatePodSandBox",
            "DNSConfigForming",
            "NetworkNotReady"
        ]
    );
    assert!(events.iter().all(|e| !e.involved_object.contains("fghij")));
    assert_eq!(events[0].count, 14);

    let cm: netsnap_bundle::k8s::ConfigMapRecord = serde_json::from_str(
        &b.read_text(layout::k8s::KUBE_PROXY_CONFIG)
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert!(cm.data["config.conf"].contains("mode: \"iptables\""));
    // /version is stored byte for byte.
    assert_eq!(
        b.read_text(layout::k8s::VERSION)
            .unwrap()
            .unwrap()
            .as_bytes(),
        &std::fs::read(fixture_dir().join("api/version.json")).unwrap()[..]
    );
    assert_eq!(
        m.artifact(layout::k8s::VERSION).unwrap().kind,
        netsnap_bundle::ArtifactKind::Raw
    );

    for path in API_ARTIFACTS {
        let r = m.artifact(path).unwrap();
        assert_eq!(r.status, ArtifactStatus::Ok, "{path}: {:?}", r.error);
        assert_eq!(r.source, ArtifactSource::KubernetesApi);
        assert!(r.attributes["config_source"].contains("--kubeconfig"));
    }
}

#[tokio::test]
async fn many_pages_are_all_streamed_and_only_local_pods_kept() {
    // 25 pages x 200 = 5,000 full-size pods (a server may return fewer than `limit`):
    // the continue loop runs to the end, every object lands in the artifact, and only
    // node-a's tenth is held in memory.
    let (pages, per_page) = (25, 200);
    let server = apiserver::start(Mode::Synthetic { pages, per_page }).await;
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(dir.path(), server.port, closed_port());
    let mut o = opts(&kc);
    o.node_name = Some("node-a".into());
    o.request_timeout = Duration::from_secs(60);
    let (out, b, m, _) = run(dir.path(), o).await;
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let reqs = server.requests.lock().unwrap().clone();
    let pod_reqs = reqs
        .iter()
        .filter(|r| r.starts_with("/api/v1/pods"))
        .count();
    assert_eq!(pod_reqs, pages);
    assert_eq!(out.counts[layout::k8s::PODS], (pages * per_page) as u64);
    assert_eq!(out.local_pods.len(), pages * per_page / 10);
    assert!(
        out.local_pods
            .iter()
            .all(|p| p.node_name.as_deref() == Some("node-a"))
    );
    let text = b.read_text(layout::k8s::PODS).unwrap().unwrap();
    assert_eq!(text.lines().count(), pages * per_page);
    assert!(
        text.lines()
            .last()
            .unwrap()
            .contains(&format!("synthetic-{}", pages * per_page - 1))
    );
    assert!(!text.contains("hunter2") && !text.contains("last-applied-configuration"));
    assert_eq!(
        m.artifact(layout::k8s::PODS).unwrap().status,
        ArtifactStatus::Ok
    );
}

#[tokio::test]
async fn a_list_cut_off_mid_page_keeps_what_arrived_and_says_so() {
    // One 2,000-pod page (a watch-cache list ignores `limit`), decoded while it
    // arrives: the connection closes half-way through the body. The pods that came
    // are in the artifact, which is partial with the reason; nothing is invented.
    let per_page = 2000;
    let full = apiserver::start(Mode::Synthetic { pages: 1, per_page }).await;
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(dir.path(), full.port, closed_port());
    // One 2,000-pod request: room for a debug build on a loaded machine (the subject is
    // what a cut body leaves, not speed).
    let slow_ok = |kc: &Path| KubeOptions {
        request_timeout: Duration::from_secs(30),
        ..opts(kc)
    };
    let (out, _, _, _) = run(dir.path(), slow_ok(&kc)).await;
    assert_eq!(out.counts[layout::k8s::PODS], per_page as u64);
    let body_len = full
        .served
        .lock()
        .unwrap()
        .iter()
        .find(|s| s.target.starts_with("/api/v1/pods"))
        .unwrap()
        .bytes as usize;

    let server = apiserver::start(Mode::CutPods {
        per_page,
        keep: body_len / 2,
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(dir.path(), server.port, closed_port());
    let (out, b, m, _) = run(dir.path(), slow_ok(&kc)).await;
    let r = m.artifact(layout::k8s::PODS).unwrap();
    assert_eq!(r.status, ArtifactStatus::Partial, "{r:?}");
    let err = r.error.as_deref().unwrap();
    assert!(err.starts_with("list interrupted after"), "{err}");
    let text = b.read_text(layout::k8s::PODS).unwrap().unwrap();
    let kept = text.lines().count();
    // About half the pods arrived whole; the one cut in two is not kept.
    assert!(
        kept > per_page / 4 && kept < per_page,
        "{kept} of {per_page}"
    );
    for (i, line) in text.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["name"], format!("synthetic-{i}"), "line {i}");
    }
    assert!(
        out.errors.iter().any(|e| e.contains(layout::k8s::PODS)),
        "{:?}",
        out.errors
    );
}

#[tokio::test]
async fn node_name_from_hostname_and_env() {
    let server = apiserver::start(Mode::Normal).await;
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(dir.path(), server.port, closed_port());
    let mut o = opts(&kc);
    o.hostname = Some("node-b.lab.internal".into());
    let (out, _, _, _) = run(dir.path(), o.clone()).await;
    assert_eq!(out.node_name.as_deref(), Some("node-b"));
    assert_eq!(out.node_name_source.as_deref(), Some("hostname"));
    assert_eq!(out.node_pod_cidrs, vec!["10.244.2.0/24"]);
    assert!(
        out.local_pods
            .iter()
            .all(|p| p.node_name.as_deref() == Some("node-b"))
    );
    assert_eq!(out.local_pods.len(), 2);

    let dir2 = tempfile::tempdir().unwrap();
    o.node_name_env = Some("node-a".into());
    let (out, _, _, _) = run(dir2.path(), o).await;
    assert_eq!(out.node_name.as_deref(), Some("node-a"));
    assert_eq!(out.node_name_source.as_deref(), Some("env"));
    assert_eq!(out.node_pod_cidrs, vec!["10.244.1.0/24"]);
}

#[tokio::test]
async fn forbidden_pods_records_the_api_message_and_continues() {
    let server = apiserver::start(Mode::Forbid(vec!["/api/v1/pods".into()])).await;
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(dir.path(), server.port, closed_port());
    let (out, _, m, _) = run(dir.path(), opts(&kc)).await;
    let r = m.artifact(layout::k8s::PODS).unwrap();
    assert_eq!(r.status, ArtifactStatus::Failed);
    let err = r.error.as_deref().unwrap();
    assert!(err.starts_with("HTTP 403 Forbidden: "), "{err}");
    assert!(
        err.ends_with(
            "pods is forbidden: User \"system:serviceaccount:default:x\" cannot list resource \"pods\" in API group \"\" at the cluster scope"
        ),
        "{err}"
    );
    // RBAC on one resource does not stop the others.
    for path in [
        layout::k8s::NODES,
        layout::k8s::SERVICES,
        layout::k8s::ENDPOINT_SLICES,
    ] {
        assert_eq!(
            m.artifact(path).unwrap().status,
            ArtifactStatus::Ok,
            "{path}"
        );
    }
    assert!(out.local_pods.is_empty());
    assert!(!out.counts.contains_key(layout::k8s::PODS));
    assert_eq!(out.counts[layout::k8s::SERVICES], 3);
    assert_eq!(out.dns_service_ips.len(), 1);
    assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
}

#[tokio::test]
async fn unauthorized_is_recorded_on_every_artifact() {
    let server = apiserver::start(Mode::Unauthorized).await;
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(dir.path(), server.port, closed_port());
    let (out, _, m, _) = run(dir.path(), opts(&kc)).await;
    assert!(!out.api_reachable);
    for path in API_ARTIFACTS {
        let r = m.artifact(path).unwrap();
        assert_eq!(r.status, ArtifactStatus::Failed);
        assert_eq!(
            r.error.as_deref(),
            Some("HTTP 401 Unauthorized: Unauthorized"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn silent_server_times_out_once_and_the_run_completes() {
    let server = apiserver::start(Mode::Silent).await;
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(dir.path(), server.port, closed_port());
    let mut o = opts(&kc);
    o.request_timeout = Duration::from_millis(800);
    let (out, _, m, took) = run(dir.path(), o).await;
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(!out.api_reachable);
    let v = m.artifact(layout::k8s::VERSION).unwrap();
    assert_eq!(v.status, ArtifactStatus::Failed);
    let err = v.error.as_deref().unwrap();
    assert!(err.contains("timed out after 0.8s"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{}", server.port)), "{err}");
    for path in &API_ARTIFACTS[1..] {
        let r = m.artifact(path).unwrap();
        assert_eq!(r.status, ArtifactStatus::Failed);
        assert!(
            r.error
                .as_deref()
                .unwrap()
                .starts_with("not attempted: timed out"),
            "{path}"
        );
    }
    // The server saw exactly one request: the others were not sent.
    assert_eq!(server.requests.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn closed_port_records_connection_refused() {
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port();
    let kc = kubeconfig(dir.path(), port, port);
    let (out, _, m, took) = run(dir.path(), opts(&kc)).await;
    assert!(took < Duration::from_secs(5));
    assert!(!out.api_reachable);
    let err = m
        .artifact(layout::k8s::VERSION)
        .unwrap()
        .error
        .clone()
        .unwrap();
    assert!(err.to_lowercase().contains("connection refused"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
}

#[tokio::test]
async fn context_selects_the_cluster() {
    // The kubeconfig's current-context points at a closed port; without --context it fails.
    let server = apiserver::start(Mode::Normal).await;
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(dir.path(), server.port, closed_port());
    let mut o = opts(&kc);
    o.context = None;
    let (out, _, _, _) = run(dir.path(), o).await;
    assert!(!out.api_reachable);
    assert!(server.requests.lock().unwrap().is_empty());
}

#[tokio::test]
async fn no_api_skips_everything_and_bad_kubeconfig_fails() {
    let dir = tempfile::tempdir().unwrap();
    let o = KubeOptions {
        no_api: true,
        node_name: Some("node-a".into()),
        ..KubeOptions::default()
    };
    let (out, _, m, _) = run(dir.path(), o).await;
    assert_eq!(out.node_name.as_deref(), Some("node-a"));
    for path in API_ARTIFACTS {
        let r = m.artifact(path).unwrap();
        assert_eq!(r.status, ArtifactStatus::Skipped);
        assert_eq!(r.error.as_deref(), Some("--no-api given"));
    }

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("nope.yaml");
    std::fs::write(&bad, "this: [is not a kubeconfig").unwrap();
    let (_, _, m, _) = run(dir.path(), opts(&bad)).await;
    let err = m
        .artifact(layout::k8s::PODS)
        .unwrap()
        .error
        .clone()
        .unwrap();
    assert!(
        err.starts_with(&format!("cannot read kubeconfig {}", bad.display())),
        "{err}"
    );
}

/// Serves runtime CLI output from the fixtures (the runtime binaries are not installed here).
struct FixtureRunner;

impl CommandRunner for FixtureRunner {
    fn run<'a>(&'a self, argv: &'a [String]) -> RunFuture<'a> {
        Box::pin(async move {
            let dir = fixture_dir().join("runtime");
            let file = match (argv[0].as_str(), argv.get(1).map(String::as_str)) {
                ("crictl", Some("pods")) => "crictl-pods.json",
                ("crictl", Some("inspectp")) if argv.last().unwrap().starts_with("9f8e") => {
                    "crictl-inspectp.json"
                }
                ("crictl", Some("inspectp")) => {
                    return Ok(CommandOutput {
                        status: Some(1),
                        stderr: b"getting the pod sandbox status failed: not found".to_vec(),
                        ..CommandOutput::default()
                    });
                }
                _ => return Err(std::io::ErrorKind::NotFound.into()),
            };
            Ok(CommandOutput {
                status: Some(0),
                stdout: std::fs::read(dir.join(file))?,
                ..CommandOutput::default()
            })
        })
    }
}

/// The collector's real executor, asked for programs that do not exist.
struct MissingRunner(Exec);

impl CommandRunner for MissingRunner {
    fn run<'a>(&'a self, argv: &'a [String]) -> RunFuture<'a> {
        Box::pin(async move {
            let mut a = argv.to_vec();
            a[0] = format!("/nonexistent/{}", a[0]);
            let owned = a;
            self.0.run(&owned).await
        })
    }
}

#[tokio::test]
async fn runtime_fallback_crictl_and_missing() {
    let dir = tempfile::tempdir().unwrap();
    let writer =
        BundleWriter::create(dir.path().join("b.tar.zst"), WriterOptions::default()).unwrap();
    let pods = collect_runtime(&writer, &FixtureRunner).await;
    let (b, m) = finish(writer);
    assert_eq!(pods.len(), 2);
    assert_eq!(pods[0].ip.as_deref(), Some("10.244.1.2"));
    assert_eq!(pods[0].pid, Some(2417));
    assert_eq!(
        pods[0].uid.as_deref(),
        Some("b2c4e1f0-1d9a-4f53-9a5e-1c7d2a8e4f01")
    );
    assert_eq!(pods[1].state.as_deref(), Some("SANDBOX_NOTREADY"));
    assert_eq!(pods[1].pid, None);
    let stored: Vec<RuntimePod> = lines(&b, layout::k8s::RUNTIME_PODS);
    assert_eq!(stored, pods);
    let r = m.artifact(layout::k8s::RUNTIME_PODS).unwrap();
    assert_eq!(r.source, ArtifactSource::Runtime);
    assert_eq!(r.attributes["runtime"], "crictl");
    // One inspect failed: partial, and the reason says which.
    assert_eq!(r.status, ArtifactStatus::Partial);
    assert!(r.error.as_deref().unwrap().contains("1a2b3c4d"));

    let dir = tempfile::tempdir().unwrap();
    let writer =
        BundleWriter::create(dir.path().join("b.tar.zst"), WriterOptions::default()).unwrap();
    let exec = Exec::new(None, Duration::from_secs(2), Cancel::new());
    assert!(
        collect_runtime(&writer, &MissingRunner(exec))
            .await
            .is_empty()
    );
    let (_, m) = finish(writer);
    let r = m.artifact(layout::k8s::RUNTIME_PODS).unwrap();
    assert_eq!(r.status, ArtifactStatus::Unavailable);
    assert_eq!(
        r.error.as_deref(),
        Some("neither crictl nor docker is installed")
    );
}

#[tokio::test]
async fn exec_runner_reports_status_and_timeouts() {
    let exec = Exec::new(None, Duration::from_millis(300), Cancel::new());
    let out = exec
        .run(&[
            "sh".into(),
            "-c".into(),
            "echo hi; echo err >&2; exit 3".into(),
        ])
        .await
        .unwrap();
    assert_eq!(out.status, Some(3));
    assert_eq!(out.stdout, b"hi\n");
    assert_eq!(out.stderr, b"err\n");
    assert!(!out.success());
    let t = Instant::now();
    let out = exec.run(&["sleep".into(), "5".into()]).await.unwrap();
    assert!(
        out.failure.as_deref().unwrap().contains("timed out"),
        "{out:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(3));
}

#[test]
fn docker_inspect_parses_sandboxes() {
    let raw = std::fs::read(fixture_dir().join("runtime/docker-inspect.json")).unwrap();
    let pods = netsnap_collector::kube::runtime::parse_docker_inspect(&raw).unwrap();
    assert_eq!(pods.len(), 1);
    assert_eq!(pods[0].name, "web-7d9f8b6c5d-abcde");
    assert_eq!(pods[0].pid, Some(3121));
    assert_eq!(pods[0].ip, None, "CNI pods have no docker IPAddress");
    assert!(netsnap_collector::kube::runtime::parse_docker_inspect(b"{").is_err());
}

/// The real binary with the API down: the node-local capture is all there, and
/// every k8s artifact says why it is not.
#[test]
#[allow(clippy::disallowed_methods)] // runs the binary under test
fn binary_with_api_down_keeps_the_node_local_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port();
    let kc = kubeconfig(dir.path(), port, port);
    let out_path = dir.path().join("b.tar.zst");
    let t = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_netsnap-collect"))
        .args([
            "--kubeconfig",
            kc.to_str().unwrap(),
            "--node-name",
            "node-a",
            "-q",
        ])
        .args(["--sample-interval", "0.2", "--dns-timeout", "0.5"])
        .arg("-o")
        .arg(&out_path)
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(t.elapsed() < Duration::from_secs(30));
    let b = Bundle::open(&out_path, &ReaderOptions::default()).unwrap();
    let m = b.manifest();
    assert_eq!(m.node.name.as_deref(), Some("node-a"));
    for path in [
        layout::NETNS_INDEX,
        layout::correlation::VETH_PAIRS,
        layout::node::UNAME,
    ] {
        assert_eq!(
            m.artifact(path).unwrap().status,
            ArtifactStatus::Ok,
            "{path}"
        );
    }
    let host_netlink = layout::netns_path(layout::HOST_NETNS, layout::netns::NETLINK);
    assert_eq!(
        m.artifact(&host_netlink).unwrap().status,
        ArtifactStatus::Ok
    );
    for path in API_ARTIFACTS {
        let r = m.artifact(path).unwrap();
        assert_eq!(r.status, ArtifactStatus::Failed, "{path}");
        let e = r.error.as_deref().unwrap();
        assert!(
            e.contains(&format!("127.0.0.1:{port}")) && e.contains("Connection refused"),
            "{e}"
        );
    }
    // Correlation still runs (from the runtime, here: nothing), DNS says why it did not.
    assert!(
        m.artifact(layout::correlation::PODS)
            .unwrap()
            .status
            .has_content()
    );
    let dns = m.artifact(layout::dns::PROBES).unwrap();
    assert_eq!(dns.status, ArtifactStatus::Unavailable);
    assert!(m.artifact(layout::k8s::RUNTIME_PODS).is_some());
}

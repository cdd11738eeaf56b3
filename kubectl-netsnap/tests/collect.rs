//! `kubectl netsnap collect` against an in-process API server speaking the
//! real REST, watch and exec (WebSocket, v5.channel.k8s.io) protocols.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use kube::api::Api;
use kubectl_netsnap::cli::{self, Cli};
use kubectl_netsnap::node::{self, Cleanup, NodeError, Session, partial_path};
use kubectl_netsnap::pod::ApiMode;
use netsnap_bundle::{Bundle, ReaderOptions};
use serde_json::Value;
use support::apiserver::{Behaviour, FakeApiServer, FakeNode};
use support::bundles::make_bundle;
use tokio_util::sync::CancellationToken;

fn fake_node(name: &str, behaviour: Behaviour) -> FakeNode {
    FakeNode {
        name: name.to_string(),
        labels: BTreeMap::from([("kubernetes.io/hostname".to_string(), name.to_string())]),
        behaviour,
        bundle: make_bundle(name, behaviour == Behaviour::Partial),
    }
}

async fn run_cli(args: &[&str], cancel: CancellationToken) -> (u8, String) {
    let cli = Cli::try_parse_from(std::iter::once("kubectl-netsnap").chain(args.iter().copied()))
        .expect("valid command line");
    let mut out = Vec::new();
    let code = cli::run(cli, cancel, &mut out).await;
    (code, String::from_utf8(out).expect("utf-8 output"))
}

async fn session(server: &FakeApiServer, dir: &Path, pod_timeout: Duration) -> Arc<Session> {
    let kubeconfig = server.write_kubeconfig(dir);
    let conn = kubectl_netsnap::client::connect(&kubectl_netsnap::client::ConnectOptions {
        kubeconfig: Some(kubeconfig),
        ..Default::default()
    })
    .await
    .expect("client");
    Arc::new(Session {
        pods: Api::namespaced(conn.client, "netsnap-test"),
        namespace: "netsnap-test".into(),
        image: "netsnap-collect:test".into(),
        service_account: None,
        run_id: "t1".into(),
        schedule_timeout: pod_timeout,
        collect_timeout: Duration::from_secs(20),
    })
}

/// Every pod the server saw created was deleted, and none is left.
fn assert_all_pods_deleted(server: &FakeApiServer) {
    let mut created = server.created();
    let mut deleted = server.deleted();
    created.sort();
    deleted.sort();
    assert!(!created.is_empty(), "no pod was created");
    assert_eq!(
        created, deleted,
        "every created pod is deleted exactly once"
    );
    assert!(
        server.live_pods().is_empty(),
        "pods left: {:?}",
        server.live_pods()
    );
}

fn dir_entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_streams_a_verified_bundle_with_a_safe_pod_and_deletes_it() {
    let node = fake_node("node-a", Behaviour::Healthy);
    let served = node.bundle.clone();
    let server = FakeApiServer::start(vec![node], vec![]).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let kubeconfig = server.write_kubeconfig(tmp.path());
    let out = tmp.path().join("a.tar.zst");
    let (code, stdout) = run_cli(
        &[
            "--kubeconfig",
            kubeconfig.to_str().expect("utf-8"),
            "collect",
            "node/node-a",
            "-o",
            out.to_str().expect("utf-8"),
        ],
        CancellationToken::new(),
    )
    .await;
    assert_eq!(code, cli::EXIT_OK);
    assert_eq!(stdout.trim(), out.display().to_string());
    // The file is byte for byte what the collector streamed, and a valid bundle.
    assert_eq!(std::fs::read(&out).expect("bundle"), served);
    let bundle = Bundle::open(&out, &ReaderOptions::default()).expect("verified bundle");
    assert_eq!(bundle.manifest().node.name.as_deref(), Some("node-a"));
    assert_eq!(dir_entries(tmp.path()), ["a.tar.zst", "kubeconfig"]);

    // The pod: pinned, privileged, host namespaces, host root read-only, all taints, no token.
    let specs = server.created_specs();
    assert_eq!(specs.len(), 1);
    let pod = &specs[0];
    assert_eq!(
        pod["metadata"]["namespace"], "ctx-ns",
        "the context's namespace"
    );
    let spec = &pod["spec"];
    assert_eq!(spec["nodeName"], "node-a");
    assert_eq!(spec["hostPID"], true);
    assert_eq!(spec["hostNetwork"], true);
    assert_eq!(spec["restartPolicy"], "Never");
    assert_eq!(spec["automountServiceAccountToken"], false);
    assert!(spec.get("serviceAccountName").is_none());
    assert_eq!(
        spec["tolerations"],
        serde_json::json!([{"operator": "Exists"}])
    );
    assert!(
        spec["activeDeadlineSeconds"]
            .as_i64()
            .is_some_and(|s| s > 0)
    );
    let container = &spec["containers"][0];
    assert_eq!(container["name"], "collect");
    assert_eq!(container["securityContext"]["privileged"], true);
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    let mounts = container["volumeMounts"].as_array().expect("mounts");
    assert_eq!(mounts.len(), 1, "the host root is the only mount");
    assert_eq!(mounts[0]["mountPath"], "/host");
    assert_eq!(mounts[0]["readOnly"], true);
    let volumes = spec["volumes"].as_array().expect("volumes");
    assert_eq!(volumes.len(), 1);
    assert_eq!(volumes[0]["hostPath"]["path"], "/");
    assert_eq!(
        volumes[0]["hostPath"]["type"], "Directory",
        "never a type that creates files on the node"
    );

    // The exec: the collector streaming to stdout, over v5.
    let execs = server.execs();
    assert_eq!(execs.len(), 1);
    assert_eq!(
        execs[0].command.join(" "),
        "netsnap-collect --host-root /host --node-name node-a --no-api -o -"
    );
    assert_eq!(execs[0].container.as_deref(), Some("collect"));
    assert_eq!(execs[0].protocol, "v5.channel.k8s.io");
    assert!(execs[0].offered.contains("v4.channel.k8s.io"));
    assert_eq!(execs[0].stdout_bytes, served.len());

    // It waited with a watch, authenticated with the kubeconfig's token.
    let requests = server.requests();
    assert!(requests.iter().any(|r| {
        r.param("watch") == Some("true")
            && r.param("fieldSelector")
                .is_some_and(|f| f.contains("metadata.name=netsnap-"))
    }));
    assert!(
        requests
            .iter()
            .all(|r| r.authorization.as_deref() == Some("Bearer test-token"))
    );
    assert_all_pods_deleted(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_never_runs_the_pod_times_out_and_the_pod_is_deleted() {
    let server =
        FakeApiServer::start(vec![fake_node("down", Behaviour::NeverScheduled)], vec![]).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let s = session(&server, tmp.path(), Duration::from_millis(800)).await;
    let dest = tmp.path().join("down.tar.zst");
    let run = node::collect_node(
        s,
        "down".into(),
        ApiMode::None,
        dest.clone(),
        None,
        CancellationToken::new(),
    )
    .await;
    match &run.result {
        Err(NodeError::NotRunning { state, .. }) => assert!(state.contains("Pending"), "{state}"),
        other => panic!("expected NotRunning, got {other:?}"),
    }
    assert_eq!(run.cleanup, Cleanup::Deleted);
    assert!(
        server.execs().is_empty(),
        "no exec into a pod that never ran"
    );
    assert!(!dest.exists() && !partial_path(&dest).exists());
    assert_all_pods_deleted(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_that_fails_or_cannot_pull_is_reported_and_deleted() {
    let server = FakeApiServer::start(
        vec![
            fake_node("fails", Behaviour::PodFails),
            fake_node("nopull", Behaviour::ImagePullFails),
        ],
        vec![],
    )
    .await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let s = session(&server, tmp.path(), Duration::from_secs(10)).await;
    let failed = node::collect_node(
        s.clone(),
        "fails".into(),
        ApiMode::None,
        tmp.path().join("f.tar.zst"),
        None,
        CancellationToken::new(),
    )
    .await;
    match &failed.result {
        Err(NodeError::PodFailed { reason, .. }) => {
            assert!(
                reason.contains("StartError") && reason.contains("exit 128"),
                "{reason}"
            )
        }
        other => panic!("expected PodFailed, got {other:?}"),
    }
    // ErrImagePull is final for this run: no waiting for the whole timeout.
    let started = std::time::Instant::now();
    let nopull = node::collect_node(
        s,
        "nopull".into(),
        ApiMode::None,
        tmp.path().join("n.tar.zst"),
        None,
        CancellationToken::new(),
    )
    .await;
    match &nopull.result {
        Err(NodeError::PodFailed { reason, .. }) => {
            assert!(reason.starts_with("ErrImagePull"), "{reason}")
        }
        other => panic!("expected PodFailed, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(failed.cleanup, Cleanup::Deleted);
    assert_eq!(nopull.cleanup, Cleanup::Deleted);
    assert_eq!(dir_entries(tmp.path()), ["kubeconfig"]);
    assert_all_pods_deleted(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_in_the_middle_is_refused_and_not_kept() {
    let node = fake_node("cut", Behaviour::StreamCut);
    let full = node.bundle.len();
    let server = FakeApiServer::start(vec![node], vec![]).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let s = session(&server, tmp.path(), Duration::from_secs(10)).await;
    let dest = tmp.path().join("cut.tar.zst");
    let run = node::collect_node(
        s,
        "cut".into(),
        ApiMode::None,
        dest.clone(),
        None,
        CancellationToken::new(),
    )
    .await;
    match &run.result {
        Err(NodeError::StreamCut { bytes, .. }) => {
            assert!(*bytes > 0 && (*bytes as usize) < full, "{bytes} of {full}");
            assert_eq!(*bytes as usize, server.execs()[0].stdout_bytes);
        }
        other => panic!("expected StreamCut, got {other:?}"),
    }
    assert!(!dest.exists(), "a partial stream is not kept as a bundle");
    assert!(!partial_path(&dest).exists(), "nor as a partial file");
    assert_eq!(run.cleanup, Cleanup::Deleted);
    assert_all_pods_deleted(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_bundle_and_a_failing_collector_are_refused() {
    let server = FakeApiServer::start(
        vec![
            fake_node("corrupt", Behaviour::Corrupt),
            fake_node("crash", Behaviour::CollectorFails),
        ],
        vec![],
    )
    .await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let s = session(&server, tmp.path(), Duration::from_secs(10)).await;
    let corrupt = node::collect_node(
        s.clone(),
        "corrupt".into(),
        ApiMode::None,
        tmp.path().join("c.tar.zst"),
        None,
        CancellationToken::new(),
    )
    .await;
    match &corrupt.result {
        // The exec ended with Success: only the bundle check catches the damage.
        Err(NodeError::NotABundle { reason, .. }) => {
            assert!(
                reason.contains("corrupt") || reason.contains("sha256"),
                "{reason}"
            )
        }
        other => panic!("expected NotABundle, got {other:?}"),
    }
    let crash = node::collect_node(
        s,
        "crash".into(),
        ApiMode::None,
        tmp.path().join("x.tar.zst"),
        None,
        CancellationToken::new(),
    )
    .await;
    match &crash.result {
        Err(NodeError::CollectorFailed { exit_code, message }) => {
            assert_eq!(*exit_code, Some(2));
            assert!(message.contains("cannot read /host/proc"), "{message}");
        }
        other => panic!("expected CollectorFailed, got {other:?}"),
    }
    assert_eq!(dir_entries(tmp.path()), ["kubeconfig"]);
    assert_all_pods_deleted(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_during_exec_or_while_waiting_deletes_the_pod() {
    let server = FakeApiServer::start(
        vec![
            fake_node("hang", Behaviour::Hang),
            fake_node("down", Behaviour::NeverScheduled),
        ],
        vec![],
    )
    .await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let kubeconfig = server.write_kubeconfig(tmp.path());
    let kc = kubeconfig.to_str().expect("utf-8").to_string();
    let out = tmp.path().join("hang.tar.zst");

    // During the exec: the collector is streaming when Ctrl-C comes.
    let cancel = CancellationToken::new();
    let args: Vec<String> = [
        "--kubeconfig",
        &kc,
        "collect",
        "node/hang",
        "-o",
        out.to_str().expect("utf-8"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let run = tokio::spawn({
        let cancel = cancel.clone();
        async move {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            run_cli(&refs, cancel).await
        }
    });
    server.wait_execs(1).await;
    assert_eq!(
        server.deleted(),
        Vec::<String>::new(),
        "nothing deleted before Ctrl-C"
    );
    cancel.cancel();
    let (code, stdout) = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("returns promptly after Ctrl-C")
        .expect("task");
    assert_eq!(code, cli::EXIT_INTERRUPTED);
    assert_eq!(stdout, "");
    assert!(!out.exists() && !partial_path(&out).exists());
    assert_eq!(server.deleted(), server.created());

    // While waiting for a pod that never runs (long timeout).
    let cancel = CancellationToken::new();
    let s = session(&server, tmp.path(), Duration::from_secs(600)).await;
    let waiting = tokio::spawn(node::collect_node(
        s,
        "down".into(),
        ApiMode::None,
        tmp.path().join("down.tar.zst"),
        None,
        cancel.clone(),
    ));
    server.wait_created(2).await;
    cancel.cancel();
    let run = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("returns promptly")
        .expect("task");
    assert!(matches!(run.result, Err(NodeError::Interrupted)));
    assert_eq!(run.cleanup, Cleanup::Deleted);
    assert_all_pods_deleted(&server);
}

/// 24 nodes, injected failures of every kind, 5 at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_nodes_with_injected_failures_show_the_right_table() {
    let mut nodes = Vec::new();
    let injected = [
        ("node-03", Behaviour::NeverScheduled),
        ("node-07", Behaviour::PodFails),
        ("node-08", Behaviour::Partial),
        ("node-11", Behaviour::StreamCut),
        ("node-12", Behaviour::ImagePullFails),
        ("node-15", Behaviour::CollectorFails),
        ("node-17", Behaviour::Corrupt),
        ("node-19", Behaviour::NeverScheduled),
        ("node-22", Behaviour::Partial),
    ];
    for i in 1..=24 {
        let name = format!("node-{i:02}");
        let behaviour = injected
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(Behaviour::Healthy, |(_, b)| *b);
        nodes.push(fake_node(&name, behaviour));
    }
    let server = FakeApiServer::start(nodes, vec![]).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let kubeconfig = server.write_kubeconfig(tmp.path());
    let out = tmp.path().join("run");
    let (code, table) = run_cli(
        &[
            "collect",
            "--all-nodes",
            "--kubeconfig",
            kubeconfig.to_str().expect("utf-8"),
            "-n",
            "netsnap-test",
            "--parallel",
            "5",
            "--pod-timeout",
            "3",
            "--run-id",
            "t24",
            "-o",
            out.to_str().expect("utf-8"),
        ],
        CancellationToken::new(),
    )
    .await;
    assert_eq!(code, cli::EXIT_FAILED, "some nodes failed");
    insta::with_settings!({filters => vec![(r"\d+(\.\d)? (B|KiB|MiB)", "[size]"), (r"\d+ bytes", "[n] bytes")]}, {
        insta::assert_snapshot!("all_nodes_table", table);
    });

    // Rows: one per node, with the status the injected behaviour implies.
    let rows: BTreeMap<String, String> = table
        .lines()
        .skip(1)
        .filter(|l| l.starts_with("node-"))
        .map(|l| {
            let mut cols = l.split_whitespace();
            (
                cols.next().unwrap_or_default().to_string(),
                cols.next().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(rows.len(), 24);
    for (name, status) in &rows {
        let expected = match injected.iter().find(|(n, _)| n == name).map(|(_, b)| *b) {
            None => "ok",
            Some(Behaviour::Partial) => "partial",
            Some(_) => "failed",
        };
        assert_eq!(status, expected, "{name}");
    }
    assert!(table.contains("\n15 ok, 2 partial, 7 failed\n"));

    // Exactly the ok and partial nodes have a bundle, each verified and of the right node.
    let mut expected_files: Vec<String> = rows
        .iter()
        .filter(|(_, s)| *s != "failed")
        .map(|(n, _)| format!("{n}.tar.zst"))
        .collect();
    expected_files.sort();
    assert_eq!(
        dir_entries(&out),
        expected_files,
        "no partial or refused file is left"
    );
    for file in &expected_files {
        let b = Bundle::open(out.join(file), &ReaderOptions::default()).expect("verified");
        assert_eq!(
            b.manifest().node.name.as_deref(),
            file.strip_suffix(".tar.zst")
        );
    }

    // The node list was paginated (the server returns at most 10 per page).
    let lists: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/v1/nodes")
        .collect();
    assert_eq!(lists.len(), 3);
    assert_eq!(lists[1].param("continue"), Some("offset-10"));
    // The parallelism bound held, every node got a pod, and every pod was deleted.
    assert!(
        server.max_live_pods() <= 5,
        "{} pods at once",
        server.max_live_pods()
    );
    assert_eq!(server.created().len(), 24);
    assert_all_pods_deleted(&server);
    for spec in server.created_specs() {
        assert_eq!(spec["metadata"]["namespace"], "netsnap-test");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_mode_runs_node_scope_everywhere_and_one_cluster_scope_exec() {
    let cluster = make_bundle("cluster", false);
    let server = FakeApiServer::start(
        vec![
            fake_node("n1", Behaviour::PodFails),
            fake_node("n2", Behaviour::Healthy),
            fake_node("n3", Behaviour::Healthy),
        ],
        cluster.clone(),
    )
    .await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let kubeconfig = server.write_kubeconfig(tmp.path());
    let out = tmp.path().join("run");
    let (code, table) = run_cli(
        &[
            "--kubeconfig",
            kubeconfig.to_str().expect("utf-8"),
            "collect",
            "--all-nodes",
            "--api",
            "--run-id",
            "r42",
            "-o",
            out.to_str().expect("utf-8"),
        ],
        CancellationToken::new(),
    )
    .await;
    assert_eq!(code, cli::EXIT_FAILED, "n1 failed");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("cluster ") && l.contains(" ok ")),
        "{table}"
    );
    assert_eq!(
        dir_entries(&out),
        ["cluster.tar.zst", "n2.tar.zst", "n3.tar.zst"]
    );
    assert_eq!(
        std::fs::read(out.join("cluster.tar.zst")).expect("cluster"),
        cluster
    );

    let execs = server.execs();
    let commands: Vec<String> = execs.iter().map(|e| e.command.join(" ")).collect();
    let cluster_runs: Vec<&String> = commands
        .iter()
        .filter(|c| c.contains("--api-scope cluster"))
        .collect();
    assert_eq!(
        cluster_runs,
        ["netsnap-collect --api-scope cluster --run-id r42 -o -"]
    );
    for node in ["n2", "n3"] {
        let expected = format!(
            "netsnap-collect --host-root /host --node-name {node} --api-scope node --run-id r42 -o -"
        );
        assert!(commands.contains(&expected), "{commands:?}");
    }
    assert!(commands.iter().all(|c| !c.contains("--no-api")));
    // With --api: the service account of deploy/rbac.yaml, in its namespace, with a token.
    for spec in server.created_specs() {
        assert_eq!(spec["metadata"]["namespace"], "netsnap");
        assert_eq!(spec["spec"]["serviceAccountName"], "netsnap-collect");
        assert_eq!(spec["spec"]["automountServiceAccountToken"], true);
        assert_eq!(spec["metadata"]["labels"]["netsnap.io/run-id"], "r42");
    }
    assert_all_pods_deleted(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_label_selector_picks_the_nodes() {
    let mut nodes: Vec<FakeNode> = (1..=4)
        .map(|i| fake_node(&format!("w{i}"), Behaviour::Healthy))
        .collect();
    for n in nodes.iter_mut().take(2) {
        n.labels.insert("pool".into(), "edge".into());
    }
    let server = FakeApiServer::start(nodes, vec![]).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let kubeconfig = server.write_kubeconfig(tmp.path());
    let out = tmp.path().join("edge");
    let (code, _table) = run_cli(
        &[
            "--kubeconfig",
            kubeconfig.to_str().expect("utf-8"),
            "collect",
            "-l",
            "pool=edge",
            "-o",
            out.to_str().expect("utf-8"),
        ],
        CancellationToken::new(),
    )
    .await;
    assert_eq!(code, cli::EXIT_OK);
    assert_eq!(dir_entries(&out), ["w1.tar.zst", "w2.tar.zst"]);
    let nodes_of_pods: Vec<Value> = server
        .created_specs()
        .iter()
        .map(|s| s["spec"]["nodeName"].clone())
        .collect();
    assert_eq!(nodes_of_pods.len(), 2);
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.param("labelSelector") == Some("pool=edge"))
    );
    assert_all_pods_deleted(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_create_no_pod() {
    let server = FakeApiServer::start(vec![fake_node("a", Behaviour::Healthy)], vec![]).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let kubeconfig = server.write_kubeconfig(tmp.path());
    let kc = kubeconfig.to_str().expect("utf-8");
    let existing = tmp.path().join("exists.tar.zst");
    std::fs::write(&existing, b"keep me").expect("write");
    for args in [
        vec!["--kubeconfig", kc, "collect", "svc/a"],
        vec![
            "--kubeconfig",
            kc,
            "collect",
            "node/a",
            "-o",
            existing.to_str().expect("utf-8"),
        ],
        vec!["--kubeconfig", kc, "collect", "-l", "pool=none"],
        vec![
            "--kubeconfig",
            kc,
            "collect",
            "node/a",
            "--pod-timeout",
            "0",
        ],
    ] {
        let (code, _) = run_cli(&args, CancellationToken::new()).await;
        assert_eq!(code, cli::EXIT_USAGE, "{args:?}");
    }
    assert_eq!(std::fs::read(&existing).expect("read"), b"keep me");
    assert!(server.created().is_empty());
    assert!(
        Cli::try_parse_from(["kubectl-netsnap", "collect"]).is_err(),
        "a node choice is required"
    );
    assert!(Cli::try_parse_from(["kubectl-netsnap", "collect", "node/a", "--all-nodes"]).is_err());
}

/// The real binary: SIGINT (Ctrl-C) while the collector streams deletes the pod and exits 130.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_to_the_binary_deletes_the_pod() {
    let server = FakeApiServer::start(vec![fake_node("hang", Behaviour::Hang)], vec![]).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let kubeconfig = server.write_kubeconfig(tmp.path());
    let out = tmp.path().join("hang.tar.zst");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubectl-netsnap"))
        .args(["collect", "node/hang", "--kubeconfig"])
        .arg(&kubeconfig)
        .arg("-o")
        .arg(&out)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn kubectl-netsnap");
    server.wait_execs(1).await;
    let pid = child.id().expect("pid").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("exits promptly after SIGINT")
        .expect("wait");
    assert_eq!(status.code(), Some(130));
    assert!(!out.exists() && !partial_path(&out).exists());
    assert_all_pods_deleted(&server);
}

fn write_stub_analyzer(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let stub = dir.join("netsnap-analyze-stub");
    let log = dir.join("argv.txt");
    std::fs::write(
        &stub,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do echo \"$a\"; done > {}\nexit 1\n",
            log.display()
        ),
    )
    .expect("stub");
    std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    stub
}

#[test]
fn analyze_passes_every_bundle_of_the_directory_and_the_exit_code() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("run");
    std::fs::create_dir(&dir).expect("mkdir");
    for f in [
        "n2.tar.zst",
        "cluster.tar.zst",
        "n1.tar.zst",
        ".n3.tar.zst.partial",
        "notes.txt",
    ] {
        std::fs::write(dir.join(f), b"x").expect("write");
    }
    let stub = write_stub_analyzer(tmp.path());
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_kubectl-netsnap"))
        .env("NETSNAP_ANALYZE", &stub)
        .arg("analyze")
        .arg(&dir)
        .args(["--format", "markdown"])
        .output()
        .expect("run");
    assert_eq!(
        output.status.code(),
        Some(1),
        "the analyzer's exit code is passed on"
    );
    let argv = std::fs::read_to_string(tmp.path().join("argv.txt")).expect("argv");
    let d = dir.display();
    assert_eq!(
        argv,
        format!(
            "analyze\n--format\nmarkdown\n{d}/cluster.tar.zst\n{d}/n1.tar.zst\n{d}/n2.tar.zst\n"
        )
    );
    // An empty directory is a usage error, not an analyzer run.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_kubectl-netsnap"))
        .env("NETSNAP_ANALYZE", &stub)
        .arg("analyze")
        .arg(&empty)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("holds no .tar.zst bundle"));
}

/// The real `netsnap-analyze` next to the plugin (Cargo's target dir), over bundles the
/// plugin would have received. It is another package's binary: build it first
/// (`cargo build -p netsnap-analyzer`); with NETSNAP_REQUIRE_LAB=1 (CI) it must be there.
#[test]
fn analyze_runs_the_real_analyzer_next_to_the_plugin() {
    let plugin = PathBuf::from(env!("CARGO_BIN_EXE_kubectl-netsnap"));
    let analyzer = plugin.with_file_name("netsnap-analyze");
    let analyzer_src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../analyzer/src");
    let fresh = |bin: &Path| -> bool {
        let Ok(built) = std::fs::metadata(bin).and_then(|m| m.modified()) else {
            return false;
        };
        let mut stack = vec![analyzer_src.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if e
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|m| m > built)
                {
                    return false;
                }
            }
        }
        true
    };
    if !fresh(&analyzer) {
        assert!(
            std::env::var_os("NETSNAP_REQUIRE_LAB").is_none(),
            "{} is missing or older than analyzer/src: cargo build -p netsnap-analyzer",
            analyzer.display()
        );
        eprintln!("skipping: no fresh {}", analyzer.display());
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    for node in ["n1", "n2"] {
        std::fs::write(
            tmp.path().join(format!("{node}.tar.zst")),
            make_bundle(node, node == "n2"),
        )
        .expect("bundle");
    }
    let output = std::process::Command::new(&plugin)
        .env_remove("NETSNAP_ANALYZE")
        .arg("analyze")
        .arg(tmp.path())
        .args(["--format", "json"])
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "{:?}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(&stdout).expect("the analyzer's JSON report");
    let nodes: Vec<&str> = report["bundles"]
        .as_array()
        .expect("bundles")
        .iter()
        .filter_map(|b| b["node"].as_str())
        .collect();
    assert_eq!(nodes, ["n1", "n2"], "both bundles analyzed together");
    // n2's failed artifact reaches the report as a collection error.
    assert!(
        report["collection_errors"]
            .to_string()
            .contains("iptables-save"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_never_finishes_times_out_and_the_pod_is_deleted() {
    let server = FakeApiServer::start(vec![fake_node("hang", Behaviour::Hang)], vec![]).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut s = Arc::unwrap_or_clone(session(&server, tmp.path(), Duration::from_secs(10)).await);
    s.collect_timeout = Duration::from_secs(1);
    let dest = tmp.path().join("hang.tar.zst");
    let run = node::collect_node(
        Arc::new(s),
        "hang".into(),
        ApiMode::None,
        dest.clone(),
        None,
        CancellationToken::new(),
    )
    .await;
    assert!(
        matches!(run.result, Err(NodeError::CollectTimeout { secs: 1 })),
        "{:?}",
        run.result
    );
    assert_eq!(run.cleanup, Cleanup::Deleted);
    assert!(!dest.exists() && !partial_path(&dest).exists());
    assert_all_pods_deleted(&server);
}

/// The krew template, with krew-release-bot's placeholders filled in, is a krew
/// `Plugin` whose platforms install the plugin and the analyzer it execs.
#[test]
fn krew_manifest_template_is_well_formed() {
    let template =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("krew/netsnap.yaml"))
            .expect("krew/netsnap.yaml");
    let sha = "0".repeat(64);
    let filled: String = template
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .map(|line| {
            let indent = &line[..line.len() - line.trim_start().len()];
            match line.trim_start().strip_prefix("{{addURIAndSha \"") {
                Some(rest) => {
                    let uri = rest
                        .split('"')
                        .next()
                        .unwrap_or_default()
                        .replace("{{ .TagName }}", "v0.1.0");
                    format!("{indent}uri: {uri}\n{indent}sha256: \"{sha}\"")
                }
                None => line.replace("{{ .TagName }}", "v0.1.0"),
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(!filled.contains("{{"), "unfilled placeholder");
    let m: Value = serde_yaml_ng::from_str(&filled).expect("YAML");
    assert_eq!(
        m["apiVersion"],
        "krew.googlecontainertools.github.com/v1alpha2"
    );
    assert_eq!(m["kind"], "Plugin");
    assert_eq!(
        m["metadata"]["name"], "netsnap",
        "installs as `kubectl netsnap`"
    );
    assert_eq!(m["spec"]["version"], "v0.1.0");
    assert!(
        m["spec"]["shortDescription"]
            .as_str()
            .is_some_and(|s| s.len() <= 60)
    );
    let platforms = m["spec"]["platforms"].as_array().expect("platforms");
    let arches: Vec<&str> = platforms
        .iter()
        .filter_map(|p| p["selector"]["matchLabels"]["arch"].as_str())
        .collect();
    assert_eq!(arches, ["amd64", "arm64"]);
    for p in platforms {
        assert_eq!(p["bin"], "kubectl-netsnap");
        assert!(
            p["uri"]
                .as_str()
                .is_some_and(|u| u.starts_with("https://") && u.ends_with(".tar.gz"))
        );
        assert_eq!(p["sha256"].as_str().map(str::len), Some(64));
        let files: Vec<&str> = p["files"]
            .as_array()
            .expect("files")
            .iter()
            .filter_map(|f| f["from"].as_str())
            .collect();
        assert_eq!(files, ["kubectl-netsnap", "netsnap-analyze"]);
    }
}

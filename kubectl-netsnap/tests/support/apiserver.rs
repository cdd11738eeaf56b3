//! An in-process Kubernetes API server on 127.0.0.1 for the plugin's tests.
//!
//! It speaks the real protocols the plugin's `kube::Client` uses: the REST
//! paths for pods (create, get, watch as a chunked stream of JSON events from a
//! resource version, delete) and nodes (list with `limit`/`continue`
//! pagination and label selectors), `metav1.Status` errors, and exec as an
//! HTTP/1.1 upgrade to WebSocket with subprotocol `v5.channel.k8s.io`
//! (channel 1 stdout, 2 stderr, 3 the exit `Status`; channel 255 frames from
//! the client are recorded as stream closes). HTTP is hyper's, WebSocket
//! framing tungstenite's.
//!
//! Each fake node has a [`Behaviour`] that drives its pod's status (the kubelet's
//! part) and what the collector does over exec. Every request, created pod,
//! deleted pod and exec is recorded for the tests' assertions.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

/// What a node (its kubelet, and the collector in its pod) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Pod runs; the collector streams a complete bundle and exits 0.
    Healthy,
    /// Pod runs; the collector streams a bundle with failed artifacts (deadline hit).
    Partial,
    /// The kubelet never picks the pod up: it stays Pending without status.
    NeverScheduled,
    /// The image cannot be pulled (ErrImagePull, then ImagePullBackOff).
    ImagePullFails,
    /// The pod fails: its container cannot start.
    PodFails,
    /// The collector exits 2 with an error on stderr and no bundle.
    CollectorFails,
    /// The connection drops in the middle of the bundle, without a close frame.
    StreamCut,
    /// The whole stream arrives with a Success status but one byte is flipped.
    Corrupt,
    /// The collector never finishes (Ctrl-C and timeout tests).
    Hang,
}

/// One HTTP request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Decoded query pairs.
    pub query: Vec<(String, String)>,
    /// Authorization header.
    pub authorization: Option<String>,
    /// JSON body, if any.
    pub body: Option<Value>,
}

impl Recorded {
    /// First value of a query parameter.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// One exec session.
#[derive(Debug, Clone)]
pub struct ExecRecord {
    /// Pod.
    pub pod: String,
    /// Node of the pod.
    pub node: String,
    /// `command` query parameters, in order.
    pub command: Vec<String>,
    /// `container` query parameter.
    pub container: Option<String>,
    /// The subprotocols the client offered.
    pub offered: String,
    /// The subprotocol chosen.
    pub protocol: String,
    /// Bytes sent on stdout.
    pub stdout_bytes: usize,
    /// Channel-255 (v5 close) frames received from the client: the closed channels.
    pub closed_channels: Vec<u8>,
}

struct Inner {
    pods: BTreeMap<String, Value>,
    rv: u64,
    /// (resourceVersion, pod name, event type, object), in order.
    log: Vec<(u64, String, &'static str, Value)>,
    requests: Vec<Recorded>,
    created: Vec<String>,
    deleted: Vec<String>,
    execs: Vec<ExecRecord>,
    live_max: usize,
}

struct State {
    inner: Mutex<Inner>,
    events: broadcast::Sender<(u64, String)>,
    nodes: Vec<Value>,
    behaviours: HashMap<String, Behaviour>,
    bundles: HashMap<String, Vec<u8>>,
    cluster_bundle: Vec<u8>,
    step: Duration,
    page_cap: usize,
}

/// A running fake API server.
pub struct FakeApiServer {
    /// Address on 127.0.0.1.
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One fake node.
#[derive(Debug, Clone)]
pub struct FakeNode {
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Behaviour.
    pub behaviour: Behaviour,
    /// The bundle its collector streams (Healthy, Partial, Corrupt, StreamCut).
    pub bundle: Vec<u8>,
}

impl FakeApiServer {
    /// Starts the server with these nodes; `cluster_bundle` is streamed to `--api-scope cluster`.
    pub async fn start(nodes: Vec<FakeNode>, cluster_bundle: Vec<u8>) -> FakeApiServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        let (events, _) = broadcast::channel(4096);
        let state = Arc::new(State {
            inner: Mutex::new(Inner {
                pods: BTreeMap::new(),
                rv: 1000,
                log: Vec::new(),
                requests: Vec::new(),
                created: Vec::new(),
                deleted: Vec::new(),
                execs: Vec::new(),
                live_max: 0,
            }),
            events,
            nodes: nodes.iter().map(node_object).collect(),
            behaviours: nodes
                .iter()
                .map(|n| (n.name.clone(), n.behaviour))
                .collect(),
            bundles: nodes
                .iter()
                .map(|n| (n.name.clone(), n.bundle.clone()))
                .collect(),
            cluster_bundle,
            step: Duration::from_millis(30),
            page_cap: 10,
        });
        let serving = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    break;
                };
                let state = serving.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(state.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        FakeApiServer { addr, state, task }
    }

    /// Writes a kubeconfig for this server (context namespace `ctx-ns`, bearer token `test-token`).
    pub fn write_kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{}\nusers:\n- name: tester\n  user:\n    token: test-token\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: tester\n    namespace: ctx-ns\ncurrent-context: fake\n",
            self.addr
        );
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }
    /// Names of the pods created, in order.
    pub fn created(&self) -> Vec<String> {
        self.lock().created.clone()
    }
    /// Names of the pods deleted, in order.
    pub fn deleted(&self) -> Vec<String> {
        self.lock().deleted.clone()
    }
    /// Pods still present.
    pub fn live_pods(&self) -> Vec<String> {
        self.lock().pods.keys().cloned().collect()
    }
    /// The most pods that existed at the same time.
    pub fn max_live_pods(&self) -> usize {
        self.lock().live_max
    }
    /// Exec sessions so far.
    pub fn execs(&self) -> Vec<ExecRecord> {
        self.lock().execs.clone()
    }
    /// The JSON bodies of the pod creations.
    pub fn created_specs(&self) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/pods"))
            .filter_map(|r| r.body)
            .collect()
    }
    /// Waits (up to 30 s) until `n` exec sessions have started.
    pub async fn wait_execs(&self, n: usize) {
        self.wait_until(|i| i.execs.len() >= n, "exec sessions")
            .await;
    }
    /// Waits (up to 30 s) until `n` pods have been created.
    pub async fn wait_created(&self, n: usize) {
        self.wait_until(|i| i.created.len() >= n, "pod creations")
            .await;
    }

    async fn wait_until(&self, done: impl Fn(&Inner) -> bool, what: &str) {
        for _ in 0..3000 {
            if done(&self.lock()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.state.inner.lock().expect("server state")
    }
}

fn node_object(n: &FakeNode) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": n.name,
            "uid": format!("uid-{}", n.name),
            "resourceVersion": "10",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": n.labels,
        },
        "spec": {"podCIDR": "10.244.0.0/24"},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    })
}

type Body = BoxBody<Bytes, Infallible>;

fn full(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())).boxed())
        .expect("response")
}

fn status_error(code: StatusCode, reason: &str, message: String) -> Response<Body> {
    full(
        code,
        &json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code.as_u16(),
        }),
    )
}

async fn handle(
    state: Arc<State>,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query: Vec<(String, String)> = req
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let authorization = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let is_upgrade = req.headers().contains_key("sec-websocket-key");
    let body = if is_upgrade {
        None
    } else {
        let bytes = match req.body_mut().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => Bytes::new(),
        };
        serde_json::from_slice::<Value>(&bytes).ok()
    };
    let record = Recorded {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        authorization,
        body: body.clone(),
    };
    state
        .inner
        .lock()
        .expect("state")
        .requests
        .push(record.clone());
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let response = match (method.clone(), segments.as_slice()) {
        (Method::GET, ["api", "v1", "nodes"]) => list_nodes(&state, &record),
        (Method::POST, ["api", "v1", "namespaces", ns, "pods"]) => {
            create_pod(&state, ns, body.unwrap_or(Value::Null))
        }
        (Method::GET, ["api", "v1", "namespaces", _, "pods"])
            if record.param("watch") == Some("true") =>
        {
            watch_pods(&state, &record)
        }
        (Method::GET, ["api", "v1", "namespaces", _, "pods", name]) => {
            match state.inner.lock().expect("state").pods.get(*name) {
                Some(p) => full(StatusCode::OK, p),
                None => status_error(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    format!("pods \"{name}\" not found"),
                ),
            }
        }
        (Method::DELETE, ["api", "v1", "namespaces", _, "pods", name]) => delete_pod(&state, name),
        (Method::GET | Method::POST, ["api", "v1", "namespaces", _, "pods", name, "exec"]) => {
            exec(&state, name, &record, req)
        }
        _ => status_error(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("the server could not find the requested resource ({method} {path})"),
        ),
    };
    Ok(response)
}

/// Equality-only label selectors (`k=v,k2=v2`, `k` for existence), like the API's simple forms.
fn matches_selector(node: &Value, selector: &str) -> bool {
    let labels = &node["metadata"]["labels"];
    selector
        .split(',')
        .filter(|s| !s.is_empty())
        .all(|term| match term.split_once('=') {
            Some((k, v)) => labels[k.trim_end_matches('=')].as_str() == Some(v),
            None => !labels[term].is_null(),
        })
}

fn list_nodes(state: &State, req: &Recorded) -> Response<Body> {
    let selected: Vec<&Value> = state
        .nodes
        .iter()
        .filter(|n| {
            req.param("labelSelector")
                .is_none_or(|s| matches_selector(n, s))
        })
        .collect();
    let limit = req
        .param("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(usize::MAX)
        .min(state.page_cap);
    let start = req
        .param("continue")
        .and_then(|c| c.strip_prefix("offset-"))
        .and_then(|c| c.parse::<usize>().ok())
        .unwrap_or(0);
    let page: Vec<&Value> = selected.iter().skip(start).take(limit).copied().collect();
    let next = start + page.len();
    let mut metadata = json!({"resourceVersion": "500"});
    if next < selected.len() {
        metadata["continue"] = json!(format!("offset-{next}"));
        metadata["remainingItemCount"] = json!(selected.len() - next);
    }
    full(
        StatusCode::OK,
        &json!({"apiVersion": "v1", "kind": "NodeList", "metadata": metadata, "items": page}),
    )
}

/// Stores a new version of a pod and tells the watchers (under one lock, so a
/// watcher subscribing while replaying the log misses nothing).
fn put_pod(state: &State, name: &str, event: &'static str, mut pod: Value) -> Option<Value> {
    let mut inner = state.inner.lock().expect("state");
    if event != "ADDED" && !inner.pods.contains_key(name) {
        return None;
    }
    inner.rv += 1;
    let rv = inner.rv;
    pod["metadata"]["resourceVersion"] = json!(rv.to_string());
    if event == "DELETED" {
        inner.pods.remove(name);
    } else {
        inner.pods.insert(name.to_string(), pod.clone());
    }
    inner.live_max = inner.live_max.max(inner.pods.len());
    inner.log.push((rv, name.to_string(), event, pod.clone()));
    let _ = state.events.send((rv, name.to_string()));
    Some(pod)
}

fn create_pod(state: &Arc<State>, ns: &str, mut pod: Value) -> Response<Body> {
    let Some(name) = pod["metadata"]["name"].as_str().map(str::to_string) else {
        return status_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "Pod \"\" is invalid: metadata.name: Required value".into(),
        );
    };
    if state.inner.lock().expect("state").pods.contains_key(&name) {
        return status_error(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("pods \"{name}\" already exists"),
        );
    }
    let node = pod["spec"]["nodeName"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    pod["metadata"]["namespace"] = json!(ns);
    pod["metadata"]["uid"] = json!(format!("uid-{name}"));
    pod["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
    pod["status"] = json!({"phase": "Pending", "qosClass": "Burstable"});
    let Some(stored) = put_pod(state, &name, "ADDED", pod) else {
        return status_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "store".into(),
        );
    };
    state
        .inner
        .lock()
        .expect("state")
        .created
        .push(name.clone());
    let behaviour = state.behaviours.get(&node).copied();
    let kubelet = state.clone();
    tokio::spawn(async move { kubelet_runs(kubelet, name, behaviour).await });
    full(StatusCode::CREATED, &stored)
}

fn container_status(state: Value, ready: bool) -> Value {
    json!([{
        "name": "collect", "image": "netsnap-collect", "imageID": "", "ready": ready,
        "restartCount": 0, "started": ready, "state": state,
    }])
}

/// The kubelet's part: moves the pod through its phases according to the node's behaviour.
async fn kubelet_runs(state: Arc<State>, name: String, behaviour: Option<Behaviour>) {
    let Some(behaviour) = behaviour else { return };
    let step = state.step;
    let update = |status: Value| {
        let current = state.inner.lock().expect("state").pods.get(&name).cloned();
        if let Some(mut pod) = current {
            pod["status"] = status;
            put_pod(&state, &name, "MODIFIED", pod);
        }
    };
    match behaviour {
        Behaviour::NeverScheduled => {}
        Behaviour::ImagePullFails => {
            tokio::time::sleep(step).await;
            update(
                json!({"phase": "Pending", "containerStatuses": container_status(json!({"waiting": {"reason": "ContainerCreating"}}), false)}),
            );
            tokio::time::sleep(step).await;
            update(
                json!({"phase": "Pending", "containerStatuses": container_status(json!({"waiting": {"reason": "ErrImagePull", "message": "failed to pull and unpack image \"registry.example.invalid/netsnap/netsnap-collect:0.1.0\": failed to resolve reference: not found"}}), false)}),
            );
        }
        Behaviour::PodFails => {
            tokio::time::sleep(step).await;
            update(
                json!({"phase": "Failed", "containerStatuses": container_status(json!({"terminated": {"reason": "StartError", "exitCode": 128, "message": "failed to create containerd task: exec: \"sleep\": executable file not found in $PATH"}}), false)}),
            );
        }
        _ => {
            tokio::time::sleep(step).await;
            update(
                json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}], "containerStatuses": container_status(json!({"waiting": {"reason": "ContainerCreating"}}), false)}),
            );
            tokio::time::sleep(step).await;
            update(
                json!({"phase": "Running", "podIP": "10.0.0.1", "conditions": [{"type": "Ready", "status": "True"}], "containerStatuses": container_status(json!({"running": {"startedAt": "2026-01-01T00:00:01Z"}}), true)}),
            );
        }
    }
}

fn watch_pods(state: &Arc<State>, req: &Recorded) -> Response<Body> {
    let name = req
        .param("fieldSelector")
        .and_then(|f| f.strip_prefix("metadata.name="))
        .map(str::to_string);
    let since: u64 = req
        .param("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let timeout = req
        .param("timeoutSeconds")
        .and_then(|v| v.parse().ok())
        .unwrap_or(300u64);
    let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(64);
    let (backlog, mut live) = {
        let inner = state.inner.lock().expect("state");
        let live = state.events.subscribe();
        let backlog: Vec<(u64, Value)> = inner
            .log
            .iter()
            .filter(|(rv, n, _, _)| *rv > since && name.as_ref().is_none_or(|w| w == n))
            .map(|(rv, _, t, o)| (*rv, json!({"type": t, "object": o})))
            .collect();
        (backlog, live)
    };
    let state = state.clone();
    tokio::spawn(async move {
        let mut sent_up_to = since;
        for (rv, event) in backlog {
            sent_up_to = rv;
            if tx
                .send(Ok(Frame::data(Bytes::from(format!("{event}\n")))))
                .await
                .is_err()
            {
                return;
            }
        }
        let deadline = tokio::time::sleep(Duration::from_secs(timeout));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                got = live.recv() => {
                    let Ok((rv, pod)) = got else { return };
                    if rv <= sent_up_to || name.as_ref().is_some_and(|w| *w != pod) {
                        continue;
                    }
                    let event = {
                        let inner = state.inner.lock().expect("state");
                        inner.log.iter().find(|(r, _, _, _)| *r == rv).map(|(_, _, t, o)| json!({"type": t, "object": o}))
                    };
                    if let Some(event) = event {
                        sent_up_to = rv;
                        if tx.send(Ok(Frame::data(Bytes::from(format!("{event}\n"))))).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .header("transfer-encoding", "chunked")
        .body(BodyExt::boxed(StreamBody::new(rx)))
        .expect("response")
}

fn delete_pod(state: &Arc<State>, name: &str) -> Response<Body> {
    let current = state.inner.lock().expect("state").pods.get(name).cloned();
    let Some(mut pod) = current else {
        return status_error(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("pods \"{name}\" not found"),
        );
    };
    pod["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:01:00Z");
    pod["metadata"]["deletionGracePeriodSeconds"] = json!(1);
    put_pod(state, name, "DELETED", pod.clone());
    state
        .inner
        .lock()
        .expect("state")
        .deleted
        .push(name.to_string());
    full(StatusCode::OK, &pod)
}

fn exec(
    state: &Arc<State>,
    name: &str,
    req: &Recorded,
    mut raw: Request<Incoming>,
) -> Response<Body> {
    let pod = state.inner.lock().expect("state").pods.get(name).cloned();
    let Some(pod) = pod else {
        return status_error(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("pods \"{name}\" not found"),
        );
    };
    if pod["status"]["phase"] != "Running" {
        return status_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("pod {name} does not have a host assigned or is not running"),
        );
    }
    let Some(key) = raw
        .headers()
        .get("sec-websocket-key")
        .map(|k| k.as_bytes().to_vec())
    else {
        return status_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Upgrade request required".into(),
        );
    };
    let offered = raw
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let protocol = ["v5.channel.k8s.io", "v4.channel.k8s.io"]
        .into_iter()
        .find(|p| offered.split(',').any(|o| o.trim() == *p));
    let Some(protocol) = protocol else {
        return status_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("no supported subprotocol in {offered:?}"),
        );
    };
    let node = pod["spec"]["nodeName"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let command: Vec<String> = req
        .query
        .iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.clone())
        .collect();
    let cluster = command
        .windows(2)
        .any(|w| w[0] == "--api-scope" && w[1] == "cluster");
    let behaviour = if cluster {
        Behaviour::Healthy
    } else {
        state
            .behaviours
            .get(&node)
            .copied()
            .unwrap_or(Behaviour::Healthy)
    };
    let bundle = if cluster {
        state.cluster_bundle.clone()
    } else {
        state.bundles.get(&node).cloned().unwrap_or_default()
    };
    let index = {
        let mut inner = state.inner.lock().expect("state");
        inner.execs.push(ExecRecord {
            pod: name.to_string(),
            node,
            command,
            container: req.param("container").map(str::to_string),
            offered,
            protocol: protocol.to_string(),
            stdout_bytes: 0,
            closed_channels: Vec::new(),
        });
        inner.execs.len() - 1
    };
    let upgrade = hyper::upgrade::on(&mut raw);
    let session_state = state.clone();
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        run_collector(session_state, index, ws, behaviour, bundle).await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-accept", derive_accept_key(&key))
        .header("sec-websocket-protocol", protocol)
        .body(Full::new(Bytes::new()).boxed())
        .expect("response")
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    Message::binary(v)
}

const CHUNK: usize = 4096;

/// The collector's side of one exec session.
async fn run_collector<S>(
    state: Arc<State>,
    index: usize,
    mut ws: WebSocketStream<S>,
    behaviour: Behaviour,
    mut bundle: Vec<u8>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    // The API server opens each channel with an empty frame.
    for ch in [1u8, 2] {
        if ws.send(frame(ch, &[])).await.is_err() {
            return;
        }
    }
    let _ = ws
        .send(frame(2, b"netsnap-collect: collecting (node-local)\n"))
        .await;
    let mut sent = 0usize;
    let status = match behaviour {
        Behaviour::CollectorFails => {
            let _ = ws
                .send(frame(
                    2,
                    b"netsnap-collect: error: cannot read /host/proc: No such file or directory\n",
                ))
                .await;
            Some(json!({
                "metadata": {}, "status": "Failure",
                "message": "command terminated with non-zero exit code: error executing command [netsnap-collect], exit code 2",
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": "2"}]},
            }))
        }
        Behaviour::Hang => {
            // Read until the client goes away; never finish.
            while let Some(Ok(msg)) = ws.next().await {
                record_close(&state, index, &msg);
            }
            return;
        }
        Behaviour::StreamCut => {
            let half = &bundle[..bundle.len() / 2];
            for chunk in half.chunks(CHUNK) {
                if ws.send(frame(1, chunk)).await.is_err() {
                    return;
                }
                sent += chunk.len();
            }
            let _ = ws.flush().await;
            set_sent(&state, index, sent);
            // Drop the TCP connection without a close frame or status.
            drop(ws);
            return;
        }
        _ => {
            if behaviour == Behaviour::Corrupt {
                let mid = bundle.len() / 2;
                bundle[mid] ^= 0x55;
            }
            for chunk in bundle.chunks(CHUNK) {
                if ws.send(frame(1, chunk)).await.is_err() {
                    return;
                }
                sent += chunk.len();
            }
            let _ = ws
                .send(frame(2, b"netsnap-collect: wrote - (bundle on stdout)\n"))
                .await;
            Some(json!({"metadata": {}, "status": "Success"}))
        }
    };
    set_sent(&state, index, sent);
    if let Some(status) = status {
        let _ = ws.send(frame(3, status.to_string().as_bytes())).await;
    }
    let _ = ws.close(None).await;
    // Drain the client's close (and any v5 close-channel frames) for the record.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(msg)) = ws.next().await {
            record_close(&state, index, &msg);
        }
    })
    .await;
}

fn set_sent(state: &State, index: usize, sent: usize) {
    if let Some(e) = state.inner.lock().expect("state").execs.get_mut(index) {
        e.stdout_bytes = sent;
    }
}

fn record_close(state: &State, index: usize, msg: &Message) {
    if let Message::Binary(b) = msg
        && b.len() == 2
        && b[0] == 255
        && let Some(e) = state.inner.lock().expect("state").execs.get_mut(index)
    {
        e.closed_channels.push(b[1]);
    }
}

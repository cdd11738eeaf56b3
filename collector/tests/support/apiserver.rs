//! A tiny HTTP/1.1 server speaking the Kubernetes REST paths the collector
//! uses, for tests of the real `kube::Client` over a real socket.
//!
//! It serves the fixture files under `fixtures/k8s/api/` and records every
//! request line, so tests can check that each page was asked for.

#![allow(dead_code, clippy::unwrap_used, clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::simcluster::Sim;

/// How the server behaves.
#[derive(Clone, Debug)]
pub enum Mode {
    /// Serve the fixtures.
    Normal,
    /// Serve the fixtures, except a 403 `Status` for the paths starting with the key.
    Forbid(Vec<String>),
    /// Answer every request with 401 Unauthorized.
    Unauthorized,
    /// Accept connections and never answer.
    Silent,
    /// A simulated cluster of generated objects (see `simcluster.rs`).
    Sim(Arc<Sim>),
    /// Serve `pages` generated pages of `per_page` pods each (copies of the first
    /// fixture pod, every tenth bound to `node-a`); other paths as `Normal`.
    Synthetic {
        /// Number of pages.
        pages: usize,
        /// Pods per page.
        per_page: usize,
    },
    /// Serve one page of `per_page` generated pods (as `Synthetic`), announcing its
    /// whole length but closing the connection after `keep` bytes of the body: a
    /// list that breaks off mid-page. Other paths as `Normal`.
    CutPods {
        /// Pods in the page.
        per_page: usize,
        /// Body bytes sent before the connection is closed.
        keep: usize,
    },
}

fn synthetic_page(page: usize, pages: usize, per_page: usize) -> Vec<u8> {
    let template: serde_json::Value = serde_json::from_slice(&fixture("pods-page-1.json")).unwrap();
    let base = template["items"][0].clone();
    let items: Vec<serde_json::Value> = (0..per_page)
        .map(|i| {
            let n = page * per_page + i;
            let mut p = base.clone();
            p["metadata"]["name"] = format!("synthetic-{n}").into();
            p["metadata"]["uid"] = format!("00000000-0000-4000-8000-{n:012}").into();
            p["spec"]["nodeName"] = if n.is_multiple_of(10) {
                "node-a"
            } else {
                "node-b"
            }
            .into();
            let ip = format!("10.{}.{}.{}", 100 + n / 65536, (n / 256) % 256, n % 256);
            p["status"]["podIP"] = ip.clone().into();
            p["status"]["podIPs"] = serde_json::json!([{ "ip": ip }]);
            p
        })
        .collect();
    let mut meta = serde_json::json!({ "resourceVersion": "99999" });
    if page + 1 < pages {
        meta["continue"] = format!("synthetic-page-{}", page + 1).into();
        meta["remainingItemCount"] = ((pages - page - 1) * per_page).into();
    }
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "v1", "kind": "PodList", "metadata": meta, "items": items
    }))
    .unwrap()
}

/// One canned response.
pub struct Reply {
    /// HTTP status code.
    pub code: u16,
    /// Body.
    pub body: Vec<u8>,
    /// Extra headers (`Retry-After`).
    pub headers: Vec<(String, String)>,
}

/// One answered request, as the server saw it.
#[derive(Debug, Clone)]
pub struct Served {
    /// Request target (path and query).
    pub target: String,
    /// Bearer token of the client.
    pub token: String,
    /// Status code sent.
    pub code: u16,
    /// Body bytes sent.
    pub bytes: u64,
    /// When the request arrived.
    pub at: std::time::Instant,
}

/// A running server.
pub struct ApiServer {
    /// Port on 127.0.0.1.
    pub port: u16,
    /// Request targets seen (`/api/v1/pods?limit=500&continue=…`), in order.
    pub requests: Arc<Mutex<Vec<String>>>,
    /// Authorization headers seen.
    pub auth: Arc<Mutex<Vec<String>>>,
    /// Every answered request with its status and body size.
    pub served: Arc<Mutex<Vec<Served>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The fixture directory.
pub fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/k8s")
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_dir().join("api").join(name)).unwrap()
}

/// A fixture of `fixtures/k8s/api/`, parsed.
pub fn fixture_json(name: &str) -> serde_json::Value {
    serde_json::from_slice(&fixture(name)).unwrap()
}

/// Splits a request target into its path and decoded query parameters.
pub fn query(target: &str) -> (String, BTreeMap<String, String>) {
    let (path, q) = target.split_once('?').unwrap_or((target, ""));
    let params = q
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.to_string(), percent_decode(v))
        })
        .collect();
    (path.to_string(), params)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

/// A Kubernetes `Status` body.
pub fn status_body(code: u16, reason: &str, message: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code
    }))
    .unwrap()
}

/// Routes a request target to a fixture, following the real API paths.
pub fn route(mode: &Mode, target: &str) -> Reply {
    route_as(mode, target, "")
}

/// Like [`route`], for the client holding bearer `token`.
pub fn route_as(mode: &Mode, target: &str, token: &str) -> Reply {
    let (path, q) = query(target);
    if let Mode::Sim(sim) = mode {
        return sim.route(&path, &q, token);
    }
    if let Mode::Unauthorized = mode {
        return Reply {
            code: 401,
            body: fixture("status-401.json"),
            headers: Vec::new(),
        };
    }
    if let Mode::Forbid(prefixes) = mode
        && prefixes.iter().any(|p| path.starts_with(p.as_str()))
    {
        return Reply {
            code: 403,
            body: fixture("status-403-pods.json"),
            headers: Vec::new(),
        };
    }
    let ok = |name: &str| Reply {
        code: 200,
        body: fixture(name),
        headers: Vec::new(),
    };
    match path.as_str() {
        "/version" => ok("version.json"),
        "/api/v1/nodes" => ok("nodes.json"),
        "/api/v1/services" => ok("services.json"),
        "/apis/discovery.k8s.io/v1/endpointslices" => ok("endpointslices.json"),
        "/api/v1/namespaces/kube-system/configmaps/kube-proxy" => ok("configmap-kube-proxy.json"),
        "/api/v1/events" => {
            if q.get("fieldSelector").map(String::as_str) != Some("involvedObject.kind=Pod") {
                return Reply {
                    code: 400,
                    body: status_body(400, "BadRequest", "test server wants the field selector"),
                    headers: Vec::new(),
                };
            }
            ok("events.json")
        }
        "/api/v1/pods" if matches!(mode, Mode::CutPods { .. }) => {
            let Mode::CutPods { per_page, .. } = mode else {
                unreachable!()
            };
            Reply {
                code: 200,
                body: synthetic_page(0, 1, *per_page),
                headers: Vec::new(),
            }
        }
        "/api/v1/pods" if matches!(mode, Mode::Synthetic { .. }) => {
            let Mode::Synthetic { pages, per_page } = mode else {
                unreachable!()
            };
            let page = q
                .get("continue")
                .and_then(|t| t.strip_prefix("synthetic-page-"))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            assert_eq!(q.get("limit").map(String::as_str), Some("500"));
            Reply {
                code: 200,
                body: synthetic_page(page, *pages, *per_page),
                headers: Vec::new(),
            }
        }
        "/api/v1/pods" => {
            // The continue tokens are the ones printed in the page fixtures.
            let page = match q.get("continue") {
                None => 1,
                Some(t) => {
                    let p1: serde_json::Value =
                        serde_json::from_slice(&fixture("pods-page-1.json")).unwrap();
                    let p2: serde_json::Value =
                        serde_json::from_slice(&fixture("pods-page-2.json")).unwrap();
                    if p1["metadata"]["continue"].as_str() == Some(t.as_str()) {
                        2
                    } else if p2["metadata"]["continue"].as_str() == Some(t.as_str()) {
                        3
                    } else {
                        return Reply {
                            code: 410,
                            body: status_body(
                                410,
                                "Expired",
                                "The provided continue parameter is too old to display a consistent list result.",
                            ),
                            headers: Vec::new(),
                        };
                    }
                }
            };
            ok(&format!("pods-page-{page}.json"))
        }
        _ => Reply {
            code: 404,
            body: status_body(
                404,
                "NotFound",
                &format!("the server could not find the requested resource ({path})"),
            ),
            headers: Vec::new(),
        },
    }
}

fn reason_phrase(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        410 => "Gone",
        429 => "Too Many Requests",
        _ => "Unknown",
    }
}

/// Starts a server on an ephemeral loopback port.
pub async fn start(mode: Mode) -> ApiServer {
    start_rewriting(mode, Vec::new()).await
}

/// Like [`start`], replacing each `from` with `to` in every body (e.g. to move the
/// fixture cluster's addresses to a range no other test uses).
pub async fn start_rewriting(mode: Mode, rewrites: Vec<(String, String)>) -> ApiServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let auth = Arc::new(Mutex::new(Vec::new()));
    let served = Arc::new(Mutex::new(Vec::new()));
    let (req2, auth2, served2) = (requests.clone(), auth.clone(), served.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let mode = mode.clone();
            let rewrites = rewrites.clone();
            let (requests, auth, served) = (req2.clone(), auth2.clone(), served2.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    // Read one request head (GETs carry no body).
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    buf.drain(..head_end);
                    let mut lines = head.split("\r\n");
                    let request_line = lines.next().unwrap_or_default();
                    let target = request_line.split(' ').nth(1).unwrap_or("/").to_string();
                    let at = std::time::Instant::now();
                    let mut token = String::new();
                    for l in lines {
                        if let Some((k, v)) = l.split_once(':')
                            && k.eq_ignore_ascii_case("authorization")
                        {
                            auth.lock().unwrap().push(v.trim().to_string());
                            token = v.trim().trim_start_matches("Bearer ").to_string();
                        }
                    }
                    requests.lock().unwrap().push(target.clone());
                    if let Mode::Silent = mode {
                        // Hold the connection open without answering.
                        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                        return;
                    }
                    let mut reply = route_as(&mode, &target, &token);
                    if !rewrites.is_empty() {
                        let mut text = String::from_utf8(reply.body).unwrap();
                        for (from, to) in &rewrites {
                            text = text.replace(from.as_str(), to);
                        }
                        reply.body = text.into_bytes();
                    }
                    let extra: String = reply
                        .headers
                        .iter()
                        .map(|(k, v)| format!("{k}: {v}\r\n"))
                        .collect();
                    let head = format!(
                        "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nAudit-Id: 0b2c7a0e-8d5f-4b1e-9c3a-7f6e5d4c3b2a\r\n{extra}\r\n",
                        reply.code,
                        reason_phrase(reply.code),
                        reply.body.len()
                    );
                    served.lock().unwrap().push(Served {
                        target: target.clone(),
                        token: token.clone(),
                        code: reply.code,
                        bytes: reply.body.len() as u64,
                        at,
                    });
                    // One write: a head and body sent apart meet Nagle and delayed ACK
                    // (40 ms per request on loopback).
                    let mut wire = head.into_bytes();
                    if let Mode::CutPods { keep, .. } = &mode
                        && target.starts_with("/api/v1/pods")
                    {
                        wire.extend_from_slice(&reply.body[..(*keep).min(reply.body.len())]);
                        let _ = sock.write_all(&wire).await;
                        return;
                    }
                    wire.extend_from_slice(&reply.body);
                    if sock.write_all(&wire).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    ApiServer {
        port,
        requests,
        auth,
        served,
        task,
    }
}

/// Writes a one-context kubeconfig for this server with bearer `token` (the
/// simulator tells collectors apart by it). It names a CA (never used over plain
/// HTTP) so the client does not load the system trust store: that costs ~60 ms
/// per client in a debug build, a minute for a 1,000-collector fan-out.
pub fn kubeconfig_with_token(path: &std::path::Path, port: u16, token: &str) {
    let ca = fixture_dir().join("sim-ca.pem");
    let ca = ca.display();
    std::fs::write(
        path,
        format!(
            "apiVersion: v1
kind: Config
clusters:
- cluster:
    server: http://127.0.0.1:{port}
    certificate-authority: {ca}
  name: sim
contexts:
- context:
    cluster: sim
    user: u
  name: sim
current-context: sim
users:
- name: u
  user:
    token: {token}
"
        ),
    )
    .unwrap();
}

/// Writes a kubeconfig with two contexts: `lab` (this server) and current-context
/// `broken` pointing at `broken_port`, so tests also exercise `--context`.
pub fn kubeconfig(dir: &std::path::Path, port: u16, broken_port: u16) -> PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1
kind: Config
clusters:
- cluster:
    server: http://127.0.0.1:{port}
  name: lab
- cluster:
    server: http://127.0.0.1:{broken_port}
  name: broken
contexts:
- context:
    cluster: lab
    user: lab-reader
  name: lab
- context:
    cluster: broken
    user: lab-reader
  name: broken
current-context: broken
preferences: {{}}
users:
- name: lab-reader
  user:
    token: netsnap-test-token
"
        ),
    )
    .unwrap();
    path
}

/// A port on 127.0.0.1 with nothing listening (bound then released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

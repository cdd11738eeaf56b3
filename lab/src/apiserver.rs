//! A minimal read-only Kubernetes API server (plain HTTP/1.1, keep-alive)
//! serving a lab node's [`ApiObjects`] on a socket bound inside the node, so
//! the real collector's `kube::Client` fetches the lab's pods, services,
//! endpoint slices, node and kube-proxy ConfigMap over a real connection.
//! Lists are served in one page (no `continue`); unknown paths get a 404
//! `Status`. Every list is serialized once, at start (as the watch cache keeps
//! serialized objects), so a 15,000-pod list costs the server a copy, not seconds
//! of JSON encoding per request: the benchmark times the collector, not this
//! server. The objects are a snapshot taken at start: start the server after
//! injecting faults. Their timestamps are moved one hour back, so the analyzer's
//! "too fresh to judge" guards (an object created seconds before capture may not
//! be programmed yet) do not hide a fault the test injected on purpose.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::{ApiObjects, LabNode, LabResult};

/// A running fake API server; it stops accepting when the node's netns goes away.
#[derive(Debug)]
pub struct LabApiServer {
    /// Port on 127.0.0.1 inside the node.
    pub port: u16,
    /// Kubeconfig path (readable from inside the node).
    pub kubeconfig: PathBuf,
}

impl LabApiServer {
    /// Binds `127.0.0.1:0` inside the node, serves `node.api_objects()`, writes a kubeconfig.
    pub fn start(node: &LabNode) -> LabResult<LabApiServer> {
        Self::start_with(node, node.api_objects())
    }

    /// Like [`LabApiServer::start`], serving `objects` (e.g. the node's objects plus
    /// thousands of pods of other nodes, for the benchmark).
    pub fn start_with(node: &LabNode, objects: ApiObjects) -> LabResult<LabApiServer> {
        let listener = node.tcp_listener(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
        let port = listener
            .local_addr()
            .map_err(|e| crate::LabError::io("listener address", e))?
            .port();
        let mut objects = objects;
        let then = (chrono::Utc::now() - chrono::Duration::hours(1))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        for v in objects
            .pods
            .iter_mut()
            .chain(objects.services.iter_mut())
            .chain(objects.endpoint_slices.iter_mut())
            .chain(objects.nodes.iter_mut())
            .chain(objects.config_maps.iter_mut())
        {
            backdate(v, &then);
        }
        let objects = Arc::new(Served {
            lists: objects
                .lists()
                .into_iter()
                .map(|(f, v)| (f, serde_json::to_vec(&v).unwrap_or_default()))
                .collect(),
            objects,
        });
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { break };
                let objects = objects.clone();
                std::thread::spawn(move || serve(conn, &objects));
            }
        });
        let kubeconfig =
            node.write_kubeconfig(&format!("http://127.0.0.1:{port}"), "lab-token", None)?;
        Ok(LabApiServer { port, kubeconfig })
    }
}

/// The objects and their lists, serialized once.
struct Served {
    objects: ApiObjects,
    lists: Vec<(&'static str, Vec<u8>)>,
}

fn serve(conn: TcpStream, objects: &Served) {
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        // Skip headers (GET requests carry no body).
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" || h == "\n" {
                break;
            }
        }
        let target = line.split_whitespace().nth(1).unwrap_or("/");
        let (code, body) = match route(objects, target) {
            (code, Body::List(b)) => (code, std::borrow::Cow::Borrowed(b)),
            (code, Body::Json(v)) => (
                code,
                std::borrow::Cow::Owned(serde_json::to_vec(&v).unwrap_or_default()),
            ),
        };
        let head = format!(
            "HTTP/1.1 {code} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            if code == 200 { "OK" } else { "Not Found" },
            body.len()
        );
        if out.write_all(head.as_bytes()).is_err() || out.write_all(&body).is_err() {
            return;
        }
    }
}

/// A response body: a list serialized at start, or a small object.
enum Body<'a> {
    List(&'a [u8]),
    Json(Value),
}

fn list<'a>(served: &'a Served, file: &str) -> Body<'a> {
    served
        .lists
        .iter()
        .find(|(f, _)| *f == file)
        .map_or(Body::Json(Value::Null), |(_, b)| Body::List(b))
}

fn route<'a>(served: &'a Served, target: &str) -> (u16, Body<'a>) {
    let objects = &served.objects;
    let path = target.split('?').next().unwrap_or(target);
    match path {
        "/version" => (
            200,
            Body::Json(
                json!({"major": "1", "minor": "34", "gitVersion": "v1.34.0", "platform": "linux/amd64"}),
            ),
        ),
        "/api/v1/pods" => (200, list(served, "pods.json")),
        "/api/v1/services" => (200, list(served, "services.json")),
        "/apis/discovery.k8s.io/v1/endpointslices" => (200, list(served, "endpointslices.json")),
        "/api/v1/nodes" => (200, list(served, "nodes.json")),
        "/api/v1/events" => (200, Body::Json(ApiObjects::list("Event", "v1", &[]))),
        _ => {
            if let Some(name) = path.strip_prefix("/api/v1/namespaces/kube-system/configmaps/")
                && let Some(cm) = objects
                    .config_maps
                    .iter()
                    .find(|c| c["metadata"]["name"] == name)
            {
                return (200, Body::Json(cm.clone()));
            }
            if let Some(name) = path.strip_prefix("/api/v1/nodes/")
                && let Some(n) = objects.nodes.iter().find(|n| n["metadata"]["name"] == name)
            {
                return (200, Body::Json(n.clone()));
            }
            (
                404,
                Body::Json(
                    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                       "message": format!("{path} not found"), "reason": "NotFound", "code": 404}),
                ),
            )
        }
    }
}

/// Sets every creation/start/transition timestamp in `v` to `then`.
fn backdate(v: &mut Value, then: &str) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if matches!(
                    k.as_str(),
                    "creationTimestamp" | "startTime" | "lastTransitionTime" | "startedAt"
                ) && x.is_string()
                {
                    *x = Value::String(then.to_string());
                } else {
                    backdate(x, then);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| backdate(x, then)),
        _ => {}
    }
}

//! A minimal read-only Kubernetes API server (plain HTTP/1.1, keep-alive)
//! serving a lab node's [`ApiObjects`] on a socket bound inside the node, so
//! the real collector's `kube::Client` fetches the lab's pods, services,
//! endpoint slices, node and kube-proxy ConfigMap over a real connection.
//! Lists are served in one page (no `continue`); unknown paths get a 404
//! `Status`. The objects are a snapshot taken at start: start the server after
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
        let objects = Arc::new(objects);
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

fn serve(conn: TcpStream, objects: &ApiObjects) {
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
        let (code, body) = route(objects, target);
        let body = serde_json::to_vec(&body).unwrap_or_default();
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

fn list(objects: &ApiObjects, file: &str) -> Value {
    objects
        .lists()
        .into_iter()
        .find(|(f, _)| *f == file)
        .map(|(_, v)| v)
        .unwrap_or(Value::Null)
}

fn route(objects: &ApiObjects, target: &str) -> (u16, Value) {
    let path = target.split('?').next().unwrap_or(target);
    match path {
        "/version" => (
            200,
            json!({"major": "1", "minor": "34", "gitVersion": "v1.34.0", "platform": "linux/amd64"}),
        ),
        "/api/v1/pods" => (200, list(objects, "pods.json")),
        "/api/v1/services" => (200, list(objects, "services.json")),
        "/apis/discovery.k8s.io/v1/endpointslices" => (200, list(objects, "endpointslices.json")),
        "/api/v1/nodes" => (200, list(objects, "nodes.json")),
        "/api/v1/events" => (200, ApiObjects::list("Event", "v1", &[])),
        _ => {
            if let Some(name) = path.strip_prefix("/api/v1/namespaces/kube-system/configmaps/")
                && let Some(cm) = objects
                    .config_maps
                    .iter()
                    .find(|c| c["metadata"]["name"] == name)
            {
                return (200, cm.clone());
            }
            if let Some(name) = path.strip_prefix("/api/v1/nodes/")
                && let Some(n) = objects.nodes.iter().find(|n| n["metadata"]["name"] == name)
            {
                return (200, n.clone());
            }
            (
                404,
                json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                       "message": format!("{path} not found"), "reason": "NotFound", "code": 404}),
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

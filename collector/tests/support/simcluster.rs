//! A simulated cluster behind the test API server ([`super::apiserver::Mode::Sim`]):
//! `pods` pods spread round-robin over `nodes` nodes, generated on demand from
//! the fixture objects, so a 150,000-pod API costs no memory until a list asks
//! for them. It answers the real REST paths with real query semantics (limit and
//! continue, `fieldSelector=spec.nodeName=`, `labelSelector=kubernetes.io/service-name=`,
//! `resourceVersion=0` refused next to a continue token, as the API server does),
//! and injects `429 Too Many Requests` with `Retry-After` on demand.

#![allow(dead_code, clippy::unwrap_used, clippy::disallowed_methods)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use serde_json::{Value, json};

use super::apiserver::{Reply, fixture_json, status_body};

/// Shape and behaviour of the simulated cluster.
#[derive(Debug, Clone)]
pub struct SimSpec {
    /// Pods in the cluster.
    pub pods: usize,
    /// Nodes (`node-0` … `node-<n-1>`); pod `i` runs on `node-<i % nodes>`.
    pub nodes: usize,
    /// Answer a `resourceVersion=0` list in one page whatever its `limit`, like a
    /// watch cache without paginated list support.
    pub ignore_limit_at_rv0: bool,
    /// Collectors (bearer tokens) whose first pod list gets a 429, with this
    /// `Retry-After` in seconds.
    pub throttle_tokens: BTreeSet<String>,
    /// `Retry-After` of the injected 429s.
    pub retry_after_secs: u64,
}

impl SimSpec {
    /// `pods` pods over `nodes` nodes, paginating honestly, no throttling.
    pub fn new(pods: usize, nodes: usize) -> Self {
        SimSpec {
            pods,
            nodes,
            ignore_limit_at_rv0: false,
            throttle_tokens: BTreeSet::new(),
            retry_after_secs: 1,
        }
    }
}

/// The simulated cluster and its mutable state (which 429s were already sent).
#[derive(Debug)]
pub struct Sim {
    /// The spec.
    pub spec: SimSpec,
    pod_template: Value,
    node_template: Value,
    throttled: Mutex<BTreeSet<String>>,
}

fn bad_request(msg: &str) -> Reply {
    Reply {
        code: 400,
        body: status_body(400, "BadRequest", msg),
        headers: Vec::new(),
    }
}

fn ok(v: &Value) -> Reply {
    Reply {
        code: 200,
        body: serde_json::to_vec(v).unwrap(),
        headers: Vec::new(),
    }
}

impl Sim {
    /// A simulated cluster.
    pub fn new(spec: SimSpec) -> Self {
        let pods = fixture_json("pods-page-1.json");
        let nodes = fixture_json("nodes.json");
        Sim {
            spec,
            pod_template: pods["items"][0].clone(),
            node_template: nodes["items"][0].clone(),
            throttled: Mutex::new(BTreeSet::new()),
        }
    }

    /// Node `k`'s name.
    pub fn node_name(k: usize) -> String {
        format!("node-{k}")
    }

    /// Pod `i` as the API returns it.
    pub fn pod(&self, i: usize) -> Value {
        let mut p = self.pod_template.clone();
        p["metadata"]["name"] = format!("sim-{i}").into();
        p["metadata"]["namespace"] = format!("ns-{}", i % 50).into();
        p["metadata"]["uid"] = format!("00000000-0000-4000-8000-{i:012}").into();
        p["spec"]["nodeName"] = Self::node_name(i % self.spec.nodes).into();
        let ip = format!("10.{}.{}.{}", 64 + i / 65536, (i / 256) % 256, i % 256);
        p["status"]["podIP"] = ip.clone().into();
        p["status"]["podIPs"] = json!([{ "ip": ip }]);
        p
    }

    /// Node `k` as the API returns it.
    pub fn node(&self, k: usize) -> Value {
        let mut n = self.node_template.clone();
        let name = Self::node_name(k);
        n["metadata"]["name"] = name.clone().into();
        n["metadata"]["uid"] = format!("11111111-0000-4000-8000-{k:012}").into();
        let cidr = format!("10.{}.{}.0/24", 128 + k / 256, k % 256);
        n["spec"]["podCIDR"] = cidr.clone().into();
        n["spec"]["podCIDRs"] = json!([cidr]);
        n["status"]["addresses"] = json!([
            {"type": "InternalIP", "address": format!("172.18.{}.{}", k / 256, k % 256)},
            {"type": "Hostname", "address": name}
        ]);
        n
    }

    /// One page of a list over `total` generated objects: honours `limit` and the
    /// `sim-<offset>` continue tokens it hands out.
    fn page(
        &self,
        kind: &str,
        q: &BTreeMap<String, String>,
        total: usize,
        item: impl Fn(usize) -> Value,
    ) -> Reply {
        let rv0 = q.get("resourceVersion").map(String::as_str) == Some("0");
        let start: usize = match q.get("continue") {
            None => 0,
            Some(t) => match t.strip_prefix("sim-").and_then(|n| n.parse().ok()) {
                Some(n) => n,
                None => return bad_request("invalid continue token"),
            },
        };
        let limit = q
            .get("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|l| *l > 0 && !(rv0 && self.spec.ignore_limit_at_rv0))
            .unwrap_or(usize::MAX);
        let end = start.saturating_add(limit).min(total);
        let items: Vec<Value> = (start..end).map(item).collect();
        let mut meta = json!({ "resourceVersion": "4242" });
        if end < total {
            meta["continue"] = format!("sim-{end}").into();
            meta["remainingItemCount"] = (total - end).into();
        }
        ok(
            &json!({"apiVersion": "v1", "kind": format!("{kind}List"), "metadata": meta, "items": items}),
        )
    }

    /// Answers one request (`token`: the bearer token, naming the collector).
    pub fn route(&self, path: &str, q: &BTreeMap<String, String>, token: &str) -> Reply {
        if q.contains_key("continue") && q.contains_key("resourceVersion") {
            return bad_request("specifying resource version is not allowed when using continue");
        }
        match path {
            "/version" => ok(&fixture_json("version.json")),
            "/api/v1/nodes" => self.page("Node", q, self.spec.nodes, |k| self.node(k)),
            "/api/v1/pods" => {
                if self.spec.throttle_tokens.contains(token)
                    && self.throttled.lock().unwrap().insert(token.to_string())
                {
                    return Reply {
                        code: 429,
                        body: status_body(
                            429,
                            "TooManyRequests",
                            "Too many requests, please try again later.",
                        ),
                        headers: vec![(
                            "Retry-After".into(),
                            self.spec.retry_after_secs.to_string(),
                        )],
                    };
                }
                match q.get("fieldSelector") {
                    None => self.page("Pod", q, self.spec.pods, |i| self.pod(i)),
                    Some(sel) => {
                        let Some(k) = sel
                            .strip_prefix("spec.nodeName=node-")
                            .and_then(|k| k.parse::<usize>().ok())
                        else {
                            return bad_request(&format!("unsupported field selector {sel:?}"));
                        };
                        let n = self.spec.nodes;
                        // Pods k, k+n, k+2n, … run on node k.
                        let count = if k < n && k < self.spec.pods {
                            (self.spec.pods - k).div_ceil(n)
                        } else {
                            0
                        };
                        self.page("Pod", q, count, |j| self.pod(k + j * n))
                    }
                }
            }
            "/api/v1/services" => ok(&fixture_json("services.json")),
            "/apis/discovery.k8s.io/v1/endpointslices" => ok(&fixture_json("endpointslices.json")),
            "/api/v1/events" => ok(&fixture_json("events.json")),
            "/api/v1/namespaces/kube-system/services/kube-dns" => {
                let svcs = fixture_json("services.json");
                let dns = svcs["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|s| s["metadata"]["name"] == "kube-dns")
                    .unwrap()
                    .clone();
                ok(&dns)
            }
            "/apis/discovery.k8s.io/v1/namespaces/kube-system/endpointslices" => {
                let Some(svc) = q
                    .get("labelSelector")
                    .and_then(|l| l.strip_prefix("kubernetes.io/service-name="))
                else {
                    return bad_request("the simulator wants a service-name label selector");
                };
                let mut all = fixture_json("endpointslices.json");
                let items: Vec<Value> = all["items"]
                    .as_array_mut()
                    .unwrap()
                    .drain(..)
                    .filter(|s| {
                        s["metadata"]["namespace"] == "kube-system"
                            && s["metadata"]["labels"]["kubernetes.io/service-name"] == svc
                    })
                    .collect();
                all["items"] = Value::Array(items);
                ok(&all)
            }
            "/api/v1/namespaces/kube-system/configmaps/kube-proxy" => {
                ok(&fixture_json("configmap-kube-proxy.json"))
            }
            _ => {
                if let Some(k) = path
                    .strip_prefix("/api/v1/nodes/node-")
                    .and_then(|k| k.parse::<usize>().ok())
                    .filter(|k| *k < self.spec.nodes)
                {
                    return ok(&self.node(k));
                }
                Reply {
                    code: 404,
                    body: status_body(
                        404,
                        "NotFound",
                        &format!("the server could not find the requested resource ({path})"),
                    ),
                    headers: Vec::new(),
                }
            }
        }
    }
}

//! The Kubernetes view: Pods, Services, EndpointSlices, Nodes, recent Events,
//! the kube-proxy ConfigMap and `/version`, streamed page by page into the
//! bundle as compact JSON Lines (see `docs/bundle-format-k8s.md`).
//!
//! Guarantees:
//! - bounded memory: lists are paginated (`limit` + `continue`), every page is
//!   decoded item by item while its body arrives ([`stream`]: a watch cache
//!   ignores `limit`, so one page may hold 15,000 pods) and written to the
//!   artifact sink before the next is requested; only the
//!   pods bound to this node (and the kube-dns service/endpoints) are kept;
//! - never aborts the run: every failure (no config, unreachable, timeout, 401,
//!   403 with the API's own message) is recorded on the artifact it prevented;
//!   after a transport failure the remaining requests are not attempted, so an
//!   unreachable API costs one timeout, not one per artifact;
//! - read-only: only `get`/`list` are issued;
//! - polite to a struggling API server: `--api-scope node` asks only for this
//!   node's objects, every list and get is served from the watch cache
//!   (`resourceVersion=0`), and the [`polite`] layer rate-limits, caps the bytes
//!   and honours `429 Retry-After`; what it cost is in `k8s/api-client.json`.

pub mod polite;
pub mod project;
pub mod runtime;
pub mod step;
pub mod stream;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Event, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, GetParams, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::ObjectList;
use kube::{Client, Config};
use netsnap_bundle::k8s::{
    ApiClientReport, ApiListCost, ApiScope, CLUSTER_LISTS, EventRecord, PodRecord, RuntimePod,
};
use netsnap_bundle::layout;
use netsnap_bundle::{ArtifactSource, ArtifactSpec, ArtifactStatus, BundleWriter, Completion};
use serde::de::DeserializeOwned;

use self::polite::{ApiMeter, MeterReading, PoliteLayer, PoliteLimits};
use self::runtime::{CommandRunner, RuntimeError};

/// Path of the kubelet's own kubeconfig on kubeadm nodes (documented fallback).
pub const KUBELET_KUBECONFIG: &str = "/etc/kubernetes/kubelet.conf";

/// Options of the Kubernetes step.
///
/// Serialized into the manifest's `collection.options` (flattened, under the
/// flag names: `kubeconfig`, `context`, `api_scope`, `run_id`, `api_qps`,
/// `api_burst`, `api_max_bytes`, `api_max_retries`, `start_jitter`); the rest
/// is either recorded elsewhere or not an option of the run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KubeOptions {
    /// `--no-api`: do not talk to the API server at all.
    #[serde(skip)]
    pub no_api: bool,
    /// `--kubeconfig`.
    pub kubeconfig: Option<PathBuf>,
    /// `--context`.
    pub context: Option<String>,
    /// `--node-name`.
    #[serde(skip)]
    pub node_name: Option<String>,
    /// `$NODE_NAME` (downward API in the DaemonSet).
    #[serde(skip)]
    pub node_name_env: Option<String>,
    /// The node's hostname, matched against Node objects when no name is given.
    #[serde(skip)]
    pub hostname: Option<String>,
    /// Objects per page.
    #[serde(skip)]
    pub page_size: u32,
    /// Timeout of one whole list (all its pages) or one get.
    #[serde(skip)]
    pub request_timeout: Duration,
    /// Most recent events kept.
    #[serde(skip)]
    pub max_events: usize,
    /// Also try the kubelet kubeconfig when nothing else is configured.
    #[serde(skip)]
    pub kubelet_fallback: bool,
    /// `--api-scope`: which part of the API view to collect.
    #[serde(rename = "api_scope")]
    pub scope: ApiScope,
    /// `--run-id`: ties the node bundles of one fan-out to its cluster bundle.
    pub run_id: Option<String>,
    /// `--api-qps`: client-side request rate once the burst is spent (0 = unlimited).
    #[serde(rename = "api_qps")]
    pub qps: f64,
    /// `--api-burst`: requests allowed back to back.
    #[serde(rename = "api_burst")]
    pub burst: u32,
    /// `--api-max-bytes`: hard cap on response bytes (None = [`default_max_bytes`] of the scope).
    #[serde(rename = "api_max_bytes")]
    pub max_bytes: Option<u64>,
    /// `--api-max-retries`: most `429` retries of the whole collection.
    #[serde(rename = "api_max_retries")]
    pub max_retries: u32,
    /// `--start-jitter`: the first request waits a per-node share of this, so a
    /// DaemonSet's pods do not all ask at once.
    #[serde(serialize_with = "crate::options::ser_secs")]
    pub start_jitter: Duration,
    /// When the whole API step must be over (None: 3 x `request_timeout` from its start).
    #[serde(skip)]
    pub deadline: Option<tokio::time::Instant>,
}

/// Requests one `node`-scope collection sends when nothing fails and its pods fit
/// one page: `/version`, its Node, its pods, the kube-dns Service and EndpointSlices,
/// the kube-proxy ConfigMap. Independent of the cluster's size; `429` retries come
/// on top, at most `--api-max-retries`.
pub const NODE_SCOPE_REQUESTS: u64 = 6;

/// Default `--api-qps`.
pub const DEFAULT_QPS: f64 = 5.0;
/// Default `--api-burst`.
pub const DEFAULT_BURST: u32 = 10;
/// Default `--api-max-retries`.
pub const DEFAULT_MAX_RETRIES: u32 = 8;

/// The byte cap of a scope when `--api-max-bytes` is not given: a node's own
/// objects fit in a few MiB, the cluster lists of a 150,000-pod cluster do not.
pub fn default_max_bytes(scope: ApiScope) -> u64 {
    match scope {
        ApiScope::Node => 32 << 20,
        ApiScope::Full | ApiScope::Cluster => 2 << 30,
    }
}

/// How lists and gets are read (recorded as `read_mode` and per artifact).
pub const READ_MODE: &str = "watch-cache (resourceVersion=0)";
/// The `resource_version` attribute of every API artifact.
const RESOURCE_VERSION: &str = "0 (watch cache)";

impl Default for KubeOptions {
    fn default() -> Self {
        KubeOptions {
            no_api: false,
            kubeconfig: None,
            context: None,
            node_name: None,
            node_name_env: None,
            hostname: None,
            page_size: 500,
            request_timeout: Duration::from_secs(20),
            max_events: 500,
            kubelet_fallback: true,
            scope: ApiScope::Full,
            run_id: None,
            qps: DEFAULT_QPS,
            burst: DEFAULT_BURST,
            max_bytes: None,
            max_retries: DEFAULT_MAX_RETRIES,
            start_jitter: Duration::ZERO,
            deadline: None,
        }
    }
}

impl KubeOptions {
    /// Fills `node_name_env` from `$NODE_NAME` and `hostname` from the kernel.
    pub fn with_environment(mut self) -> Self {
        self.node_name_env = std::env::var("NODE_NAME").ok().filter(|s| !s.is_empty());
        if self.hostname.is_none() {
            self.hostname = nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok());
        }
        self
    }
}

/// What the API told us that the correlation and DNS steps need.
#[derive(Debug, Clone, Default)]
pub struct KubeOutcome {
    /// True when at least one API request succeeded.
    pub api_reachable: bool,
    /// Where the client configuration came from (`--kubeconfig <path>`, `$KUBECONFIG`, …).
    pub config_source: Option<String>,
    /// The Kubernetes node name of this node, when known.
    pub node_name: Option<String>,
    /// How the node name was found: `option`, `env`, `hostname`.
    pub node_name_source: Option<String>,
    /// `spec.podCIDRs` of this node.
    pub node_pod_cidrs: Vec<String>,
    /// Pods bound to this node (all of them, including hostNetwork ones).
    pub local_pods: Vec<PodRecord>,
    /// True when the API listed this node's pods (`k8s/pods.jsonl` or `k8s/node-pods.jsonl`).
    pub local_pods_listed: bool,
    /// What the collection cost the API server (None when no client was built).
    pub api_report: Option<ApiClientReport>,
    /// kube-system/kube-dns ClusterIPs.
    pub dns_service_ips: Vec<IpAddr>,
    /// Ready endpoint addresses of kube-system/kube-dns.
    pub dns_endpoint_ips: Vec<IpAddr>,
    /// Objects stored per artifact path; absent when the list failed before its first page.
    pub counts: BTreeMap<String, u64>,
    /// One line per artifact that could not be collected.
    pub errors: Vec<String>,
}

/// The kube-dns Service identity.
const DNS_NAMESPACE: &str = "kube-system";
const DNS_SERVICE: &str = "kube-dns";

fn spec(path: &str) -> ArtifactSpec {
    ArtifactSpec::native(path, ArtifactSource::KubernetesApi)
}

/// All the artifacts this step produces from the API in `full` scope, in request order.
pub const API_ARTIFACTS: &[&str] = &[
    layout::k8s::VERSION,
    layout::k8s::NODES,
    layout::k8s::PODS,
    layout::k8s::SERVICES,
    layout::k8s::ENDPOINT_SLICES,
    layout::k8s::EVENTS,
    layout::k8s::KUBE_PROXY_CONFIG,
];

/// The artifacts `node` scope fetches, in request order (the [`CLUSTER_LISTS`] are
/// recorded as skipped).
pub const NODE_API_ARTIFACTS: &[&str] = &[
    layout::k8s::VERSION,
    layout::k8s::NODE,
    layout::k8s::NODE_PODS,
    layout::k8s::KUBE_PROXY_CONFIG,
];

/// The artifacts `cluster` scope fetches, in request order.
pub const CLUSTER_API_ARTIFACTS: &[&str] = &[
    layout::k8s::VERSION,
    layout::k8s::NODES,
    layout::k8s::PODS,
    layout::k8s::SERVICES,
    layout::k8s::ENDPOINT_SLICES,
    layout::k8s::EVENTS,
];

/// The artifacts a scope fetches from the API.
pub fn api_artifacts(scope: ApiScope) -> &'static [&'static str] {
    match scope {
        ApiScope::Full => API_ARTIFACTS,
        ApiScope::Node => NODE_API_ARTIFACTS,
        ApiScope::Cluster => CLUSTER_API_ARTIFACTS,
    }
}

/// Why a `node` scope bundle has no cluster lists (the `error` of their `skipped` records,
/// which the analyzer shows as the reason a rule was not evaluated).
pub fn node_scope_skip_reason(run_id: Option<&str>) -> String {
    match run_id {
        Some(id) => format!(
            "api-scope node: cluster lists are in the cluster bundle of run {id} (analyze it together with this bundle)"
        ),
        None => "api-scope node: cluster lists are not collected per node (collect them once with --api-scope cluster and the same --run-id)".to_string(),
    }
}

/// Why a request failed.
#[derive(Debug, Clone)]
enum Failure {
    /// The API answered with an error status.
    Api(String),
    /// Could not talk to the API at all (refused, reset, DNS, TLS, timeout).
    Transport(String),
}

impl Failure {
    fn reason(&self) -> &str {
        match self {
            Failure::Api(s) | Failure::Transport(s) => s,
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        cur = s.source();
    }
    out
}

fn classify(e: kube::Error, url: &str) -> Failure {
    match e {
        kube::Error::Api(status) => {
            let reason = if status.reason.is_empty() {
                String::new()
            } else {
                format!(" {}", status.reason)
            };
            Failure::Api(format!(
                "HTTP {}{}: {}",
                status.code,
                reason,
                if status.message.is_empty() {
                    "(no message)"
                } else {
                    &status.message
                }
            ))
        }
        kube::Error::SerdeError(e) => Failure::Api(format!("cannot decode the API response: {e}")),
        other => Failure::Transport(format!(
            "cannot reach the API server at {url}: {}",
            error_chain(&other)
        )),
    }
}

fn timeout_failure(timeout: Duration, url: &str, what: &str) -> Failure {
    Failure::Transport(format!(
        "timed out after {:.1}s waiting for the API server at {url} ({what})",
        timeout.as_secs_f64()
    ))
}

/// Builds the client configuration in kubectl's order; returns it with a description of its source.
pub async fn load_config(opts: &KubeOptions) -> Result<(Config, String), String> {
    let kco = KubeConfigOptions {
        context: opts.context.clone(),
        ..KubeConfigOptions::default()
    };
    let from_file = |path: PathBuf, label: String| {
        let kco = kco.clone();
        async move {
            let kc = Kubeconfig::read_from(&path).map_err(|e| {
                format!(
                    "cannot read kubeconfig {}: {}",
                    path.display(),
                    error_chain(&e)
                )
            })?;
            let cfg = Config::from_custom_kubeconfig(kc, &kco)
                .await
                .map_err(|e| {
                    format!("invalid kubeconfig {}: {}", path.display(), error_chain(&e))
                })?;
            Ok::<_, String>((cfg, label))
        }
    };
    if let Some(path) = &opts.kubeconfig {
        return from_file(path.clone(), format!("--kubeconfig {}", path.display())).await;
    }
    if std::env::var_os("KUBECONFIG").is_some_and(|v| !v.is_empty()) {
        // kube honours the colon-separated merge semantics of $KUBECONFIG itself.
        return Config::from_kubeconfig(&kco)
            .await
            .map(|c| (c, "$KUBECONFIG".to_string()))
            .map_err(|e| format!("invalid $KUBECONFIG: {}", error_chain(&e)));
    }
    if let Some(home) = std::env::var_os("HOME") {
        let p = PathBuf::from(home).join(".kube/config");
        if p.is_file() {
            return from_file(p.clone(), format!("{}", p.display())).await;
        }
    }
    let in_cluster = match Config::incluster() {
        Ok(c) => return Ok((c, "in-cluster service account".into())),
        Err(e) => error_chain(&e),
    };
    if opts.kubelet_fallback && std::path::Path::new(KUBELET_KUBECONFIG).is_file() {
        return from_file(
            PathBuf::from(KUBELET_KUBECONFIG),
            format!("kubelet kubeconfig {KUBELET_KUBECONFIG}"),
        )
        .await;
    }
    Err(format!(
        "no Kubernetes client configuration: no --kubeconfig, $KUBECONFIG or ~/.kube/config, and not in a cluster ({in_cluster})"
    ))
}

struct Ctx<'a> {
    writer: &'a BundleWriter,
    client: Client,
    url: String,
    timeout: Duration,
    page_size: u32,
    config_source: String,
    scope: ApiScope,
    run_id: Option<String>,
    meter: Arc<ApiMeter>,
    /// What each artifact cost, in request order.
    costs: Vec<ApiListCost>,
    /// Set after a transport failure: later requests are recorded, not sent.
    dead: Option<String>,
}

/// One list to stream: where, how filtered, and whose objects it holds.
struct ListTarget {
    /// URL path of the list (`/api/v1/pods`).
    url_path: String,
    /// Selectors (limit and continue are added per page).
    base: ListParams,
    /// `cluster` (every object) or `node` (only this node's).
    scope: &'static str,
}

impl ListTarget {
    fn cluster<K: kube::Resource<DynamicType = ()>>() -> Self {
        ListTarget {
            url_path: K::url_path(&(), None),
            base: ListParams::default(),
            scope: "cluster",
        }
    }
}

/// A list request for one page. The first page asks for `resourceVersion=0`
/// (served from the API server's watch cache, not a quorum read from etcd) next
/// to `limit`; kube's `ListParams` drops `resourceVersion=0` when a limit is set,
/// hence the query is extended here. Later pages carry only the continue token
/// (the API refuses a resourceVersion with it).
fn list_request(
    url_path: &str,
    lp: &ListParams,
    first_page: bool,
) -> Result<http::Request<Vec<u8>>, String> {
    let mut req = kube::core::Request::new(url_path)
        .list(lp)
        .map_err(|e| format!("cannot build the list request: {e}"))?;
    if first_page {
        let uri = req.uri().to_string();
        let sep = if uri.contains('?') { '&' } else { '?' };
        *req.uri_mut() = format!("{uri}{sep}resourceVersion=0")
            .parse()
            .map_err(|e| format!("cannot build the list request: {e}"))?;
    }
    Ok(req)
}

impl Ctx<'_> {
    fn spec(&self, path: &str) -> ArtifactSpec {
        let mut spec = spec(path)
            .with_attribute("config_source", self.config_source.clone())
            .with_attribute("api_scope", self.scope.as_str());
        if let Some(id) = &self.run_id {
            spec = spec.with_attribute("run_id", id.clone());
        }
        spec
    }

    /// Starts counting one artifact's cost; the request deadline bounds the layer's waits.
    fn begin(&self, deadline: tokio::time::Instant) -> MeterReading {
        self.meter.set_request_deadline(Some(deadline));
        self.meter.reading()
    }

    /// Ends counting one artifact's cost; returns the attributes to record on it.
    fn end(
        &mut self,
        path: &str,
        scope: &str,
        from: MeterReading,
        objects: u64,
    ) -> Vec<(&'static str, String)> {
        let now = self.meter.reading();
        let cost = ApiListCost {
            path: path.to_string(),
            scope: scope.to_string(),
            resource_version: RESOURCE_VERSION.to_string(),
            requests: now.requests - from.requests,
            bytes: now.bytes - from.bytes,
            objects,
        };
        let attrs = vec![
            ("list_scope", cost.scope.clone()),
            ("resource_version", cost.resource_version.clone()),
            ("requests", cost.requests.to_string()),
            ("bytes", cost.bytes.to_string()),
        ];
        self.costs.push(cost);
        attrs
    }

    /// Turns a client error into a recorded reason, naming the politeness limits
    /// when they were the cause.
    fn failure(&mut self, e: kube::Error) -> Failure {
        if self.meter.cap_hit() {
            let r = format!(
                "cut at the API byte cap of {} bytes (--api-max-bytes)",
                self.meter.limits().max_bytes
            );
            self.dead = Some(r.clone());
            return Failure::Api(r);
        }
        let f = classify(e, &self.url);
        match (f, self.meter.last_refusal()) {
            (Failure::Api(r), Some(why)) if r.starts_with("HTTP 429") => {
                Failure::Api(format!("{r} ({why})"))
            }
            (f, _) => f,
        }
    }

    fn not_attempted(&self) -> Option<String> {
        self.dead.as_ref().map(|d| format!("not attempted: {d}"))
    }

    fn record_failed(&self, path: &str, reason: &str, started: Instant, out: &mut KubeOutcome) {
        self.record_failed_with(path, reason, started, Vec::new(), out);
    }

    fn record_failed_with(
        &self,
        path: &str,
        reason: &str,
        started: Instant,
        attrs: Vec<(&'static str, String)>,
        out: &mut KubeOutcome,
    ) {
        out.errors.push(format!("{path}: {reason}"));
        let mut spec = self.spec(path);
        for (k, v) in attrs {
            spec = spec.with_attribute(k, v);
        }
        if let Err(e) = self.writer.record_missing(
            spec,
            ArtifactStatus::Failed,
            reason,
            Completion {
                duration: started.elapsed(),
                ..Completion::default()
            },
        ) {
            out.errors
                .push(format!("{path}: cannot record failure: {e}"));
        }
    }

    /// Streams every page of a list to `path`, calling `each` on every projected record.
    async fn stream_list<K, R>(
        &mut self,
        path: &str,
        target: ListTarget,
        project: impl Fn(&K) -> Option<R>,
        mut each: impl FnMut(&R),
        out: &mut KubeOutcome,
    ) where
        K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
        R: serde::Serialize,
    {
        let started = Instant::now();
        if let Some(reason) = self.not_attempted() {
            self.record_failed(path, &reason, started, out);
            return;
        }
        let deadline = tokio::time::Instant::now() + self.timeout;
        let from = self.begin(deadline);
        let mut sink = None;
        let mut token: Option<String> = None;
        let mut pages = 0u64;
        let mut objects = 0u64;
        let mut failure: Option<Failure> = None;
        loop {
            let mut lp = target.base.clone().limit(self.page_size);
            if let Some(t) = &token {
                lp = lp.continue_token(t);
            }
            let req = match list_request(&target.url_path, &lp, token.is_none()) {
                Ok(r) => r,
                Err(e) => {
                    failure = Some(Failure::Api(e));
                    break;
                }
            };
            let what = format!("page {} of {path}", pages + 1);
            // Items are projected and written as the page's body arrives (see
            // `stream`): a 15,000-pod page never sits in memory.
            let mut sink_error = None;
            let fetched = {
                let writer = self.writer;
                let spec = self.spec(path);
                let (sink, objects, each, project) = (&mut sink, &mut objects, &mut each, &project);
                let sink_error = &mut sink_error;
                let mut open = move |sink: &mut Option<netsnap_bundle::ArtifactSink>| {
                    if sink.is_none() && sink_error.is_none() {
                        match writer.artifact(spec.clone()) {
                            Ok(s) => *sink = Some(s),
                            Err(e) => *sink_error = Some(e),
                        }
                    }
                };
                let page = stream::list_page::<K>(&self.client, req, |obj| {
                    open(sink);
                    if let (Some(s), Some(rec)) = (sink.as_mut(), project(&obj)) {
                        each(&rec);
                        if serde_json::to_writer(&mut *s, &rec).is_ok() {
                            let _ = s.write_all(b"\n");
                        }
                        *objects += 1;
                    }
                });
                let r = tokio::time::timeout_at(deadline, page).await;
                // An empty page still makes the (empty) artifact.
                if matches!(r, Ok(Ok(_))) {
                    open(sink);
                }
                r
            };
            if let Some(e) = sink_error {
                out.errors.push(format!("{path}: {e}"));
                return;
            }
            if objects > 0 {
                out.api_reachable = true;
            }
            match fetched {
                Ok(Ok(next)) => token = next,
                Ok(Err(e)) => {
                    failure = Some(self.failure(e));
                    break;
                }
                Err(_) => {
                    failure = Some(timeout_failure(self.timeout, &self.url, &what));
                    break;
                }
            }
            pages += 1;
            out.api_reachable = true;
            // With resourceVersion=0 the API server may ignore `limit` and answer
            // everything in one page without a token: that is the whole list.
            if token.is_none() {
                break;
            }
        }
        if sink.is_some() {
            // Only lists that produced an artifact are counted: callers read presence
            // here as "the API gave us this list".
            out.counts.insert(path.to_string(), objects);
        }
        let attrs = self.end(path, target.scope, from, objects);
        match (sink, failure) {
            (None, Some(f)) => {
                if let Failure::Transport(r) = &f {
                    self.dead = Some(r.clone());
                }
                self.record_failed_with(path, f.reason(), started, attrs, out);
            }
            (Some(mut s), f) => {
                for (k, v) in attrs {
                    s.set_attribute(k, v);
                }
                if self.meter.cap_hit() {
                    s.mark_entry_cap();
                }
                let error = f.map(|f| {
                    let r = format!(
                        "list interrupted after {pages} page(s), {objects} object(s): {}",
                        f.reason()
                    );
                    out.errors.push(format!("{path}: {r}"));
                    if let Failure::Transport(t) = &f {
                        self.dead = Some(t.clone());
                    }
                    r
                });
                if let Err(e) = s.finish(Completion {
                    duration: started.elapsed(),
                    error,
                    ..Completion::default()
                }) {
                    out.errors.push(format!("{path}: {e}"));
                }
            }
            (None, None) => {}
        }
    }

    async fn get_version(&mut self, out: &mut KubeOutcome) {
        let path = layout::k8s::VERSION;
        let started = Instant::now();
        if let Some(reason) = self.not_attempted() {
            self.record_failed(path, &reason, started, out);
            return;
        }
        let req = match kube::core::Request::new("").get("version", &GetParams::default()) {
            Ok(r) => r,
            Err(e) => {
                self.record_failed(path, &format!("cannot build request: {e}"), started, out);
                return;
            }
        };
        let from = self.begin(tokio::time::Instant::now() + self.timeout);
        let failure = match tokio::time::timeout(self.timeout, self.client.request_text(req)).await
        {
            Ok(Ok(text)) => {
                out.api_reachable = true;
                let mut spec = self.spec(path);
                for (k, v) in self.end(path, "cluster", from, 1) {
                    spec = spec.with_attribute(k, v);
                }
                spec.kind = netsnap_bundle::ArtifactKind::Raw;
                spec.content = layout::content::FILE.to_string();
                if let Err(e) = self.writer.add_bytes(
                    spec,
                    text.as_bytes(),
                    Completion {
                        duration: started.elapsed(),
                        ..Completion::default()
                    },
                ) {
                    out.errors.push(format!("{path}: {e}"));
                }
                return;
            }
            Ok(Err(e)) => self.failure(e),
            Err(_) => timeout_failure(self.timeout, &self.url, path),
        };
        if let Failure::Transport(r) = &failure {
            self.dead = Some(r.clone());
        }
        let attrs = self.end(path, "cluster", from, 0);
        self.record_failed_with(path, failure.reason(), started, attrs, out);
    }

    /// Gets one object (from the watch cache) and stores it as JSON at `path`, unless
    /// `path` is None (fetched for the collector's own use, only its cost is recorded).
    async fn get_json<T: serde::Serialize>(
        &mut self,
        path: &str,
        store: bool,
        scope: &'static str,
        fut: impl std::future::Future<Output = Result<T, kube::Error>>,
        out: &mut KubeOutcome,
    ) -> Option<T> {
        let started = Instant::now();
        if let Some(reason) = self.not_attempted() {
            if store {
                self.record_failed(path, &reason, started, out);
            } else {
                out.errors.push(format!("{path}: {reason}"));
            }
            return None;
        }
        let from = self.begin(tokio::time::Instant::now() + self.timeout);
        let failure = match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => {
                out.api_reachable = true;
                let attrs = self.end(path, scope, from, 1);
                if store {
                    let mut spec = self.spec(path);
                    for (k, v) in attrs {
                        spec = spec.with_attribute(k, v);
                    }
                    if let Err(e) = self.writer.add_json(spec, &v, started.elapsed()) {
                        out.errors.push(format!("{path}: {e}"));
                    }
                }
                return Some(v);
            }
            Ok(Err(e)) => self.failure(e),
            Err(_) => timeout_failure(self.timeout, &self.url, path),
        };
        if let Failure::Transport(r) = &failure {
            self.dead = Some(r.clone());
        }
        let attrs = self.end(path, scope, from, 0);
        if store {
            self.record_failed_with(path, failure.reason(), started, attrs, out);
        } else {
            out.errors.push(format!("{path}: {}", failure.reason()));
        }
        None
    }
}

fn record_all(
    writer: &BundleWriter,
    opts: &KubeOptions,
    status: ArtifactStatus,
    reason: &str,
    out: &mut KubeOutcome,
) {
    for path in api_artifacts(opts.scope) {
        if status == ArtifactStatus::Failed {
            out.errors.push(format!("{path}: {reason}"));
        }
        if let Err(e) = writer.record_missing(spec(path), status, reason, Completion::default()) {
            out.errors.push(format!("{path}: {e}"));
        }
    }
    if opts.scope == ApiScope::Node {
        record_cluster_lists_skipped(writer, opts.run_id.as_deref(), out);
    }
}

/// `node` scope: the cluster lists are recorded as skipped, with the reason the
/// analyzer shows until the run's cluster bundle is joined in.
fn record_cluster_lists_skipped(
    writer: &BundleWriter,
    run_id: Option<&str>,
    out: &mut KubeOutcome,
) {
    let reason = node_scope_skip_reason(run_id);
    for path in CLUSTER_LISTS {
        let mut spec = spec(path).with_attribute("api_scope", "node");
        if let Some(id) = run_id {
            spec = spec.with_attribute("run_id", id);
        }
        if let Err(e) = writer.record_missing(
            spec,
            ArtifactStatus::Skipped,
            &reason,
            Completion::default(),
        ) {
            out.errors.push(format!("{path}: {e}"));
        }
    }
}

fn short_host(h: &str) -> &str {
    h.split('.').next().unwrap_or(h)
}

/// This node's share of `--start-jitter`: a stable hash of the node and run spreads a
/// DaemonSet's first requests evenly over the window (no randomness to seed).
pub fn start_delay(jitter: Duration, node: &str, run_id: Option<&str>) -> Duration {
    use std::hash::{DefaultHasher, Hash, Hasher};
    if jitter.is_zero() {
        return Duration::ZERO;
    }
    let mut h = DefaultHasher::new();
    node.hash(&mut h);
    run_id.hash(&mut h);
    let fraction = (h.finish() >> 11) as f64 / (1u64 << 53) as f64;
    jitter.mul_f64(fraction)
}

/// Collects the API view into `writer`. Never fails: problems are recorded per artifact.
pub async fn collect_api(writer: &BundleWriter, opts: &KubeOptions) -> KubeOutcome {
    let mut out = KubeOutcome::default();
    let step_started = tokio::time::Instant::now();
    if let Some(n) = opts.node_name.clone().filter(|s| !s.is_empty()) {
        out.node_name = Some(n);
        out.node_name_source = Some("option".into());
    } else if let Some(n) = opts.node_name_env.clone() {
        out.node_name = Some(n);
        out.node_name_source = Some("env".into());
    }
    if opts.no_api {
        record_all(
            writer,
            opts,
            ArtifactStatus::Skipped,
            "--no-api given",
            &mut out,
        );
        return out;
    }
    let (mut config, source) = match load_config(opts).await {
        Ok(c) => c,
        Err(reason) => {
            record_all(writer, opts, ArtifactStatus::Failed, &reason, &mut out);
            return out;
        }
    };
    out.config_source = Some(source.clone());
    // Retries of 5xx would multiply the per-request timeout; one attempt is the honest datum.
    // (429s are retried by the politeness layer, within the deadline.)
    config.default_retry = false;
    config.connect_timeout = Some(opts.request_timeout);
    config.read_timeout = Some(opts.request_timeout);
    let url = config.cluster_url.to_string();
    let deadline = opts
        .deadline
        .unwrap_or_else(|| step_started + opts.request_timeout * 3);
    let limits = PoliteLimits {
        qps: opts.qps,
        burst: opts.burst.max(1),
        max_bytes: opts
            .max_bytes
            .unwrap_or_else(|| default_max_bytes(opts.scope)),
        max_retries: opts.max_retries,
    };
    let meter = ApiMeter::new(limits, deadline);
    let client = match kube::client::ClientBuilder::try_from(config) {
        Ok(b) => b.with_layer(&PoliteLayer::new(meter.clone())).build(),
        Err(e) => {
            let reason = format!("cannot build the API client: {}", error_chain(&e));
            record_all(writer, opts, ArtifactStatus::Failed, &reason, &mut out);
            return out;
        }
    };

    // Spread the fan-out's first requests; never more than half the time left.
    let who = out
        .node_name
        .clone()
        .or_else(|| opts.hostname.clone())
        .unwrap_or_default();
    let delay = start_delay(opts.start_jitter, &who, opts.run_id.as_deref())
        .min(deadline.saturating_duration_since(tokio::time::Instant::now()) / 2);
    if !delay.is_zero() {
        tracing::info!(delay_ms = delay.as_millis() as u64, "start jitter");
        tokio::time::sleep(delay).await;
    }

    let mut ctx = Ctx {
        writer,
        client: client.clone(),
        url,
        timeout: opts.request_timeout,
        page_size: opts.page_size.max(1),
        config_source: source,
        scope: opts.scope,
        run_id: opts.run_id.clone(),
        meter: meter.clone(),
        costs: Vec::new(),
        dead: None,
    };

    // /version first: cheapest reachability check. Stored raw, byte for byte.
    ctx.get_version(&mut out).await;
    match opts.scope {
        ApiScope::Node => collect_node_scope(&mut ctx, &client, opts, &mut out).await,
        ApiScope::Full | ApiScope::Cluster => {
            collect_cluster_lists(&mut ctx, opts, &mut out).await;
        }
    }
    if opts.scope == ApiScope::Full {
        get_kube_proxy_config(&mut ctx, &client, &mut out).await;
    }

    let reading = meter.reading();
    let report = ApiClientReport {
        api_scope: opts.scope,
        run_id: opts.run_id.clone(),
        read_mode: READ_MODE.to_string(),
        qps: limits.qps,
        burst: limits.burst,
        max_bytes: limits.max_bytes,
        max_retries: limits.max_retries,
        start_delay_ms: delay.as_millis() as u64,
        requests: reading.requests,
        bytes: reading.bytes,
        throttled: reading.throttled,
        retry_wait_ms: reading.retry_wait_ms,
        rate_limit_wait_ms: reading.rate_wait_ms,
        byte_cap_hit: meter.cap_hit(),
        lists: std::mem::take(&mut ctx.costs),
    };
    let mut spec = ctx.spec(layout::k8s::API_CLIENT);
    for (k, v) in [
        ("read_mode", READ_MODE.to_string()),
        ("requests", report.requests.to_string()),
        ("bytes", report.bytes.to_string()),
        ("throttled", report.throttled.to_string()),
        ("byte_cap_hit", report.byte_cap_hit.to_string()),
    ] {
        spec = spec.with_attribute(k, v);
    }
    if let Err(e) = writer.add_json(spec, &report, step_started.elapsed()) {
        out.errors.push(format!("{}: {e}", layout::k8s::API_CLIENT));
    }
    out.api_report = Some(report);
    out
}

async fn get_kube_proxy_config(ctx: &mut Ctx<'_>, client: &Client, out: &mut KubeOutcome) {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
    ctx.get_json(
        layout::k8s::KUBE_PROXY_CONFIG,
        true,
        "cluster",
        async move {
            cms.get_with("kube-proxy", &GetParams::any())
                .await
                .map(|c| project::config_map(&c))
        },
        out,
    )
    .await;
}

/// `node` scope: this node's Node and pods, the kube-proxy ConfigMap and the
/// cluster DNS Service; a constant number of requests whatever the cluster size.
async fn collect_node_scope(
    ctx: &mut Ctx<'_>,
    client: &Client,
    opts: &KubeOptions,
    out: &mut KubeOutcome,
) {
    // The kubelet registers its node under the hostname unless told otherwise.
    let name = match out.node_name.clone() {
        Some(n) => n,
        None => {
            let h = opts.hostname.clone().unwrap_or_default().to_lowercase();
            out.node_name = Some(h.clone());
            out.node_name_source = Some("hostname".into());
            h
        }
    };
    let nodes: Api<Node> = Api::all(client.clone());
    let node_name = name.clone();
    if let Some(rec) = ctx
        .get_json(
            layout::k8s::NODE,
            true,
            "node",
            async move {
                nodes
                    .get_with(&node_name, &GetParams::any())
                    .await
                    .map(|n| project::node(&n))
            },
            out,
        )
        .await
    {
        out.node_pod_cidrs = rec.pod_cidrs;
    }

    let mut local = Vec::new();
    ctx.stream_list(
        layout::k8s::NODE_PODS,
        ListTarget {
            url_path: <Pod as kube::Resource>::url_path(&(), None),
            base: ListParams::default().fields(&format!("spec.nodeName={name}")),
            scope: "node",
        },
        |p| Some(project::pod(p)),
        |p: &PodRecord| local.push(p.clone()),
        out,
    )
    .await;
    out.local_pods_listed = out.counts.contains_key(layout::k8s::NODE_PODS);
    out.local_pods = local;

    // The cluster DNS Service and its slices, for the probes (not stored: the cluster
    // bundle has every Service and EndpointSlice).
    let svcs: Api<Service> = Api::namespaced(client.clone(), DNS_NAMESPACE);
    if let Some(svc) = ctx
        .get_json(
            "kube-system/kube-dns Service",
            false,
            "cluster",
            async move {
                svcs.get_with(DNS_SERVICE, &GetParams::any())
                    .await
                    .map(|s| project::service(&s))
            },
            out,
        )
        .await
    {
        out.dns_service_ips = svc
            .cluster_ips
            .iter()
            .filter_map(|ip| ip.parse::<IpAddr>().ok())
            .collect();
    }
    let slices_path = "kube-system/kube-dns EndpointSlices";
    let lp = ListParams::default()
        .labels(&format!("kubernetes.io/service-name={DNS_SERVICE}"))
        .limit(ctx.page_size);
    let url_path = <EndpointSlice as kube::Resource>::url_path(&(), Some(DNS_NAMESPACE));
    let client2 = client.clone();
    let slices = ctx
        .get_json(
            slices_path,
            false,
            "cluster",
            async move {
                let req = list_request(&url_path, &lp, true)
                    .map_err(|e| kube::Error::Service(std::io::Error::other(e).into()))?;
                client2.request::<ObjectList<EndpointSlice>>(req).await
            },
            out,
        )
        .await;
    if let Some(slices) = slices {
        let mut eps = BTreeSet::new();
        for s in slices.items.iter().map(project::endpoint_slice) {
            for ep in &s.endpoints {
                // kube-proxy treats a missing `ready` as ready.
                if ep.ready != Some(false) {
                    eps.extend(ep.addresses.iter().filter_map(|a| a.parse::<IpAddr>().ok()));
                }
            }
        }
        out.dns_endpoint_ips = eps.into_iter().collect();
    }

    get_kube_proxy_config(ctx, client, out).await;
    record_cluster_lists_skipped(ctx.writer, opts.run_id.as_deref(), out);
}

/// `full` and `cluster` scopes: the cluster-wide lists, each once.
async fn collect_cluster_lists(ctx: &mut Ctx<'_>, opts: &KubeOptions, out: &mut KubeOutcome) {
    // Nodes: resolve this node's name and podCIDRs while streaming.
    let hostname = opts.hostname.clone().unwrap_or_default();
    let wanted = out.node_name.clone();
    let mut by_name: Option<(String, Vec<String>)> = None;
    let mut by_host: Option<(String, Vec<String>)> = None;
    let resolve = opts.scope == ApiScope::Full;
    ctx.stream_list(
        layout::k8s::NODES,
        ListTarget::cluster::<Node>(),
        |n| Some(project::node(n)),
        |n| {
            if !resolve {
                return;
            }
            if wanted.as_deref() == Some(n.name.as_str()) {
                by_name = Some((n.name.clone(), n.pod_cidrs.clone()));
            } else if wanted.is_none()
                && !hostname.is_empty()
                && by_host.is_none()
                && (n.name == hostname
                    || n.addresses
                        .iter()
                        .any(|a| a.type_ == "Hostname" && a.address == hostname)
                    || short_host(&n.name) == short_host(&hostname))
            {
                by_host = Some((n.name.clone(), n.pod_cidrs.clone()));
            }
        },
        out,
    )
    .await;
    if let Some((_, cidrs)) = by_name {
        out.node_pod_cidrs = cidrs;
    } else if let Some((name, cidrs)) = by_host {
        out.node_name = Some(name);
        out.node_name_source = Some("hostname".into());
        out.node_pod_cidrs = cidrs;
    }

    // Pods of all namespaces; keep only this node's in memory.
    let node = out.node_name.clone().filter(|_| resolve);
    let mut local = Vec::new();
    ctx.stream_list(
        layout::k8s::PODS,
        ListTarget::cluster::<Pod>(),
        |p| Some(project::pod(p)),
        |p: &PodRecord| {
            if node.is_some() && p.node_name == node {
                local.push(p.clone());
            }
        },
        out,
    )
    .await;
    out.local_pods = local;
    out.local_pods_listed = resolve && out.counts.contains_key(layout::k8s::PODS);

    let mut dns_ips = Vec::new();
    ctx.stream_list(
        layout::k8s::SERVICES,
        ListTarget::cluster::<Service>(),
        |s| Some(project::service(s)),
        |s| {
            if s.namespace == DNS_NAMESPACE && s.name == DNS_SERVICE {
                dns_ips.extend(
                    s.cluster_ips
                        .iter()
                        .filter_map(|ip| ip.parse::<IpAddr>().ok()),
                );
            }
        },
        out,
    )
    .await;
    out.dns_service_ips = dns_ips;

    let mut dns_eps = BTreeSet::new();
    ctx.stream_list(
        layout::k8s::ENDPOINT_SLICES,
        ListTarget::cluster::<EndpointSlice>(),
        |s| Some(project::endpoint_slice(s)),
        |s| {
            if s.namespace == DNS_NAMESPACE && s.service_name.as_deref() == Some(DNS_SERVICE) {
                for ep in &s.endpoints {
                    // kube-proxy treats a missing `ready` as ready.
                    if ep.ready != Some(false) {
                        dns_eps
                            .extend(ep.addresses.iter().filter_map(|a| a.parse::<IpAddr>().ok()));
                    }
                }
            }
        },
        out,
    )
    .await;
    out.dns_endpoint_ips = dns_eps.into_iter().collect();

    collect_events(ctx, opts, out).await;
}

/// Events about pods (field selector), filtered to reasons of interest and to this
/// node's pods, the most recent `max_events` kept.
async fn collect_events(ctx: &mut Ctx<'_>, opts: &KubeOptions, out: &mut KubeOutcome) {
    let path = layout::k8s::EVENTS;
    let started = Instant::now();
    let local: BTreeSet<String> = out
        .local_pods
        .iter()
        .map(|p| format!("Pod {}/{}", p.namespace, p.name))
        .collect();
    // The cluster bundle keeps the events of every node; a full bundle only this node's.
    let node = out
        .node_name
        .clone()
        .filter(|_| ctx.scope == ApiScope::Full);
    let url_path = <Event as kube::Resource>::url_path(&(), None);
    let base = ListParams::default().fields("involvedObject.kind=Pod");
    // Events are filtered and ranked by recency before storing, so they are buffered
    // (bounded by 2 * max_events) instead of streamed.
    let mut kept: Vec<EventRecord> = Vec::new();
    let max = opts.max_events.max(1);
    let mut dead = ctx.dead.clone();
    let mut failure = None;
    let deadline = tokio::time::Instant::now() + ctx.timeout;
    let from = ctx.begin(deadline);
    let mut token: Option<String> = None;
    let mut pages = 0u32;
    if dead.is_none() {
        loop {
            let mut lp = base.clone().limit(ctx.page_size);
            if let Some(t) = &token {
                lp = lp.continue_token(t);
            }
            let req = match list_request(&url_path, &lp, token.is_none()) {
                Ok(r) => r,
                Err(e) => {
                    failure = Some(Failure::Api(e));
                    break;
                }
            };
            let keep = |e: Event| {
                let rec = project::event(&e);
                if !project::EVENT_REASONS.contains(&rec.reason.as_str()) {
                    return;
                }
                let host = e.source.as_ref().and_then(|s| s.host.clone());
                let mine = match &node {
                    None => true,
                    Some(n) => local.contains(&rec.involved_object) || host.as_deref() == Some(n),
                };
                if mine {
                    kept.push(rec);
                    if kept.len() > 2 * max {
                        kept.sort_by_key(|e| std::cmp::Reverse(e.last_seen));
                        kept.truncate(max);
                    }
                }
            };
            let fetched = tokio::time::timeout_at(
                deadline,
                stream::list_page::<Event>(&ctx.client, req, keep),
            )
            .await;
            match fetched {
                Ok(Ok(next)) => token = next,
                Ok(Err(e)) => {
                    failure = Some(ctx.failure(e));
                    break;
                }
                Err(_) => {
                    failure = Some(timeout_failure(
                        ctx.timeout,
                        &ctx.url,
                        &format!("page {} of {path}", pages + 1),
                    ));
                    break;
                }
            }
            pages += 1;
            out.api_reachable = true;
            if token.is_none() {
                break;
            }
        }
    }
    if let Some(Failure::Transport(r)) = &failure {
        ctx.dead = Some(r.clone());
    }
    if let Some(d) = dead.take() {
        failure = Some(Failure::Transport(format!("not attempted: {d}")));
    }
    kept.sort_by_key(|e| std::cmp::Reverse(e.last_seen));
    kept.truncate(max);
    let attrs = ctx.end(path, "cluster", from, kept.len() as u64);
    if pages == 0 {
        let reason = failure.map(|f| f.reason().to_string()).unwrap_or_default();
        ctx.record_failed_with(path, &reason, started, attrs, out);
        return;
    }
    out.counts.insert(path.to_string(), kept.len() as u64);
    let mut spec = ctx.spec(path);
    for (k, v) in attrs {
        spec = spec.with_attribute(k, v);
    }
    let mut sink = match ctx.writer.artifact(spec) {
        Ok(s) => s,
        Err(e) => {
            out.errors.push(format!("{path}: {e}"));
            return;
        }
    };
    for rec in &kept {
        if serde_json::to_writer(&mut sink, rec).is_ok() {
            let _ = sink.write_all(b"\n");
        }
    }
    let error = failure.map(|f| format!("list interrupted after {pages} page(s): {}", f.reason()));
    if let Err(e) = sink.finish(Completion {
        duration: started.elapsed(),
        error,
        ..Completion::default()
    }) {
        out.errors.push(format!("{path}: {e}"));
    }
}

/// Lists sandboxes from the container runtime into `k8s/runtime-pods.jsonl`
/// (source `runtime`). Used when the API is unavailable, or to confirm correlations.
pub async fn collect_runtime(writer: &BundleWriter, runner: &dyn CommandRunner) -> Vec<RuntimePod> {
    let started = Instant::now();
    let path = layout::k8s::RUNTIME_PODS;
    let base = ArtifactSpec::native(path, ArtifactSource::Runtime);
    match runtime::list_runtime_pods(runner).await {
        Ok(listing) => {
            let mut spec = base.with_attribute("runtime", listing.runtime.clone());
            spec.command = Some(listing.command.clone());
            let mut buf = Vec::new();
            for p in &listing.pods {
                if serde_json::to_writer(&mut buf, p).is_ok() {
                    buf.push(b'\n');
                }
            }
            let error = (!listing.warnings.is_empty()).then(|| listing.warnings.join("; "));
            let _ = writer.add_bytes(
                spec,
                &buf,
                Completion {
                    duration: started.elapsed(),
                    error,
                    ..Completion::default()
                },
            );
            listing.pods
        }
        Err(RuntimeError::NotInstalled) => {
            let _ = writer.record_missing(
                base,
                ArtifactStatus::Unavailable,
                "neither crictl nor docker is installed",
                Completion {
                    duration: started.elapsed(),
                    ..Completion::default()
                },
            );
            Vec::new()
        }
        Err(RuntimeError::Failed {
            command,
            reason,
            stderr,
        }) => {
            let mut spec = base;
            spec.command = Some(command.clone());
            let _ = writer.record_missing(
                spec,
                ArtifactStatus::Failed,
                format!("{}: {reason}", command.join(" ")),
                Completion {
                    duration: started.elapsed(),
                    stderr: Some(stderr),
                    ..Completion::default()
                },
            );
            Vec::new()
        }
    }
}

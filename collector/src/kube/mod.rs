//! The Kubernetes view: Pods, Services, EndpointSlices, Nodes, recent Events,
//! the kube-proxy ConfigMap and `/version`, streamed page by page into the
//! bundle as compact JSON Lines (see `docs/bundle-format-k8s.md`).
//!
//! Guarantees:
//! - bounded memory: lists are paginated (`limit` + `continue`) and every page
//!   is written to the artifact sink before the next is requested; only the
//!   pods bound to this node (and the kube-dns service/endpoints) are kept;
//! - never aborts the run: every failure (no config, unreachable, timeout, 401,
//!   403 with the API's own message) is recorded on the artifact it prevented;
//!   after a transport failure the remaining requests are not attempted, so an
//!   unreachable API costs one timeout, not one per artifact;
//! - read-only: only `get`/`list` are issued.

pub mod project;
pub mod runtime;
pub mod step;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Event, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, GetParams, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use netsnap_bundle::k8s::{EventRecord, PodRecord, RuntimePod};
use netsnap_bundle::layout;
use netsnap_bundle::{ArtifactSource, ArtifactSpec, ArtifactStatus, BundleWriter, Completion};
use serde::de::DeserializeOwned;

use self::runtime::{CommandRunner, RuntimeError};

/// Path of the kubelet's own kubeconfig on kubeadm nodes (documented fallback).
pub const KUBELET_KUBECONFIG: &str = "/etc/kubernetes/kubelet.conf";

/// Options of the Kubernetes step.
#[derive(Debug, Clone)]
pub struct KubeOptions {
    /// `--no-api`: do not talk to the API server at all.
    pub no_api: bool,
    /// `--kubeconfig`.
    pub kubeconfig: Option<PathBuf>,
    /// `--context`.
    pub context: Option<String>,
    /// `--node-name`.
    pub node_name: Option<String>,
    /// `$NODE_NAME` (downward API in the DaemonSet).
    pub node_name_env: Option<String>,
    /// The node's hostname, matched against Node objects when no name is given.
    pub hostname: Option<String>,
    /// Objects per page.
    pub page_size: u32,
    /// Timeout of one whole list (all its pages) or one get.
    pub request_timeout: Duration,
    /// Most recent events kept.
    pub max_events: usize,
    /// Also try the kubelet kubeconfig when nothing else is configured.
    pub kubelet_fallback: bool,
}

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

/// All the artifacts this step produces from the API, in request order.
pub const API_ARTIFACTS: &[&str] = &[
    layout::k8s::VERSION,
    layout::k8s::NODES,
    layout::k8s::PODS,
    layout::k8s::SERVICES,
    layout::k8s::ENDPOINT_SLICES,
    layout::k8s::EVENTS,
    layout::k8s::KUBE_PROXY_CONFIG,
];

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
    /// Set after a transport failure: later requests are recorded, not sent.
    dead: Option<String>,
}

impl Ctx<'_> {
    fn spec(&self, path: &str) -> ArtifactSpec {
        spec(path).with_attribute("config_source", self.config_source.clone())
    }

    fn record_failed(&self, path: &str, reason: &str, started: Instant, out: &mut KubeOutcome) {
        out.errors.push(format!("{path}: {reason}"));
        if let Err(e) = self.writer.record_missing(
            self.spec(path),
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
        api: Api<K>,
        base: ListParams,
        project: impl Fn(&K) -> Option<R>,
        mut each: impl FnMut(&R),
        out: &mut KubeOutcome,
    ) where
        K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
        R: serde::Serialize,
    {
        let started = Instant::now();
        if let Some(dead) = &self.dead {
            let reason = format!("not attempted: {dead}");
            self.record_failed(path, &reason, started, out);
            return;
        }
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut sink = None;
        let mut token: Option<String> = None;
        let mut pages = 0u64;
        let mut objects = 0u64;
        let mut failure: Option<Failure> = None;
        loop {
            let mut lp = base.clone().limit(self.page_size);
            if let Some(t) = &token {
                lp = lp.continue_token(t);
            }
            let what = format!("page {} of {path}", pages + 1);
            let page = match tokio::time::timeout_at(deadline, api.list(&lp)).await {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => {
                    failure = Some(classify(e, &self.url));
                    break;
                }
                Err(_) => {
                    failure = Some(timeout_failure(self.timeout, &self.url, &what));
                    break;
                }
            };
            pages += 1;
            out.api_reachable = true;
            if sink.is_none() {
                match self.writer.artifact(self.spec(path)) {
                    Ok(s) => sink = Some(s),
                    Err(e) => {
                        out.errors.push(format!("{path}: {e}"));
                        return;
                    }
                }
            }
            if let Some(s) = sink.as_mut() {
                for obj in &page.items {
                    if let Some(rec) = project(obj) {
                        each(&rec);
                        if serde_json::to_writer(&mut *s, &rec).is_ok() {
                            let _ = s.write_all(b"\n");
                        }
                        objects += 1;
                    }
                }
            }
            token = page.metadata.continue_.filter(|t| !t.is_empty());
            if token.is_none() {
                break;
            }
        }
        if sink.is_some() {
            // Only lists that produced an artifact are counted: callers read presence
            // here as "the API gave us this list".
            out.counts.insert(path.to_string(), objects);
        }
        match (sink, failure) {
            (None, Some(f)) => {
                if let Failure::Transport(r) = &f {
                    self.dead = Some(r.clone());
                }
                self.record_failed(path, f.reason(), started, out);
            }
            (Some(s), f) => {
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
        if let Some(dead) = &self.dead {
            let reason = format!("not attempted: {dead}");
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
        let failure = match tokio::time::timeout(self.timeout, self.client.request_text(req)).await
        {
            Ok(Ok(text)) => {
                out.api_reachable = true;
                let mut spec = self.spec(path);
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
            Ok(Err(e)) => classify(e, &self.url),
            Err(_) => timeout_failure(self.timeout, &self.url, path),
        };
        if let Failure::Transport(r) = &failure {
            self.dead = Some(r.clone());
        }
        self.record_failed(path, failure.reason(), started, out);
    }

    async fn get_json<T: serde::Serialize>(
        &mut self,
        path: &str,
        fut: impl std::future::Future<Output = Result<T, kube::Error>>,
        out: &mut KubeOutcome,
    ) -> Option<T> {
        let started = Instant::now();
        if let Some(dead) = &self.dead {
            let reason = format!("not attempted: {dead}");
            self.record_failed(path, &reason, started, out);
            return None;
        }
        let failure = match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => {
                out.api_reachable = true;
                if let Err(e) = self.writer.add_json(self.spec(path), &v, started.elapsed()) {
                    out.errors.push(format!("{path}: {e}"));
                }
                return Some(v);
            }
            Ok(Err(e)) => classify(e, &self.url),
            Err(_) => timeout_failure(self.timeout, &self.url, path),
        };
        if let Failure::Transport(r) = &failure {
            self.dead = Some(r.clone());
        }
        self.record_failed(path, failure.reason(), started, out);
        None
    }
}

fn record_all(writer: &BundleWriter, status: ArtifactStatus, reason: &str, out: &mut KubeOutcome) {
    for path in API_ARTIFACTS {
        if status == ArtifactStatus::Failed {
            out.errors.push(format!("{path}: {reason}"));
        }
        if let Err(e) = writer.record_missing(spec(path), status, reason, Completion::default()) {
            out.errors.push(format!("{path}: {e}"));
        }
    }
}

fn short_host(h: &str) -> &str {
    h.split('.').next().unwrap_or(h)
}

/// Collects the API view into `writer`. Never fails: problems are recorded per artifact.
pub async fn collect_api(writer: &BundleWriter, opts: &KubeOptions) -> KubeOutcome {
    let mut out = KubeOutcome::default();
    if let Some(n) = opts.node_name.clone().filter(|s| !s.is_empty()) {
        out.node_name = Some(n);
        out.node_name_source = Some("option".into());
    } else if let Some(n) = opts.node_name_env.clone() {
        out.node_name = Some(n);
        out.node_name_source = Some("env".into());
    }
    if opts.no_api {
        record_all(writer, ArtifactStatus::Skipped, "--no-api given", &mut out);
        return out;
    }
    let (mut config, source) = match load_config(opts).await {
        Ok(c) => c,
        Err(reason) => {
            record_all(writer, ArtifactStatus::Failed, &reason, &mut out);
            return out;
        }
    };
    out.config_source = Some(source.clone());
    // Retries of 5xx would multiply the per-request timeout; one attempt is the honest datum.
    config.default_retry = false;
    config.connect_timeout = Some(opts.request_timeout);
    config.read_timeout = Some(opts.request_timeout);
    let url = config.cluster_url.to_string();
    let client = match Client::try_from(config) {
        Ok(c) => c,
        Err(e) => {
            let reason = format!("cannot build the API client: {}", error_chain(&e));
            record_all(writer, ArtifactStatus::Failed, &reason, &mut out);
            return out;
        }
    };
    let mut ctx = Ctx {
        writer,
        client: client.clone(),
        url,
        timeout: opts.request_timeout,
        page_size: opts.page_size.max(1),
        config_source: source,
        dead: None,
    };

    // /version first: cheapest reachability check. Stored raw, byte for byte.
    ctx.get_version(&mut out).await;

    // Nodes: resolve this node's name and podCIDRs while streaming.
    let hostname = opts.hostname.clone().unwrap_or_default();
    let wanted = out.node_name.clone();
    let mut by_name: Option<(String, Vec<String>)> = None;
    let mut by_host: Option<(String, Vec<String>)> = None;
    ctx.stream_list(
        layout::k8s::NODES,
        Api::<Node>::all(client.clone()),
        ListParams::default(),
        |n| Some(project::node(n)),
        |n| {
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
        &mut out,
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
    let node = out.node_name.clone();
    let mut local = Vec::new();
    ctx.stream_list(
        layout::k8s::PODS,
        Api::<Pod>::all(client.clone()),
        ListParams::default(),
        |p| Some(project::pod(p)),
        |p: &PodRecord| {
            if node.is_some() && p.node_name == node {
                local.push(p.clone());
            }
        },
        &mut out,
    )
    .await;
    out.local_pods = local;

    let mut dns_ips = Vec::new();
    ctx.stream_list(
        layout::k8s::SERVICES,
        Api::<Service>::all(client.clone()),
        ListParams::default(),
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
        &mut out,
    )
    .await;
    out.dns_service_ips = dns_ips;

    let mut dns_eps = BTreeSet::new();
    ctx.stream_list(
        layout::k8s::ENDPOINT_SLICES,
        Api::<EndpointSlice>::all(client.clone()),
        ListParams::default(),
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
        &mut out,
    )
    .await;
    out.dns_endpoint_ips = dns_eps.into_iter().collect();

    collect_events(&mut ctx, &client, opts, &mut out).await;

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
    ctx.get_json(
        layout::k8s::KUBE_PROXY_CONFIG,
        async move { cms.get("kube-proxy").await.map(|c| project::config_map(&c)) },
        &mut out,
    )
    .await;
    out
}

/// Events about pods (field selector), filtered to reasons of interest and to this
/// node's pods, the most recent `max_events` kept.
async fn collect_events(
    ctx: &mut Ctx<'_>,
    client: &Client,
    opts: &KubeOptions,
    out: &mut KubeOutcome,
) {
    let path = layout::k8s::EVENTS;
    let started = Instant::now();
    let local: BTreeSet<String> = out
        .local_pods
        .iter()
        .map(|p| format!("Pod {}/{}", p.namespace, p.name))
        .collect();
    let node = out.node_name.clone();
    let api: Api<Event> = Api::all(client.clone());
    let base = ListParams::default().fields("involvedObject.kind=Pod");
    // Events are filtered and ranked by recency before storing, so they are buffered
    // (bounded by 2 * max_events) instead of streamed.
    let mut kept: Vec<EventRecord> = Vec::new();
    let max = opts.max_events.max(1);
    let mut dead = ctx.dead.clone();
    let mut failure = None;
    let deadline = tokio::time::Instant::now() + ctx.timeout;
    let mut token: Option<String> = None;
    let mut pages = 0u32;
    if dead.is_none() {
        loop {
            let mut lp = base.clone().limit(ctx.page_size);
            if let Some(t) = &token {
                lp = lp.continue_token(t);
            }
            let page = match tokio::time::timeout_at(deadline, api.list(&lp)).await {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => {
                    failure = Some(classify(e, &ctx.url));
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
            };
            pages += 1;
            out.api_reachable = true;
            for e in &page.items {
                let rec = project::event(e);
                if !project::EVENT_REASONS.contains(&rec.reason.as_str()) {
                    continue;
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
            }
            token = page.metadata.continue_.filter(|t| !t.is_empty());
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
    if pages == 0 {
        let reason = failure.map(|f| f.reason().to_string()).unwrap_or_default();
        ctx.record_failed(path, &reason, started, out);
        return;
    }
    kept.sort_by_key(|e| std::cmp::Reverse(e.last_seen));
    kept.truncate(max);
    out.counts.insert(path.to_string(), kept.len() as u64);
    let mut sink = match ctx.writer.artifact(ctx.spec(path)) {
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

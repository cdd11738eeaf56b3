//! Runner steps: the Kubernetes view (phase `Capture`) and the pod
//! correlation + DNS probes (phase `Derive`, after the namespaces and their
//! netlink snapshots are captured).
//!
//! The two steps share a [`KubeShared`] (what the API, or the runtime, said),
//! so the runner needs no knowledge of Kubernetes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use netsnap_bundle::k8s::{PodRecord, RuntimePod};
use netsnap_bundle::layout;

use crate::correlate::{self, CorrelationInput};
use crate::dns::{self, DnsOptions};
use crate::kube::{KubeOptions, KubeOutcome, collect_api, collect_runtime};
use crate::step::{BoxFuture, Phase, RunContext, Step, StepError, Tally};

/// State handed from [`KubeStep`] to [`PodsStep`].
#[derive(Debug, Default)]
pub struct KubeShared {
    outcome: Mutex<Option<KubeOutcome>>,
    runtime: Mutex<Vec<RuntimePod>>,
}

/// Collects the API view, falling back to the container runtime.
#[derive(Debug)]
pub struct KubeStep {
    /// Options.
    pub options: KubeOptions,
    /// Shared with [`PodsStep`].
    pub shared: Arc<KubeShared>,
}

/// Correlates pods with namespaces and probes DNS from some of them.
#[derive(Debug)]
pub struct PodsStep {
    /// DNS options.
    pub dns: DnsOptions,
    /// Shared with [`KubeStep`].
    pub shared: Arc<KubeShared>,
}

/// The two steps, sharing state.
pub fn steps(kube: KubeOptions, dns: DnsOptions) -> (Arc<KubeStep>, Arc<PodsStep>) {
    let shared = Arc::new(KubeShared::default());
    (
        Arc::new(KubeStep {
            options: kube,
            shared: shared.clone(),
        }),
        Arc::new(PodsStep { dns, shared }),
    )
}

impl Step for KubeStep {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    fn run(self: Arc<Self>, ctx: Arc<RunContext>) -> BoxFuture<Result<Tally, StepError>> {
        Box::pin(async move {
            let mut opts = self.options.clone();
            // Never outlive the run: one request may use what is left, at most, and the
            // politeness waits (rate limit, Retry-After) end with the run.
            opts.request_timeout = opts.request_timeout.min(ctx.remaining());
            opts.deadline = Some(tokio::time::Instant::now() + ctx.remaining());
            let out = collect_api(&ctx.writer, &opts).await;
            let mut tally = Tally::default();
            let artifacts = crate::kube::api_artifacts(opts.scope);
            let total = artifacts.len();
            if opts.no_api {
                tally.skipped = total;
            } else {
                let failed = artifacts
                    .iter()
                    .filter(|p| out.errors.iter().any(|e| e.starts_with(&format!("{p}: "))))
                    .count();
                tally.failed = failed;
                tally.ok = total - failed;
                tally.notes.extend(out.errors.iter().take(3).cloned());
            }
            if opts.scope == netsnap_bundle::k8s::ApiScope::Node {
                tally.skipped += netsnap_bundle::k8s::CLUSTER_LISTS.len();
            }
            if let Some(r) = &out.api_report {
                tally.notes.push(format!(
                    "api-scope {}: {} request(s), {} bytes{}",
                    r.api_scope,
                    r.requests,
                    r.bytes,
                    if r.throttled > 0 {
                        format!(", {} throttled (429)", r.throttled)
                    } else {
                        String::new()
                    }
                ));
            }
            // Without a pod list from the API, the runtime says which sandboxes exist
            // (a cluster bundle has no node to ask).
            let pods_ok = !opts.no_api && out.local_pods_listed;
            if !pods_ok && opts.scope != netsnap_bundle::k8s::ApiScope::Cluster {
                let pods = collect_runtime(&ctx.writer, &ctx.exec).await;
                tally.notes.push(format!(
                    "{} sandbox(es) from the container runtime",
                    pods.len()
                ));
                if let Ok(mut g) = self.shared.runtime.lock() {
                    *g = pods;
                }
            }
            if let Some(n) = &out.node_name
                && opts.node_name.is_none()
            {
                ctx.set_node_name(n.clone());
                ctx.note(format!(
                    "node name {n} found via {}",
                    out.node_name_source.as_deref().unwrap_or("?")
                ));
            }
            if let Ok(mut g) = self.shared.outcome.lock() {
                *g = Some(out);
            }
            Ok(tally)
        })
    }
}

fn runtime_as_pods(runtime: &[RuntimePod]) -> Vec<PodRecord> {
    runtime
        .iter()
        .filter(|r| {
            r.state
                .as_deref()
                .is_none_or(|s| s == "SANDBOX_READY" || s == "running")
        })
        .map(|r| PodRecord {
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            uid: r.uid.clone().unwrap_or_default(),
            pod_ips: r.ip.iter().cloned().collect(),
            ..PodRecord::default()
        })
        .collect()
}

impl Step for PodsStep {
    fn name(&self) -> &'static str {
        "pods+dns"
    }

    fn phase(&self) -> Phase {
        Phase::Derive
    }

    fn run(self: Arc<Self>, ctx: Arc<RunContext>) -> BoxFuture<Result<Tally, StepError>> {
        Box::pin(async move {
            let mut tally = Tally::default();
            let kube = self
                .shared
                .outcome
                .lock()
                .ok()
                .and_then(|g| g.clone())
                .unwrap_or_default();
            let runtime = self
                .shared
                .runtime
                .lock()
                .map(|g| g.clone())
                .unwrap_or_default();
            let snaps = ctx.snapshots();
            let index = ctx.netns_index();
            let host_nsids: BTreeMap<String, i32> = index
                .namespaces
                .iter()
                .filter_map(|n| n.host_nsid.map(|id| (n.id.clone(), id)))
                .collect();
            let (veths, _) = crate::netlink::veth_pairs(&snaps, &host_nsids);
            let snapshots: Vec<_> = snaps.values().map(|s| (**s).clone()).collect();
            // From the API when it answered, else from the runtime (no node filter then:
            // the runtime only knows this node's sandboxes).
            let (pods, node_name) = if kube.local_pods_listed {
                (kube.local_pods.clone(), kube.node_name.clone())
            } else {
                (runtime_as_pods(&runtime), None)
            };
            let corr = match correlate::collect(
                &ctx.writer,
                &CorrelationInput {
                    node_name: node_name.as_deref(),
                    index: &index,
                    snapshots: &snapshots,
                    veths: &veths,
                    pods: &pods,
                    pod_cidrs: &kube.node_pod_cidrs,
                    runtime_pods: &runtime,
                },
            ) {
                Ok(c) => {
                    tally.ok += 1;
                    let unmatched = c.pods.iter().filter(|p| p.netns.is_none()).count();
                    tally.notes.push(format!(
                        "{} pod(s), {unmatched} without a netns, {} unowned netns",
                        c.pods.len(),
                        c.unowned_netns.len()
                    ));
                    c
                }
                Err(e) => return Err(StepError::Write(e)),
            };

            let mut dns_opts = self.dns.clone();
            dns_opts.host_root = ctx.options.host_root.clone();
            // Stay inside the run's deadline: attempts x timeout must fit what is left.
            let left = ctx.remaining();
            if dns_opts.timeout * dns_opts.attempts.max(1) > left {
                dns_opts.attempts = 1;
                dns_opts.timeout = dns_opts.timeout.min(left / 2);
            }
            let mut sources = match dns::plan_sources(&corr, &index, &dns_opts) {
                Ok(s) => s,
                Err(e) => {
                    tally.notes.push(e.clone());
                    ctx.note(e);
                    Vec::new()
                }
            };
            // The discovered namespace files are more reliable than guessed paths.
            let netns = ctx.netns();
            for src in &mut sources {
                if let Some(ns) = netns.iter().find(|n| n.id() == src.netns)
                    && let Some(p) = ns.paths.first()
                    && !ns.info.is_host
                {
                    src.ns_path = Some(p.clone());
                }
            }
            let svc = kube.dns_service_ips.clone();
            let eps = kube.dns_endpoint_ips.clone();
            let writer = ctx.writer.clone();
            let report = tokio::task::spawn_blocking(move || {
                dns::collect_dns(&writer, &sources, &svc, &eps, &dns_opts)
            })
            .await
            .map_err(|e| StepError::Other(format!("DNS probe thread failed: {e}")))?;
            if ctx.writer.has_path(layout::dns::PROBES) {
                tally.ok += 1;
            }
            let answered = report
                .probes
                .iter()
                .filter(|p| p.outcome == "answer")
                .count();
            tally.notes.push(format!(
                "{} DNS probe(s), {answered} answered",
                report.probes.len()
            ));
            Ok(tally)
        })
    }
}

//! `pods` and `services`: the Kubernetes objects of the bundle, shown like kubectl,
//! joined with what the node has for them (namespace, veth, endpoints, dataplane).

use std::collections::BTreeMap;

use netsnap_bundle::k8s::{EndpointSliceRecord, PodRecord, ServiceRecord};
use netsnap_bundle::native::{PodCorrelation, PodNetns};
use netsnap_bundle::{Bundle, layout};
use serde::Serialize;

use super::dataplane::{self, Dataplane, PortDataplane};
use super::load::{self, no_data};
use super::table::{Table, human_duration};
use super::{InspectArgs, InspectError, Outcome, emit};

/// The namespace filter: `-A` = all, `-n NS`, else kubectl's default `default`.
fn ns_filter(args: &InspectArgs) -> Option<&str> {
    if args.all_namespaces {
        None
    } else {
        Some(args.namespace.as_deref().unwrap_or("default"))
    }
}

fn age(bundle: &Bundle, created: Option<chrono::DateTime<chrono::Utc>>) -> String {
    created.map_or_else(
        || "<unknown>".into(),
        |c| human_duration(bundle.manifest().collection.finished_at - c),
    )
}

/// One row of the `pods` view.
#[derive(Debug, Serialize)]
pub struct PodRow {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `ready/total` containers.
    pub ready: String,
    /// Phase, or `Terminating`.
    pub status: String,
    /// Restarts.
    pub restarts: u32,
    /// Age at collection time (kubectl format).
    pub age: String,
    /// Pod IPs.
    pub ips: Vec<String>,
    /// Node.
    pub node: Option<String>,
    /// Network namespace id (`host` for hostNetwork pods).
    pub netns: Option<String>,
    /// Host-side veth.
    pub host_veth: Option<String>,
    /// Host-side veth index.
    pub host_veth_index: Option<u32>,
    /// How the namespace was matched.
    pub matched_by: Vec<String>,
}

/// `inspect pods`.
pub fn pods(bundle: &Bundle, args: &InspectArgs) -> Result<Outcome, InspectError> {
    let Some(pods) = load::jsonl::<PodRecord>(bundle, layout::k8s::PODS, "pod record")? else {
        return Ok(Outcome::NoData(no_data("pods", bundle, layout::k8s::PODS)));
    };
    let corr = match load::pod_correlation(bundle)? {
        Some(c) => Some(c),
        None => derive_correlation(bundle, &pods)?,
    };
    let by_pod: BTreeMap<&str, _> = corr
        .as_ref()
        .map(|c| c.pods.iter().map(|p| (p.pod.as_str(), p)).collect())
        .unwrap_or_default();
    let filter = ns_filter(args);
    let mut rows: Vec<PodRow> = pods
        .iter()
        .filter(|p| filter.is_none_or(|n| p.namespace == n))
        .map(|p| {
            let key = format!("{}/{}", p.namespace, p.name);
            let c = by_pod.get(key.as_str());
            let netns = if p.host_network {
                Some(layout::HOST_NETNS.to_string())
            } else {
                c.and_then(|c| c.netns.clone())
            };
            PodRow {
                namespace: p.namespace.clone(),
                name: p.name.clone(),
                ready: format!("{}/{}", p.containers_ready, p.containers_total),
                status: if p.deleted_at.is_some() {
                    "Terminating".into()
                } else {
                    p.phase.clone().unwrap_or_else(|| "Unknown".into())
                },
                restarts: p.restarts,
                age: age(bundle, p.created_at),
                ips: p.pod_ips.clone(),
                node: p.node_name.clone(),
                netns,
                host_veth: c.and_then(|c| c.host_veth.clone()),
                host_veth_index: c.and_then(|c| c.host_veth_index),
                matched_by: c.map(|c| c.matched_by.clone()).unwrap_or_default(),
            }
        })
        .collect();
    rows.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let all = args.all_namespaces;
    let have_corr = corr.is_some();
    emit(args, &rows, |rows| {
        let mut h = vec![];
        if all {
            h.push("NAMESPACE");
        }
        h.extend([
            "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NETNS", "VETH",
        ]);
        let mut t = Table::new(&h);
        t.drop_first(&["RESTARTS", "AGE", "READY", "NODE"]);
        for r in rows {
            let unknown = if have_corr { "<none>" } else { "<unknown>" };
            let mut cells = vec![];
            if all {
                cells.push(r.namespace.clone());
            }
            cells.extend([
                r.name.clone(),
                r.ready.clone(),
                r.status.clone(),
                r.restarts.to_string(),
                r.age.clone(),
                r.ips.first().cloned().unwrap_or_else(|| "<none>".into()),
                r.node.clone().unwrap_or_else(|| "<none>".into()),
                r.netns.clone().unwrap_or_else(|| unknown.into()),
                match (&r.host_veth, r.netns.as_deref()) {
                    (Some(v), _) => v.clone(),
                    (None, Some(layout::HOST_NETNS)) => "-".into(),
                    (None, _) => unknown.into(),
                },
            ]);
            t.row(cells);
        }
        if t.is_empty() {
            return match filter {
                Some(n) => format!("No resources found in {n} namespace.\n"),
                None => "No resources found\n".into(),
            };
        }
        t.render()
    })
}

/// Without `correlation/pods.json`, matches pods to namespaces by pod IP and takes
/// the host veth from the (possibly recomputed) veth pairs. None when the bundle
/// has no namespace data to match against.
fn derive_correlation(
    bundle: &Bundle,
    pods: &[PodRecord],
) -> Result<Option<PodCorrelation>, InspectError> {
    let states = load::netns_states(bundle, None)?;
    if states.is_empty() {
        return Ok(None);
    }
    let pairs = load::veth_pairs(bundle, Some(&states))?;
    let mut out = PodCorrelation::default();
    for p in pods.iter().filter(|p| !p.host_network) {
        let found = states
            .iter()
            .filter(|s| s.id != layout::HOST_NETNS)
            .find_map(|s| {
                s.links.links.iter().find_map(|l| {
                    l.addrs
                        .iter()
                        .any(|a| p.pod_ips.iter().any(|ip| *ip == a.address.to_string()))
                        .then_some((s, l))
                })
            });
        let Some((s, l)) = found else { continue };
        let pair = pairs
            .iter()
            .find(|v| v.netns == s.id && v.ifindex == l.index);
        out.pods.push(PodNetns {
            pod: format!("{}/{}", p.namespace, p.name),
            uid: p.uid.clone(),
            pod_ips: p.pod_ips.clone(),
            netns: Some(s.id.clone()),
            matched_by: vec!["ip".into()],
            ifname: Some(l.name.clone()),
            mtu: l.mtu,
            host_veth: pair.map(|v| v.peer_ifname.clone()),
            host_veth_index: pair.map(|v| v.peer_ifindex),
        });
    }
    Ok(Some(out))
}

/// One row of the `services` view.
#[derive(Debug, Serialize)]
pub struct ServiceRow {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Type.
    #[serde(rename = "type")]
    pub type_: String,
    /// Cluster IPs (`None` for headless).
    pub cluster_ips: Vec<String>,
    /// External and load-balancer IPs.
    pub external_ips: Vec<String>,
    /// Ports, kubectl style (`53/UDP`, `80:30080/TCP`).
    pub ports: Vec<String>,
    /// Age at collection time.
    pub age: String,
    /// Ready endpoints `ip:port` (None when the bundle has no EndpointSlices).
    pub endpoints: Option<Vec<String>>,
    /// Not-ready endpoint addresses.
    pub not_ready: Vec<String>,
    /// Summary of what the node's dataplane has for the Service (None when the bundle has no dataplane data).
    pub dataplane: Option<String>,
    /// Per cluster IP and port: what iptables / nftables / IPVS have.
    pub dataplane_ports: Vec<PortDataplane>,
}

fn port_text(p: &netsnap_bundle::k8s::ServicePort) -> String {
    match p.node_port {
        Some(np) => format!("{}:{np}/{}", p.port, p.protocol),
        None => format!("{}/{}", p.port, p.protocol),
    }
}

/// `inspect services`.
pub fn services(bundle: &Bundle, args: &InspectArgs) -> Result<Outcome, InspectError> {
    let Some(svcs) = load::jsonl::<ServiceRecord>(bundle, layout::k8s::SERVICES, "service record")?
    else {
        return Ok(Outcome::NoData(no_data(
            "services",
            bundle,
            layout::k8s::SERVICES,
        )));
    };
    let slices = load::jsonl::<EndpointSliceRecord>(
        bundle,
        layout::k8s::ENDPOINT_SLICES,
        "endpoint slice record",
    )?;
    let dp = Dataplane::from_facts(crate::facts::build::from_bundle_for_views(bundle));
    let filter = ns_filter(args);
    let mut rows: Vec<ServiceRow> = svcs
        .iter()
        .filter(|s| filter.is_none_or(|n| s.namespace == n))
        .map(|s| {
            let (endpoints, not_ready) = match &slices {
                None => (None, Vec::new()),
                Some(sl) => {
                    let mut ready = Vec::new();
                    let mut not_ready = Vec::new();
                    for slice in sl.iter().filter(|x| {
                        x.namespace == s.namespace && x.service_name.as_deref() == Some(&s.name)
                    }) {
                        for ep in &slice.endpoints {
                            // kube-proxy treats an unknown readiness as ready.
                            let is_ready = ep.ready.unwrap_or(true);
                            for a in &ep.addresses {
                                if !is_ready {
                                    not_ready.push(a.clone());
                                    continue;
                                }
                                if slice.ports.is_empty() {
                                    ready.push(a.clone());
                                }
                                for p in &slice.ports {
                                    ready.push(match p.port {
                                        Some(port) if a.contains(':') => format!("[{a}]:{port}"),
                                        Some(port) => format!("{a}:{port}"),
                                        None => a.clone(),
                                    });
                                }
                            }
                        }
                    }
                    ready.sort();
                    ready.dedup();
                    not_ready.sort();
                    not_ready.dedup();
                    (Some(ready), not_ready)
                }
            };
            let ports_dp = if dp.is_empty() {
                Vec::new()
            } else {
                dp.for_service(s)
            };
            let mut external: Vec<String> = s.external_ips.clone();
            external.extend(s.load_balancer_ips.iter().cloned());
            ServiceRow {
                namespace: s.namespace.clone(),
                name: s.name.clone(),
                type_: s.type_.clone(),
                cluster_ips: s.cluster_ips.clone(),
                external_ips: external,
                ports: s.ports.iter().map(port_text).collect(),
                age: age(bundle, s.created_at),
                endpoints,
                not_ready,
                dataplane: (!dp.is_empty()).then(|| dataplane::summarize(&ports_dp)),
                dataplane_ports: ports_dp,
            }
        })
        .collect();
    rows.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let all = args.all_namespaces;
    emit(args, &rows, |rows| {
        let mut h = vec![];
        if all {
            h.push("NAMESPACE");
        }
        h.extend([
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE",
            "ENDPOINTS",
            "DATAPLANE",
        ]);
        let mut t = Table::new(&h);
        t.drop_first(&["EXTERNAL-IP", "AGE", "TYPE"]);
        for r in rows {
            let mut cells = vec![];
            if all {
                cells.push(r.namespace.clone());
            }
            let external = if !r.external_ips.is_empty() {
                r.external_ips.join(",")
            } else if r.type_ == "LoadBalancer" {
                "<pending>".into()
            } else {
                "<none>".into()
            };
            let endpoints = match &r.endpoints {
                None => "<unknown>".into(),
                Some(e) if e.is_empty() => "<none>".into(),
                // Like `kubectl get endpoints`: the first three, then a count.
                Some(e) if e.len() > 3 => format!("{} + {} more...", e[..3].join(","), e.len() - 3),
                Some(e) => e.join(","),
            };
            cells.extend([
                r.name.clone(),
                r.type_.clone(),
                r.cluster_ips
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "None".into()),
                external,
                if r.ports.is_empty() {
                    "<none>".into()
                } else {
                    r.ports.join(",")
                },
                r.age.clone(),
                endpoints,
                r.dataplane.clone().unwrap_or_else(|| "<unknown>".into()),
            ]);
            t.row(cells);
        }
        if t.is_empty() {
            return match filter {
                Some(n) => format!("No resources found in {n} namespace.\n"),
                None => "No resources found\n".into(),
            };
        }
        t.render()
    })
}

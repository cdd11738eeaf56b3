//! Projection of API objects into the compact `netsnap_bundle::k8s` records.
//!
//! Guarantee: only the fields named here leave the API object. Environment
//! values, volumes, secrets and annotations outside
//! [`netsnap_bundle::k8s::ANNOTATION_ALLOW_LIST`] are never copied, because
//! bundles get attached to tickets.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use netsnap_bundle::k8s::{
    ANNOTATION_ALLOW_LIST, Condition, ConfigMapRecord, ContainerPort, EndpointSliceRecord,
    EventRecord, NodeAddress, NodeRecord, OwnerRef, PodRecord, ServicePort, ServiceRecord,
    SliceEndpoint, SlicePort,
};

/// Event reasons worth keeping: they explain sandbox, CNI and DNS trouble.
pub const EVENT_REASONS: &[&str] = &[
    "FailedCreatePodSandBox",
    "FailedKillPod",
    "FailedKillPodSandbox",
    "SandboxChanged",
    "DNSConfigForming",
    "NetworkNotReady",
    "FailedMount",
    "FailedSync",
    "NodeNotReady",
    "Unhealthy",
    "BackOff",
    "Evicted",
];

fn time(t: &Option<Time>) -> Option<DateTime<Utc>> {
    let ts = t.as_ref()?.0;
    DateTime::from_timestamp(ts.as_second(), ts.subsec_nanosecond().try_into().ok()?)
}

fn allowed_annotations(meta: &ObjectMeta) -> BTreeMap<String, String> {
    meta.annotations
        .iter()
        .flatten()
        .filter(|(k, _)| ANNOTATION_ALLOW_LIST.iter().any(|p| k.starts_with(p)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn controller(owners: &Option<Vec<OwnerReference>>) -> Option<OwnerRef> {
    let owners = owners.as_ref()?;
    let o = owners
        .iter()
        .find(|o| o.controller == Some(true))
        .or_else(|| owners.first())?;
    Some(OwnerRef {
        kind: o.kind.clone(),
        name: o.name.clone(),
    })
}

fn name_ns(meta: &ObjectMeta) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// Projects a Pod.
pub fn pod(p: &Pod) -> PodRecord {
    let (namespace, name) = name_ns(&p.metadata);
    let spec = p.spec.as_ref();
    let status = p.status.as_ref();
    let conditions: Vec<Condition> = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .map(|c| Condition {
            type_: c.type_.clone(),
            status: c.status.clone(),
            reason: c.reason.clone(),
        })
        .collect();
    let ready = conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let mut pod_ips: Vec<String> = status
        .and_then(|s| s.pod_ips.as_ref())
        .into_iter()
        .flatten()
        .map(|i| i.ip.clone())
        .collect();
    if pod_ips.is_empty()
        && let Some(ip) = status.and_then(|s| s.pod_ip.clone())
    {
        pod_ips.push(ip);
    }
    let container_ports = spec
        .into_iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .map(|p| ContainerPort {
            name: p.name.clone(),
            container_port: p.container_port,
            protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
        })
        .collect();
    let statuses: Vec<_> = status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .collect();
    let total = spec.map(|s| s.containers.len()).unwrap_or(statuses.len());
    PodRecord {
        namespace,
        name,
        uid: p.metadata.uid.clone().unwrap_or_default(),
        labels: p.metadata.labels.clone().unwrap_or_default(),
        annotations: allowed_annotations(&p.metadata),
        owner: controller(&p.metadata.owner_references),
        node_name: spec.and_then(|s| s.node_name.clone()),
        phase: status.and_then(|s| s.phase.clone()),
        conditions,
        ready,
        pod_ips,
        host_ip: status.and_then(|s| s.host_ip.clone()),
        host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
        container_ports,
        restarts: statuses
            .iter()
            .map(|s| u32::try_from(s.restart_count).unwrap_or(0))
            .sum(),
        containers_ready: statuses.iter().filter(|s| s.ready).count() as u32,
        containers_total: total as u32,
        created_at: time(&p.metadata.creation_timestamp),
        deleted_at: time(&p.metadata.deletion_timestamp),
    }
}

/// Projects a Service.
pub fn service(s: &Service) -> ServiceRecord {
    let (namespace, name) = name_ns(&s.metadata);
    let spec = s.spec.as_ref();
    let mut cluster_ips: Vec<String> = spec.and_then(|s| s.cluster_ips.clone()).unwrap_or_default();
    if cluster_ips.is_empty()
        && let Some(ip) = spec.and_then(|s| s.cluster_ip.clone())
    {
        cluster_ips.push(ip);
    }
    ServiceRecord {
        namespace,
        name,
        uid: s.metadata.uid.clone().unwrap_or_default(),
        type_: spec
            .and_then(|s| s.type_.clone())
            .unwrap_or_else(|| "ClusterIP".into()),
        cluster_ips,
        external_ips: spec
            .and_then(|s| s.external_ips.clone())
            .unwrap_or_default(),
        load_balancer_ips: s
            .status
            .as_ref()
            .and_then(|st| st.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|i| i.ip.clone())
            .collect(),
        ports: spec
            .and_then(|s| s.ports.as_ref())
            .into_iter()
            .flatten()
            .map(|p| ServicePort {
                name: p.name.clone(),
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                port: p.port,
                target_port: p.target_port.as_ref().map(|t| match t {
                    IntOrString::Int(i) => i.to_string(),
                    IntOrString::String(s) => s.clone(),
                }),
                node_port: p.node_port,
            })
            .collect(),
        selector: spec.and_then(|s| s.selector.clone()).unwrap_or_default(),
        external_traffic_policy: spec.and_then(|s| s.external_traffic_policy.clone()),
        internal_traffic_policy: spec.and_then(|s| s.internal_traffic_policy.clone()),
        session_affinity: spec.and_then(|s| s.session_affinity.clone()),
        health_check_node_port: spec.and_then(|s| s.health_check_node_port),
        annotations: allowed_annotations(&s.metadata),
        labels: s.metadata.labels.clone().unwrap_or_default(),
        created_at: time(&s.metadata.creation_timestamp),
    }
}

/// Projects an EndpointSlice.
pub fn endpoint_slice(s: &EndpointSlice) -> EndpointSliceRecord {
    let (namespace, name) = name_ns(&s.metadata);
    EndpointSliceRecord {
        namespace,
        name,
        service_name: s
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("kubernetes.io/service-name").cloned()),
        address_type: s.address_type.clone(),
        endpoints: s
            .endpoints
            .iter()
            .map(|e| SliceEndpoint {
                addresses: e.addresses.clone(),
                ready: e.conditions.as_ref().and_then(|c| c.ready),
                serving: e.conditions.as_ref().and_then(|c| c.serving),
                terminating: e.conditions.as_ref().and_then(|c| c.terminating),
                node_name: e.node_name.clone(),
                target_ref: e.target_ref.as_ref().map(|r| {
                    format!(
                        "{} {}/{}",
                        r.kind.as_deref().unwrap_or(""),
                        r.namespace.as_deref().unwrap_or(""),
                        r.name.as_deref().unwrap_or("")
                    )
                }),
                zone: e.zone.clone(),
            })
            .collect(),
        ports: s
            .ports
            .iter()
            .flatten()
            .map(|p| SlicePort {
                name: p.name.clone(),
                port: p.port,
                protocol: p.protocol.clone(),
            })
            .collect(),
        created_at: time(&s.metadata.creation_timestamp),
    }
}

/// Projects a Node.
pub fn node(n: &Node) -> NodeRecord {
    let spec = n.spec.as_ref();
    let status = n.status.as_ref();
    let info = status.and_then(|s| s.node_info.as_ref());
    let non_empty = |s: &String| (!s.is_empty()).then(|| s.clone());
    let mut pod_cidrs = spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
    if pod_cidrs.is_empty()
        && let Some(c) = spec.and_then(|s| s.pod_cidr.clone())
    {
        pod_cidrs.push(c);
    }
    NodeRecord {
        name: n.metadata.name.clone().unwrap_or_default(),
        uid: n.metadata.uid.clone().unwrap_or_default(),
        pod_cidrs,
        addresses: status
            .and_then(|s| s.addresses.as_ref())
            .into_iter()
            .flatten()
            .map(|a| NodeAddress {
                type_: a.type_.clone(),
                address: a.address.clone(),
            })
            .collect(),
        conditions: status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .map(|c| Condition {
                type_: c.type_.clone(),
                status: c.status.clone(),
                reason: c.reason.clone(),
            })
            .collect(),
        kernel_version: info.and_then(|i| non_empty(&i.kernel_version)),
        kubelet_version: info.and_then(|i| non_empty(&i.kubelet_version)),
        kube_proxy_version: info.and_then(|i| non_empty(&i.kube_proxy_version)),
        container_runtime_version: info.and_then(|i| non_empty(&i.container_runtime_version)),
        os_image: info.and_then(|i| non_empty(&i.os_image)),
        labels: n.metadata.labels.clone().unwrap_or_default(),
    }
}

/// Projects an Event.
pub fn event(e: &Event) -> EventRecord {
    let o = &e.involved_object;
    let last_seen = time(&e.last_timestamp)
        .or_else(|| {
            let ts = e.event_time.as_ref()?.0;
            DateTime::from_timestamp(ts.as_second(), ts.subsec_nanosecond().try_into().ok()?)
        })
        .or_else(|| time(&e.first_timestamp))
        .or_else(|| time(&e.metadata.creation_timestamp));
    EventRecord {
        namespace: e.metadata.namespace.clone().unwrap_or_default(),
        involved_object: format!(
            "{} {}/{}",
            o.kind.as_deref().unwrap_or(""),
            o.namespace.as_deref().unwrap_or(""),
            o.name.as_deref().unwrap_or("")
        ),
        reason: e.reason.clone().unwrap_or_default(),
        message: e.message.clone().unwrap_or_default(),
        type_: e.type_.clone().unwrap_or_default(),
        count: e
            .count
            .or_else(|| e.series.as_ref().and_then(|s| s.count))
            .and_then(|c| u32::try_from(c).ok())
            .unwrap_or(1),
        last_seen,
    }
}

/// Projects a ConfigMap, keeping its data (only used for `kube-system/kube-proxy`).
pub fn config_map(c: &ConfigMap) -> ConfigMapRecord {
    let (namespace, name) = name_ns(&c.metadata);
    ConfigMapRecord {
        namespace,
        name,
        data: c.data.clone().unwrap_or_default(),
    }
}

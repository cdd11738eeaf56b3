//! The compact Kubernetes projection stored under `k8s/` (JSON Lines).
//!
//! Bundles get attached to tickets, so this projection never carries secrets,
//! environment values, volumes, or annotations outside [`ANNOTATION_ALLOW_LIST`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Annotations kept in the projection (prefix match); everything else is dropped.
pub const ANNOTATION_ALLOW_LIST: &[&str] = &[
    "service.kubernetes.io/topology-mode",
    "service.kubernetes.io/topology-aware-hints",
    "endpoints.kubernetes.io/last-change-trigger-time",
    "kubernetes.io/psp",
];

/// A pod.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct PodRecord {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Allow-listed annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Controlling owner.
    #[serde(default)]
    pub owner: Option<OwnerRef>,
    /// `spec.nodeName`.
    #[serde(default)]
    pub node_name: Option<String>,
    /// `status.phase`.
    #[serde(default)]
    pub phase: Option<String>,
    /// `status.conditions`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// True when the `Ready` condition is `True`.
    #[serde(default)]
    pub ready: bool,
    /// `status.podIPs`.
    #[serde(default)]
    pub pod_ips: Vec<String>,
    /// `status.hostIP`.
    #[serde(default)]
    pub host_ip: Option<String>,
    /// `spec.hostNetwork`.
    #[serde(default)]
    pub host_network: bool,
    /// Container ports of all containers.
    #[serde(default)]
    pub container_ports: Vec<ContainerPort>,
    /// Restart count summed over containers.
    #[serde(default)]
    pub restarts: u32,
    /// Ready containers / all containers, like kubectl's READY column.
    #[serde(default)]
    pub containers_ready: u32,
    /// Number of containers.
    #[serde(default)]
    pub containers_total: u32,
    /// `metadata.creationTimestamp`.
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
    /// `metadata.deletionTimestamp`.
    #[serde(default)]
    pub deleted_at: Option<DateTime<Utc>>,
}

/// A controlling owner reference.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct OwnerRef {
    /// Kind (`ReplicaSet`, `DaemonSet`, …).
    pub kind: String,
    /// Name.
    pub name: String,
}

/// A status condition.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Condition {
    /// Condition type.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False`, `Unknown`.
    pub status: String,
    /// Machine-readable reason.
    #[serde(default)]
    pub reason: Option<String>,
}

/// A container port.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ContainerPort {
    /// Port name.
    #[serde(default)]
    pub name: Option<String>,
    /// Port number.
    pub container_port: i32,
    /// `TCP`, `UDP`, `SCTP`.
    pub protocol: String,
}

/// A Service.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ServiceRecord {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
    /// `ClusterIP`, `NodePort`, `LoadBalancer`, `ExternalName`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `spec.clusterIPs` (`None` for headless).
    #[serde(default)]
    pub cluster_ips: Vec<String>,
    /// `spec.externalIPs`.
    #[serde(default)]
    pub external_ips: Vec<String>,
    /// `status.loadBalancer.ingress[].ip`.
    #[serde(default)]
    pub load_balancer_ips: Vec<String>,
    /// Ports.
    #[serde(default)]
    pub ports: Vec<ServicePort>,
    /// `spec.selector` (empty: endpoints are managed by hand).
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
    /// `spec.externalTrafficPolicy`.
    #[serde(default)]
    pub external_traffic_policy: Option<String>,
    /// `spec.internalTrafficPolicy`.
    #[serde(default)]
    pub internal_traffic_policy: Option<String>,
    /// `spec.sessionAffinity`.
    #[serde(default)]
    pub session_affinity: Option<String>,
    /// `spec.healthCheckNodePort`.
    #[serde(default)]
    pub health_check_node_port: Option<i32>,
    /// Allow-listed annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `metadata.creationTimestamp`.
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
}

/// A Service port.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ServicePort {
    /// Port name.
    #[serde(default)]
    pub name: Option<String>,
    /// `TCP`, `UDP`, `SCTP`.
    pub protocol: String,
    /// Service port.
    pub port: i32,
    /// Target port (number or name), as a string.
    #[serde(default)]
    pub target_port: Option<String>,
    /// Node port.
    #[serde(default)]
    pub node_port: Option<i32>,
}

/// An EndpointSlice (`discovery.k8s.io/v1`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct EndpointSliceRecord {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Owning Service name (label `kubernetes.io/service-name`).
    #[serde(default)]
    pub service_name: Option<String>,
    /// `IPv4`, `IPv6`, `FQDN`.
    pub address_type: String,
    /// Endpoints.
    #[serde(default)]
    pub endpoints: Vec<SliceEndpoint>,
    /// Ports.
    #[serde(default)]
    pub ports: Vec<SlicePort>,
    /// `metadata.creationTimestamp`.
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
}

/// One endpoint of a slice.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct SliceEndpoint {
    /// Addresses.
    pub addresses: Vec<String>,
    /// `conditions.ready` (None means unknown, treated as ready by kube-proxy).
    #[serde(default)]
    pub ready: Option<bool>,
    /// `conditions.serving`.
    #[serde(default)]
    pub serving: Option<bool>,
    /// `conditions.terminating`.
    #[serde(default)]
    pub terminating: Option<bool>,
    /// `nodeName`.
    #[serde(default)]
    pub node_name: Option<String>,
    /// `targetRef` as `Kind namespace/name`.
    #[serde(default)]
    pub target_ref: Option<String>,
    /// `zone`.
    #[serde(default)]
    pub zone: Option<String>,
}

/// A port of a slice.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct SlicePort {
    /// Port name (matches the Service port name).
    #[serde(default)]
    pub name: Option<String>,
    /// Port number.
    #[serde(default)]
    pub port: Option<i32>,
    /// `TCP`, `UDP`, `SCTP`.
    #[serde(default)]
    pub protocol: Option<String>,
}

/// A Node.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct NodeRecord {
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
    /// `spec.podCIDRs`.
    #[serde(default)]
    pub pod_cidrs: Vec<String>,
    /// `status.addresses` as `type=address`.
    #[serde(default)]
    pub addresses: Vec<NodeAddress>,
    /// `status.conditions`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// `status.nodeInfo.kernelVersion`.
    #[serde(default)]
    pub kernel_version: Option<String>,
    /// `status.nodeInfo.kubeletVersion`.
    #[serde(default)]
    pub kubelet_version: Option<String>,
    /// `status.nodeInfo.kubeProxyVersion` (deprecated upstream, often empty).
    #[serde(default)]
    pub kube_proxy_version: Option<String>,
    /// `status.nodeInfo.containerRuntimeVersion`.
    #[serde(default)]
    pub container_runtime_version: Option<String>,
    /// `status.nodeInfo.osImage`.
    #[serde(default)]
    pub os_image: Option<String>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A node address.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct NodeAddress {
    /// `InternalIP`, `ExternalIP`, `Hostname`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The address.
    pub address: String,
}

/// An Event about a pod on this node.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct EventRecord {
    /// Namespace.
    pub namespace: String,
    /// `Kind namespace/name` of the involved object.
    pub involved_object: String,
    /// Reason (`FailedCreatePodSandBox`, `DNSConfigForming`, …).
    pub reason: String,
    /// Message.
    #[serde(default)]
    pub message: String,
    /// `Normal` or `Warning`.
    #[serde(rename = "type", default)]
    pub type_: String,
    /// Count.
    #[serde(default)]
    pub count: u32,
    /// Last time seen.
    #[serde(default)]
    pub last_seen: Option<DateTime<Utc>>,
}

/// A ConfigMap kept whole (only `kube-system/kube-proxy`, which holds no secrets).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ConfigMapRecord {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Data.
    pub data: BTreeMap<String, String>,
}

/// A pod sandbox as the container runtime reports it (used when the API is unavailable).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct RuntimePod {
    /// `crictl` or `docker`.
    pub source: String,
    /// Sandbox / pause container id.
    pub id: String,
    /// Pod name.
    pub name: String,
    /// Pod namespace.
    pub namespace: String,
    /// Pod UID.
    #[serde(default)]
    pub uid: Option<String>,
    /// Sandbox state (`SANDBOX_READY`, `running`, …).
    #[serde(default)]
    pub state: Option<String>,
    /// Pod IP reported by the runtime.
    #[serde(default)]
    pub ip: Option<String>,
    /// PID of the sandbox process.
    #[serde(default)]
    pub pid: Option<u32>,
}

/// Which part of the API view a collection asked for (`netsnap-collect --api-scope`),
/// recorded as `collection.options.api_scope`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApiScope {
    /// Cluster-wide lists (from the API server's watch cache) plus this node's objects:
    /// a single-node collection that needs nothing else.
    #[default]
    Full,
    /// Only node-local API data (this node's pods and Node, the kube-proxy ConfigMap,
    /// the cluster DNS Service); the cluster lists come from the run's cluster bundle.
    Node,
    /// Only the cluster-wide lists, once per run; no node-local capture at all.
    Cluster,
}

impl ApiScope {
    /// The word used on the command line and in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiScope::Full => "full",
            ApiScope::Node => "node",
            ApiScope::Cluster => "cluster",
        }
    }
}

impl std::fmt::Display for ApiScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ApiScope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "full" => Ok(ApiScope::Full),
            "node" => Ok(ApiScope::Node),
            "cluster" => Ok(ApiScope::Cluster),
            other => Err(format!(
                "unknown API scope {other:?} (expected full, node or cluster)"
            )),
        }
    }
}

/// The cluster-wide lists: collected by `full` and `cluster` scopes, recorded as
/// `skipped` by `node` scope and taken from the run's cluster bundle by the analyzer.
pub const CLUSTER_LISTS: &[&str] = &[
    crate::layout::k8s::NODES,
    crate::layout::k8s::PODS,
    crate::layout::k8s::SERVICES,
    crate::layout::k8s::ENDPOINT_SLICES,
    crate::layout::k8s::EVENTS,
];

/// The scope and run id a bundle's producer recorded in `collection.options`
/// (`api_scope`, `run_id`); `None` scope for bundles older than the option.
pub fn api_scope_of(manifest: &crate::Manifest) -> (Option<ApiScope>, Option<String>) {
    let o = &manifest.collection.options;
    let scope = o
        .get("api_scope")
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse().ok());
    let run = o
        .get("run_id")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    (scope, run)
}

/// What one collection cost the API server, and under which limits (`k8s/api-client.json`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ApiClientReport {
    /// `full`, `node` or `cluster`.
    pub api_scope: ApiScope,
    /// Id shared by the node bundles and the cluster bundle of one fan-out run.
    #[serde(default)]
    pub run_id: Option<String>,
    /// How lists were read, e.g. `watch-cache (resourceVersion=0)`.
    pub read_mode: String,
    /// Client-side request rate limit (requests per second).
    pub qps: f64,
    /// Requests allowed back to back before the rate limit applies.
    pub burst: u32,
    /// Hard cap on response bytes fetched by this collection.
    pub max_bytes: u64,
    /// Most `429 Too Many Requests` retries of the whole collection.
    pub max_retries: u32,
    /// Delay before the first request (`--start-jitter`), milliseconds.
    pub start_delay_ms: u64,
    /// HTTP requests sent (retries included).
    pub requests: u64,
    /// Response body bytes received.
    pub bytes: u64,
    /// `429` answers received.
    pub throttled: u64,
    /// Time spent waiting for `Retry-After` (or backoff) before retries, milliseconds.
    pub retry_wait_ms: u64,
    /// Time spent waiting for the client-side rate limit, milliseconds.
    pub rate_limit_wait_ms: u64,
    /// True when the byte cap cut a response (the list is then `partial`).
    pub byte_cap_hit: bool,
    /// One entry per API artifact, in request order.
    pub lists: Vec<ApiListCost>,
}

/// What one API artifact cost.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ApiListCost {
    /// Artifact path.
    pub path: String,
    /// `cluster` (every object of the cluster) or `node` (only this node's).
    pub scope: String,
    /// `resourceVersion` semantics: `0 (watch cache)` for lists, `get` for single objects.
    pub resource_version: String,
    /// HTTP requests (pages and retries).
    pub requests: u64,
    /// Response body bytes.
    pub bytes: u64,
    /// Objects stored.
    pub objects: u64,
}

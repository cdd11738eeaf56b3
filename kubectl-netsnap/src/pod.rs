//! The collector pod: one place that decides what runs on the node and with
//! which privileges, and the collector command lines run in it.
//!
//! The pod is privileged with the host's PID and network namespaces and the
//! host root mounted read-only at `/host`; its own root filesystem is read-only
//! and it has no volume that could write to the node, so nothing lands on the
//! node. It tolerates every taint (the sick node is often tainted) and carries
//! no service-account token unless `--api` asks for the read-only RBAC of
//! `deploy/rbac.yaml`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, HostPathVolumeSource, Pod, PodSpec, ResourceRequirements, SecurityContext,
    Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::ObjectMeta;
use sha2::{Digest, Sha256};

/// The collector image used unless `--image` (or `$NETSNAP_IMAGE`) says otherwise.
pub const DEFAULT_IMAGE: &str = concat!(
    "registry.example.invalid/netsnap/netsnap-collect:",
    env!("CARGO_PKG_VERSION")
);
/// Name of the collector container in the pod.
pub const CONTAINER: &str = "collect";
/// The collector binary inside the image (looked up on the image's `PATH`).
pub const COLLECTOR: &str = "netsnap-collect";
/// Where the host's root filesystem is mounted (read-only) in the pod.
pub const HOST_ROOT: &str = "/host";
/// Service account of `deploy/rbac.yaml` (read-only get/list), used only with `--api`.
pub const API_SERVICE_ACCOUNT: &str = "netsnap-collect";
/// Label every plugin pod carries, so leftovers are easy to find and delete.
pub const MANAGED_BY_LABEL: (&str, &str) = ("app.kubernetes.io/managed-by", "kubectl-netsnap");
/// Label carrying the run id.
pub const RUN_ID_LABEL: &str = "netsnap.io/run-id";

/// What the pod for one node needs to know.
#[derive(Debug, Clone)]
pub struct PodPlan {
    /// Pod name (see [`pod_name`]).
    pub name: String,
    /// Namespace of the pod.
    pub namespace: String,
    /// Node the pod is pinned to.
    pub node: String,
    /// Collector image.
    pub image: String,
    /// `Some(service account)` when the collector reads the API; `None`: no token at all.
    pub service_account: Option<String>,
    /// Run id shared by every pod of one plugin invocation.
    pub run_id: String,
    /// The pod ends itself after this many seconds even if the plugin dies (kubelet-enforced).
    pub lifetime_secs: u64,
}

/// A pod name that is unique per run and node, a valid DNS label, and derivable
/// again from (run id, node) so the pod can be deleted even if the create
/// response was lost.
pub fn pod_name(run_id: &str, node: &str) -> String {
    let digest = hex::encode(&Sha256::digest(node.as_bytes())[..3]);
    let mut readable: String = node
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(30)
        .collect();
    while readable.ends_with('-') {
        readable.pop();
    }
    format!("netsnap-{run_id}-{readable}-{digest}")
}

/// The pod for one node.
pub fn collector_pod(plan: &PodPlan) -> Pod {
    let labels = BTreeMap::from([
        (
            "app.kubernetes.io/name".to_string(),
            "netsnap-collect".to_string(),
        ),
        (
            MANAGED_BY_LABEL.0.to_string(),
            MANAGED_BY_LABEL.1.to_string(),
        ),
        (RUN_ID_LABEL.to_string(), plan.run_id.clone()),
    ]);
    let container = Container {
        name: CONTAINER.to_string(),
        image: Some(plan.image.clone()),
        image_pull_policy: Some("IfNotPresent".to_string()),
        // The collector runs over exec; the main process only keeps the pod alive,
        // and no longer than the pod's own deadline.
        command: Some(idle_command(plan.lifetime_secs)),
        security_context: Some(SecurityContext {
            privileged: Some(true),
            run_as_user: Some(0),
            // The container's writable layer lives on the node's disk: keep it read-only.
            read_only_root_filesystem: Some(true),
            ..Default::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: "host".to_string(),
            mount_path: HOST_ROOT.to_string(),
            read_only: Some(true),
            // Network namespaces mounted on the host after the pod started stay visible.
            mount_propagation: Some("HostToContainer".to_string()),
            ..Default::default()
        }]),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), Quantity("50m".to_string())),
                ("memory".to_string(), Quantity("64Mi".to_string())),
            ])),
            limits: Some(BTreeMap::from([(
                "memory".to_string(),
                Quantity("512Mi".to_string()),
            )])),
            ..Default::default()
        }),
        ..Default::default()
    };
    Pod {
        metadata: ObjectMeta {
            name: Some(plan.name.clone()),
            namespace: Some(plan.namespace.clone()),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(
                "netsnap.io/node".to_string(),
                plan.node.clone(),
            )])),
            ..Default::default()
        },
        spec: Some(PodSpec {
            // Bound directly: no scheduler, so a cordoned or full node is still reached.
            node_name: Some(plan.node.clone()),
            host_pid: Some(true),
            host_network: Some(true),
            dns_policy: Some("ClusterFirstWithHostNet".to_string()),
            restart_policy: Some("Never".to_string()),
            enable_service_links: Some(false),
            automount_service_account_token: Some(plan.service_account.is_some()),
            service_account_name: plan.service_account.clone(),
            termination_grace_period_seconds: Some(1),
            active_deadline_seconds: Some(plan.lifetime_secs as i64),
            // The sick node is often tainted (NotReady, unreachable, pressure): tolerate all.
            tolerations: Some(vec![Toleration {
                operator: Some("Exists".to_string()),
                ..Default::default()
            }]),
            containers: vec![container],
            volumes: Some(vec![Volume {
                name: "host".to_string(),
                host_path: Some(HostPathVolumeSource {
                    path: "/".to_string(),
                    // `Directory` only checks; it never creates anything on the node.
                    type_: Some("Directory".to_string()),
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

/// The container's main process: sleeps until the pod's deadline (the image must
/// provide `sleep`; see the README).
pub fn idle_command(secs: u64) -> Vec<String> {
    vec!["sleep".to_string(), secs.to_string()]
}

/// Which Kubernetes API data the collector should gather.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiMode {
    /// `--no-api`: node-local data only.
    None,
    /// Only the node's slice of the API, tagged with the run id (many-node runs).
    NodeScope {
        /// Run id shared with the cluster bundle.
        run_id: String,
    },
    /// Cluster-wide objects, tagged with the run id (one per many-node run).
    ClusterScope {
        /// Run id shared with the node bundles.
        run_id: String,
    },
    /// The collector's default API behaviour (single-node `collect node/NAME --api`).
    Default,
}

/// `netsnap-collect` command line run over exec for a node bundle streamed to stdout.
pub fn node_collect_command(node: &str, api: &ApiMode) -> Vec<String> {
    let mut argv: Vec<String> = [COLLECTOR, "--host-root", HOST_ROOT, "--node-name", node]
        .iter()
        .map(|s| s.to_string())
        .collect();
    argv.extend(api_args(api));
    argv.extend(["-o".to_string(), "-".to_string()]);
    argv
}

/// `netsnap-collect` command line for the cluster-scope bundle streamed to stdout.
pub fn cluster_collect_command(run_id: &str) -> Vec<String> {
    let mut argv = vec![COLLECTOR.to_string()];
    argv.extend(api_args(&ApiMode::ClusterScope {
        run_id: run_id.to_string(),
    }));
    argv.extend(["-o".to_string(), "-".to_string()]);
    argv
}

fn api_args(api: &ApiMode) -> Vec<String> {
    match api {
        ApiMode::None => vec!["--no-api".to_string()],
        ApiMode::Default => vec![],
        ApiMode::NodeScope { run_id } => vec![
            "--api-scope".to_string(),
            "node".to_string(),
            "--run-id".to_string(),
            run_id.clone(),
        ],
        ApiMode::ClusterScope { run_id } => vec![
            "--api-scope".to_string(),
            "cluster".to_string(),
            "--run-id".to_string(),
            run_id.clone(),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_names_are_dns_labels_and_stable() {
        let long = "ip-10-0-12-34.eu-west-1.compute.internal.example.with.a.very.long.suffix";
        let a = pod_name("k3x9q2", long);
        assert_eq!(a, pod_name("k3x9q2", long));
        assert!(a.len() <= 63, "{a} is {} chars", a.len());
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
        // Two nodes sharing a truncated prefix still get different pods.
        let b = pod_name("k3x9q2", &format!("{long}-2"));
        assert_ne!(a, b);
    }

    #[test]
    fn api_flags_use_the_collector_names() {
        let node = node_collect_command(
            "n1",
            &ApiMode::NodeScope {
                run_id: "r1".into(),
            },
        );
        assert_eq!(
            node.join(" "),
            "netsnap-collect --host-root /host --node-name n1 --api-scope node --run-id r1 -o -"
        );
        assert_eq!(
            node_collect_command("n1", &ApiMode::None).join(" "),
            "netsnap-collect --host-root /host --node-name n1 --no-api -o -"
        );
        assert_eq!(
            cluster_collect_command("r1").join(" "),
            "netsnap-collect --api-scope cluster --run-id r1 -o -"
        );
    }
}

//! The lab's own Kubernetes API objects, in the shapes `kubectl get -o json`
//! returns (Pods, Services, EndpointSlices, Nodes, with realistic metadata), so
//! a fake API server can serve exactly the node the harness built.

use std::path::Path;

use serde_json::{Value, json};

use crate::node::{LabNode, LabPod};
use crate::util::{LabError, LabResult, rand_hex, rand_suffix, rand_uuid};

/// The objects describing one lab node.
#[derive(Debug, Clone, Default)]
pub struct ApiObjects {
    /// `v1` Pods (all lab pods, plus ghost pods that have no netns).
    pub pods: Vec<Value>,
    /// `v1` Services.
    pub services: Vec<Value>,
    /// `discovery.k8s.io/v1` EndpointSlices.
    pub endpoint_slices: Vec<Value>,
    /// `v1` Nodes (the lab node).
    pub nodes: Vec<Value>,
    /// `v1` ConfigMaps: `kube-system/kube-proxy` (mode iptables, the lab's cluster CIDR).
    pub config_maps: Vec<Value>,
}

impl ApiObjects {
    /// A `kubectl get -o json`-style list (`PodList`, `ServiceList`, `EndpointSliceList`, `NodeList`).
    pub fn list(kind: &str, api_version: &str, items: &[Value]) -> Value {
        json!({
            "apiVersion": api_version,
            "kind": format!("{kind}List"),
            "metadata": {"resourceVersion": "12345"},
            "items": items,
        })
    }

    /// The four lists, keyed by file name (`pods.json`, `services.json`, `endpointslices.json`, `nodes.json`).
    pub fn lists(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("pods.json", Self::list("Pod", "v1", &self.pods)),
            ("services.json", Self::list("Service", "v1", &self.services)),
            (
                "endpointslices.json",
                Self::list(
                    "EndpointSlice",
                    "discovery.k8s.io/v1",
                    &self.endpoint_slices,
                ),
            ),
            ("nodes.json", Self::list("Node", "v1", &self.nodes)),
            (
                "configmaps.json",
                Self::list("ConfigMap", "v1", &self.config_maps),
            ),
        ]
    }

    /// Writes [`ApiObjects::lists`] as pretty JSON files into `dir`.
    pub fn write_to(&self, dir: &Path) -> LabResult<()> {
        std::fs::create_dir_all(dir)
            .map_err(|e| LabError::io(format!("creating {}", dir.display()), e))?;
        for (file, v) in self.lists() {
            let p = dir.join(file);
            let text = serde_json::to_string_pretty(&v)
                .map_err(|e| LabError::Invalid(format!("serializing {file}: {e}")))?;
            std::fs::write(&p, text)
                .map_err(|e| LabError::io(format!("writing {}", p.display()), e))?;
        }
        Ok(())
    }
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn labels_obj(labels: &[(String, String)]) -> Value {
    Value::Object(
        labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

/// ReplicaSet name of a Deployment-style pod name (`web-7c5ddbdf54-x2x7q` → `web-7c5ddbdf54`).
fn owner_name(pod: &str) -> String {
    match pod.rsplit_once('-') {
        Some((rs, _)) if rs.contains('-') => rs.to_string(),
        _ => pod.to_string(),
    }
}

fn pod_object(node: &LabNode, p: &PodLike<'_>, ts: &str, rv: usize) -> Value {
    let rs = owner_name(p.name);
    let mut labels: Vec<(String, String)> = p.labels.to_vec();
    if let Some((_, hash)) = rs.rsplit_once('-') {
        labels.push(("pod-template-hash".into(), hash.into()));
    }
    let image = if p.namespace == "kube-system" {
        "registry.k8s.io/coredns/coredns:v1.12.1"
    } else {
        "docker.io/library/nginx:1.27"
    };
    let container = if p.namespace == "kube-system" {
        "coredns"
    } else {
        "app"
    };
    let cond = |t: &str| json!({"type": t, "status": "True", "lastProbeTime": null, "lastTransitionTime": ts});
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": p.name,
            "namespace": p.namespace,
            "uid": p.uid,
            "resourceVersion": rv.to_string(),
            "creationTimestamp": ts,
            "generateName": format!("{rs}-"),
            "labels": labels_obj(&labels),
            "ownerReferences": [{
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": rs,
                "uid": rand_uuid(),
                "controller": true,
                "blockOwnerDeletion": true
            }]
        },
        "spec": {
            "containers": [{
                "name": container,
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "ports": [{"containerPort": 80, "name": "http", "protocol": "TCP"}],
                "resources": {},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File"
            }],
            "dnsPolicy": "ClusterFirst",
            "enableServiceLinks": true,
            "nodeName": node.name(),
            "preemptionPolicy": "PreemptLowerPriority",
            "priority": 0,
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "serviceAccountName": "default",
            "terminationGracePeriodSeconds": 30
        },
        "status": {
            "phase": "Running",
            "conditions": [
                cond("PodReadyToStartContainers"),
                cond("Initialized"),
                cond("Ready"),
                cond("ContainersReady"),
                cond("PodScheduled")
            ],
            "hostIP": node.node_ip().to_string(),
            "hostIPs": [{"ip": node.node_ip().to_string()}],
            "podIP": p.ip.to_string(),
            "podIPs": [{"ip": p.ip.to_string()}],
            "qosClass": "BestEffort",
            "startTime": ts,
            "containerStatuses": [{
                "name": container,
                "image": image,
                "imageID": format!("{image}@sha256:{}", rand_hex(64)),
                "containerID": format!("containerd://{}", rand_hex(64)),
                "ready": true,
                "restartCount": 0,
                "started": true,
                "state": {"running": {"startedAt": ts}}
            }]
        }
    })
}

struct PodLike<'a> {
    namespace: &'a str,
    name: &'a str,
    uid: &'a str,
    ip: std::net::Ipv4Addr,
    labels: &'a [(String, String)],
}

impl<'a> From<&'a LabPod> for PodLike<'a> {
    fn from(p: &'a LabPod) -> Self {
        PodLike {
            namespace: &p.namespace,
            name: &p.name,
            uid: &p.uid,
            ip: p.ip,
            labels: &p.labels,
        }
    }
}

impl LabNode {
    /// A kubeconfig (YAML) for a fake API server at `server` (e.g. `https://127.0.0.1:6443`),
    /// bearer token `token`, trusting `ca_pem` (or skipping TLS verification when None).
    pub fn kubeconfig(&self, server: &str, token: &str, ca_pem: Option<&str>) -> String {
        let trust = match ca_pem {
            Some(pem) => format!(
                "certificate-authority-data: {}",
                data_encoding::BASE64.encode(pem.as_bytes())
            ),
            None => "insecure-skip-tls-verify: true".to_string(),
        };
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    server: {server}\n    {trust}\n\
             contexts:\n- name: lab\n  context:\n    cluster: lab\n    user: lab\n    namespace: default\n\
             current-context: lab\npreferences: {{}}\nusers:\n- name: lab\n  user:\n    token: {token}\n"
        )
    }

    /// Writes [`LabNode::kubeconfig`] into the node's scratch dir (readable from inside the node
    /// at the same path) and returns the path.
    pub fn write_kubeconfig(
        &self,
        server: &str,
        token: &str,
        ca_pem: Option<&str>,
    ) -> LabResult<std::path::PathBuf> {
        let p = self.tmp_dir().join("kubeconfig");
        std::fs::write(&p, self.kubeconfig(server, token, ca_pem))
            .map_err(|e| LabError::io(format!("writing {}", p.display()), e))?;
        Ok(p)
    }

    /// The lab's Pods, Services, EndpointSlices and Node as the API server would return them.
    /// Ghost pods ([`LabNode::add_ghost_pod`]) are included; leaked netns are not (no pod owns them).
    pub fn api_objects(&self) -> ApiObjects {
        let ts = now();
        let mut out = ApiObjects::default();
        let mut rv = 1000;
        for p in self.pods() {
            rv += 1;
            out.pods.push(pod_object(self, &PodLike::from(p), &ts, rv));
        }
        let no_labels: Vec<(String, String)> = vec![("app".into(), "ghost".into())];
        for g in self.ghost_pods() {
            rv += 1;
            let like = PodLike {
                namespace: &g.namespace,
                name: &g.name,
                uid: &g.uid,
                ip: g.ip,
                labels: &no_labels,
            };
            out.pods.push(pod_object(self, &like, &ts, rv));
        }
        for rs in self.resolved_services() {
            rv += 1;
            let s = &rs.service;
            let svc_uid = rand_uuid();
            let ports: Vec<Value> = s
                .ports
                .iter()
                .map(|p| {
                    json!({"name": p.name, "port": p.port, "protocol": p.proto.upper(), "targetPort": p.target_port})
                })
                .collect();
            let mut spec = json!({
                "clusterIP": s.vip.to_string(),
                "clusterIPs": [s.vip.to_string()],
                "internalTrafficPolicy": "Cluster",
                "ipFamilies": ["IPv4"],
                "ipFamilyPolicy": "SingleStack",
                "ports": ports,
                "sessionAffinity": "None",
                "type": "ClusterIP"
            });
            if !s.selector.is_empty() {
                spec["selector"] = labels_obj(&s.selector);
            }
            let mut labels = vec![];
            if s.name == "kube-dns" {
                labels.push(("k8s-app".to_string(), "kube-dns".to_string()));
                labels.push(("kubernetes.io/name".to_string(), "CoreDNS".to_string()));
            }
            if s.name == "kubernetes" && s.namespace == "default" {
                labels.push(("component".to_string(), "apiserver".to_string()));
                labels.push(("provider".to_string(), "kubernetes".to_string()));
            }
            out.services.push(json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": s.name,
                    "namespace": s.namespace,
                    "uid": svc_uid,
                    "resourceVersion": rv.to_string(),
                    "creationTimestamp": ts,
                    "labels": labels_obj(&labels),
                },
                "spec": spec,
                "status": {"loadBalancer": {}}
            }));
            let endpoints: Vec<Value> = rs
                .endpoints
                .iter()
                .map(|ip| {
                    let mut ep = json!({
                        "addresses": [ip.to_string()],
                        "conditions": {"ready": true, "serving": true, "terminating": false},
                        "nodeName": self.name(),
                    });
                    if let Some(p) = self.pods().iter().find(|p| p.ip == *ip) {
                        ep["targetRef"] = json!({"kind": "Pod", "name": p.name, "namespace": p.namespace, "uid": p.uid});
                    }
                    ep
                })
                .collect();
            let slice_ports: Vec<Value> = s
                .ports
                .iter()
                .map(
                    |p| json!({"name": p.name, "port": p.target_port, "protocol": p.proto.upper()}),
                )
                .collect();
            rv += 1;
            out.endpoint_slices.push(json!({
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": format!("{}-{}", s.name, rand_suffix(5)),
                    "namespace": s.namespace,
                    "uid": rand_uuid(),
                    "resourceVersion": rv.to_string(),
                    "creationTimestamp": ts,
                    "generateName": format!("{}-", s.name),
                    "generation": 1,
                    "labels": {
                        "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                        "kubernetes.io/service-name": s.name
                    },
                    "ownerReferences": [{
                        "apiVersion": "v1", "kind": "Service", "name": s.name, "uid": svc_uid,
                        "controller": true, "blockOwnerDeletion": true
                    }]
                },
                "addressType": "IPv4",
                "endpoints": endpoints,
                "ports": slice_ports
            }));
        }
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string();
        // This node, and the other node of the cluster (API only: its pod subnet is routed
        // over flannel.1, via its address, or learnt over BGP, by style).
        let node_object = |name: &str, pod_cidr: &str, ip: std::net::Ipv4Addr, proxy: &str| {
            json!({
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "uid": rand_uuid(),
                    "resourceVersion": "900",
                    "creationTimestamp": ts,
                    "labels": {
                        "beta.kubernetes.io/arch": "amd64",
                        "beta.kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux"
                    }
                },
                "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]},
                "status": {
                    "addresses": [
                        {"address": ip.to_string(), "type": "InternalIP"},
                        {"address": name, "type": "Hostname"}
                    ],
                    "conditions": [
                        {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory", "lastHeartbeatTime": ts, "lastTransitionTime": ts, "message": "kubelet has sufficient memory available"},
                        {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure", "lastHeartbeatTime": ts, "lastTransitionTime": ts, "message": "kubelet has no disk pressure"},
                        {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID", "lastHeartbeatTime": ts, "lastTransitionTime": ts, "message": "kubelet has sufficient PID available"},
                        {"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": ts, "lastTransitionTime": ts, "message": "kubelet is posting ready status"}
                    ],
                    "nodeInfo": {
                        "architecture": "amd64",
                        "bootID": rand_uuid(),
                        "containerRuntimeVersion": "containerd://1.7.24",
                        "kernelVersion": kernel,
                        "kubeProxyVersion": proxy,
                        "kubeletVersion": "v1.34.1",
                        "machineID": rand_hex(32),
                        "operatingSystem": "linux",
                        "osImage": "Debian GNU/Linux 12 (bookworm)",
                        "systemUUID": rand_uuid()
                    }
                }
            })
        };
        out.nodes.push(node_object(
            self.name(),
            &self.pod_cidr(),
            self.node_ip(),
            self.kube_proxy_version(),
        ));
        out.nodes.push(node_object(
            &self.peer_name(),
            &self.peer_pod_cidr(),
            self.peer_ip(),
            "v1.34.1",
        ));
        let mode = if self.backends().is_empty() {
            ""
        } else {
            "iptables"
        };
        let config = format!(
            "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nbindAddress: 0.0.0.0\nclusterCIDR: {}\n\
             conntrack:\n  maxPerCore: 32768\n  min: 131072\n  tcpCloseWaitTimeout: 1h0m0s\n  tcpEstablishedTimeout: 24h0m0s\n\
             iptables:\n  masqueradeAll: false\n  masqueradeBit: 14\n  minSyncPeriod: 1s\n  syncPeriod: 30s\n\
             kind: KubeProxyConfiguration\nmetricsBindAddress: 0.0.0.0:10249\nmode: {mode}\n",
            crate::node::CLUSTER_CIDR
        );
        out.config_maps.push(json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "kube-proxy",
                "namespace": "kube-system",
                "uid": rand_uuid(),
                "resourceVersion": "300",
                "creationTimestamp": ts,
                "labels": {"app": "kube-proxy"}
            },
            "data": {
                "config.conf": config,
                "kubeconfig.conf": format!("apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority: /var/run/secrets/kubernetes.io/serviceaccount/ca.crt\n    server: https://{}:6443\n  name: default\n", self.node_ip())
            }
        }));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_name_strips_the_pod_suffix() {
        assert_eq!(owner_name("web-7c5ddbdf54-x2x7q"), "web-7c5ddbdf54");
        assert_eq!(owner_name("standalone"), "standalone");
    }

    #[test]
    fn list_has_kubectl_shape() {
        let l = ApiObjects::list("Pod", "v1", &[json!({"kind": "Pod"})]);
        assert_eq!(l["kind"], "PodList");
        assert_eq!(l["items"].as_array().map(Vec::len), Some(1));
    }
}

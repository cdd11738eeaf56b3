//! Pod ↔ network namespace ↔ host veth correlation.
//!
//! A pure derivation over data already in the bundle (namespace index, netlink
//! snapshots, veth pairs, the API's pods, the node's podCIDRs, runtime
//! sandboxes): the collector stores it as `correlation/pods.json`, and anyone holding
//! the bundle can recompute it (the format promises that); tests need no root.
//!
//! Interface indexes are only unique within one namespace (every pod's `eth0`
//! is typically index 2 or 3), so every lookup here is keyed by
//! `(namespace id, ifindex)`, never by index alone.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use crate::k8s::{PodRecord, RuntimePod};
use crate::layout;
use crate::native::{NetnsIndex, NetnsSnapshot, PodCorrelation, PodNetns, UnownedNetns, VethPair};
use crate::net::{self, IpNet};

/// Everything the correlation looks at.
#[derive(Debug, Clone, Copy)]
pub struct CorrelationInput<'a> {
    /// This node's Kubernetes name; pods bound elsewhere are ignored.
    pub node_name: Option<&'a str>,
    /// Namespace identities (cgroup pod UIDs, processes).
    pub index: &'a NetnsIndex,
    /// Per-namespace links and addresses.
    pub snapshots: &'a [NetnsSnapshot],
    /// Veth pairs (pod side, host side).
    pub veths: &'a [VethPair],
    /// Pods from the API (any node; filtered here).
    pub pods: &'a [PodRecord],
    /// The node's `spec.podCIDRs`.
    pub pod_cidrs: &'a [String],
    /// Sandboxes from the container runtime, used to confirm matches.
    pub runtime_pods: &'a [RuntimePod],
}

/// True for addresses that can be a pod IP (not loopback, link-local, unspecified, multicast).
fn routable(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => {
            !(v.is_loopback() || v.is_link_local() || v.is_unspecified() || v.is_multicast())
        }
        IpAddr::V6(v) => {
            !(v.is_loopback()
                || v.is_unspecified()
                || v.is_multicast()
                || (v.segments()[0] & 0xffc0) == 0xfe80)
        }
    }
}

/// Computes the correlation. Pods come out sorted by `namespace/name`.
pub fn correlate(input: &CorrelationInput<'_>) -> PodCorrelation {
    let infos: HashMap<&str, &crate::native::NetnsInfo> = input
        .index
        .namespaces
        .iter()
        .map(|n| (n.id.as_str(), n))
        .collect();
    let is_host = |id: &str| id == layout::HOST_NETNS || infos.get(id).is_some_and(|n| n.is_host);

    // IP -> every (netns, ifindex) holding it, outside the host namespace.
    let mut by_ip: BTreeMap<IpAddr, Vec<(&str, u32)>> = BTreeMap::new();
    for snap in input.snapshots.iter().filter(|s| !is_host(&s.netns)) {
        for a in snap.addrs.iter().filter(|a| routable(&a.address)) {
            by_ip
                .entry(a.address)
                .or_default()
                .push((snap.netns.as_str(), a.ifindex));
        }
    }
    let snap_of: HashMap<&str, &NetnsSnapshot> = input
        .snapshots
        .iter()
        .map(|s| (s.netns.as_str(), s))
        .collect();
    let veth_of: HashMap<(&str, u32), &VethPair> = input
        .veths
        .iter()
        .map(|v| ((v.netns.as_str(), v.ifindex), v))
        .collect();
    let ns_with_uid = |uid: &str| -> Option<&str> {
        input
            .index
            .namespaces
            .iter()
            .find(|n| !n.is_host && n.pod_uid.as_deref() == Some(uid))
            .map(|n| n.id.as_str())
    };
    // Runtime sandbox PIDs per pod UID, to confirm a namespace by its processes.
    let runtime_pids: HashMap<&str, Vec<u32>> =
        input.runtime_pods.iter().fold(HashMap::new(), |mut m, r| {
            if let (Some(uid), Some(pid)) = (r.uid.as_deref(), r.pid) {
                m.entry(uid).or_default().push(pid);
            }
            m
        });
    let runtime_confirms = |ns: &str, uid: &str| -> bool {
        let Some(pids) = runtime_pids.get(uid) else {
            return false;
        };
        infos
            .get(ns)
            .is_some_and(|n| n.processes.iter().any(|p| pids.contains(&p.pid)))
    };

    let mut pods: Vec<&PodRecord> = input
        .pods
        .iter()
        .filter(|p| !p.host_network)
        .filter(|p| match input.node_name {
            Some(n) => p.node_name.as_deref() == Some(n),
            None => true,
        })
        .collect();
    pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));

    let mut owned: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::with_capacity(pods.len());
    for pod in pods {
        let ips: Vec<IpAddr> = pod.pod_ips.iter().filter_map(|i| i.parse().ok()).collect();
        let mut candidates: Vec<(&str, u32)> = ips
            .iter()
            .flat_map(|ip| by_ip.get(ip).into_iter().flatten().copied())
            .collect();
        candidates.sort();
        candidates.dedup();
        let uid_ns = ns_with_uid(&pod.uid);
        // With several holders of the IP (a leaked sandbox kept it), the confirmed one wins.
        let chosen = candidates
            .iter()
            .find(|(ns, _)| Some(*ns) == uid_ns)
            .or_else(|| {
                candidates
                    .iter()
                    .find(|(ns, _)| runtime_confirms(ns, &pod.uid))
            })
            .or_else(|| candidates.first())
            .copied();
        let mut matched_by = Vec::new();
        let (netns, ifindex) = match chosen {
            Some((ns, idx)) => {
                matched_by.push("ip".to_string());
                if candidates.iter().filter(|(n, _)| *n != ns).count() > 0 {
                    matched_by.push("ip-ambiguous".to_string());
                }
                (Some(ns), Some(idx))
            }
            None => match uid_ns {
                // No IP match (pending pod, IP not yet in status): the cgroup still tells.
                Some(ns) => (Some(ns), None),
                None => (None, None),
            },
        };
        if let Some(ns) = netns {
            if Some(ns) == uid_ns {
                matched_by.push("cgroup-uid".to_string());
            }
            if runtime_confirms(ns, &pod.uid) {
                matched_by.push("runtime".to_string());
            }
            owned.insert(ns.to_string());
        }
        // Without an address match, the pod side is the namespace's veth end.
        let ifindex = ifindex.or_else(|| {
            let ns = netns?;
            input
                .veths
                .iter()
                .find(|v| v.netns == ns)
                .map(|v| v.ifindex)
        });
        let link = netns
            .zip(ifindex)
            .and_then(|(ns, idx)| snap_of.get(ns)?.links.iter().find(|l| l.index == idx));
        let veth = netns.zip(ifindex).and_then(|k| veth_of.get(&k));
        out.push(PodNetns {
            pod: format!("{}/{}", pod.namespace, pod.name),
            uid: pod.uid.clone(),
            pod_ips: pod.pod_ips.clone(),
            netns: netns.map(str::to_string),
            matched_by,
            ifname: link
                .map(|l| l.name.clone())
                .or_else(|| veth.map(|v| v.ifname.clone())),
            mtu: link.and_then(|l| l.mtu),
            host_veth: veth.map(|v| v.peer_ifname.clone()),
            host_veth_index: veth.map(|v| v.peer_ifindex),
        });
    }

    let cidrs: Vec<IpNet> = input
        .pod_cidrs
        .iter()
        .filter_map(|c| net::parse_prefix(c.trim()))
        .collect();
    let mut unowned = Vec::new();
    for snap in input.snapshots.iter().filter(|s| !is_host(&s.netns)) {
        if owned.contains(&snap.netns) {
            continue;
        }
        let addrs: BTreeSet<String> = snap
            .addrs
            .iter()
            .map(|a| a.address)
            .filter(routable)
            .filter(|ip| cidrs.is_empty() || cidrs.iter().any(|c| c.contains(ip)))
            .map(|ip| ip.to_string())
            .collect();
        // Without known podCIDRs, only sandbox namespaces count, not arbitrary ones.
        let sandbox = !cidrs.is_empty()
            || infos
                .get(snap.netns.as_str())
                .is_some_and(|n| n.has_pause || n.pod_uid.is_some());
        if !addrs.is_empty() && sandbox {
            unowned.push(UnownedNetns {
                netns: snap.netns.clone(),
                addresses: addrs.into_iter().collect(),
            });
        }
    }
    unowned.sort_by(|a, b| a.netns.cmp(&b.netns));
    PodCorrelation {
        node_name: input.node_name.map(str::to_string),
        pods: out,
        unowned_netns: unowned,
    }
}

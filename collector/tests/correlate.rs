//! Correlation over synthetic but realistic data: 60 pods whose `eth0` all have
//! the same ifindex (as on a real node), plus the leftovers.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)]

use netsnap_bundle::k8s::{PodRecord, RuntimePod};
use netsnap_bundle::native::{
    AddrRecord, LinkRecord, NetnsIndex, NetnsInfo, NetnsProcess, NetnsSnapshot, VethPair,
};
use netsnap_collector::correlate::{CorrelationInput, correlate};

const N: usize = 60;

fn link(index: u32, name: &str, kind: Option<&str>, mtu: u32) -> LinkRecord {
    LinkRecord {
        index,
        name: name.into(),
        kind: kind.map(str::to_string),
        mtu: Some(mtu),
        oper_state: "UP".into(),
        ..LinkRecord::default()
    }
}

fn addr(ifindex: u32, ip: &str, len: u8) -> AddrRecord {
    AddrRecord {
        ifindex,
        ifname: None,
        address: ip.parse().unwrap(),
        prefix_len: len,
        scope: "global".into(),
        broadcast: None,
    }
}

fn pod_ns(i: usize) -> String {
    format!("ns-{}", 4026532000 + i)
}

fn pod_ip(i: usize) -> String {
    format!("10.244.1.{}", i + 2)
}

/// Pod-side MTU varies so a wrong link lookup shows.
fn mtu(i: usize) -> u32 {
    1400 + i as u32
}

struct Lab {
    index: NetnsIndex,
    snapshots: Vec<NetnsSnapshot>,
    veths: Vec<VethPair>,
    pods: Vec<PodRecord>,
    runtime: Vec<RuntimePod>,
}

fn lab() -> Lab {
    let mut index = NetnsIndex::default();
    index.namespaces.push(NetnsInfo {
        id: "host".into(),
        is_host: true,
        inode: 4026531840,
        ..NetnsInfo::default()
    });
    let mut host = NetnsSnapshot {
        netns: "host".into(),
        links: vec![
            link(1, "lo", None, 65536),
            link(2, "ens3", None, 1500),
            link(3, "cni0", Some("bridge"), 1450),
        ],
        addrs: vec![addr(2, "192.168.56.11", 24), addr(3, "10.244.1.1", 24)],
        ..NetnsSnapshot::default()
    };
    let mut snapshots = Vec::new();
    let mut veths = Vec::new();
    let mut pods = Vec::new();
    let mut runtime = Vec::new();
    for i in 0..N {
        let ns = pod_ns(i);
        let uid = format!("00000000-0000-4000-8000-{i:012}");
        let host_if = 10 + i as u32;
        let host_name = format!("veth{:08x}", 0xa000_0000u32 + i as u32);
        // Every third namespace's cgroup names its pod; every fifth is confirmed by the runtime.
        let pid = 10_000 + i as u32;
        index.namespaces.push(NetnsInfo {
            id: ns.clone(),
            inode: 4026532000 + i as u64,
            pod_uid: (i % 3 == 0).then(|| uid.clone()),
            has_pause: true,
            processes: vec![NetnsProcess {
                pid,
                comm: "pause".into(),
                ..NetnsProcess::default()
            }],
            process_count: 1,
            ..NetnsInfo::default()
        });
        if i % 5 == 0 {
            runtime.push(RuntimePod {
                source: "crictl".into(),
                id: format!("{i:064x}"),
                name: format!("app-{i}"),
                namespace: "default".into(),
                uid: Some(uid.clone()),
                pid: Some(pid),
                ..RuntimePod::default()
            });
        }
        // Real pods: lo = 1, eth0 = 2 in EVERY namespace.
        snapshots.push(NetnsSnapshot {
            netns: ns.clone(),
            links: vec![
                link(1, "lo", None, 65536),
                link(2, "eth0", Some("veth"), mtu(i)),
            ],
            addrs: vec![
                addr(1, "127.0.0.1", 8),
                addr(2, &pod_ip(i), 24),
                addr(2, &format!("fe80::{i:x}"), 64),
            ],
            ..NetnsSnapshot::default()
        });
        host.links
            .push(link(host_if, &host_name, Some("veth"), mtu(i)));
        veths.push(VethPair {
            netns: ns.clone(),
            ifindex: 2,
            ifname: "eth0".into(),
            peer_netns: "host".into(),
            peer_ifindex: host_if,
            peer_ifname: host_name,
        });
        pods.push(PodRecord {
            namespace: "default".into(),
            name: format!("app-{i}"),
            uid,
            node_name: Some("node-a".into()),
            pod_ips: vec![pod_ip(i)],
            ..PodRecord::default()
        });
    }
    // Leftovers: a pod the API knows but no namespace holds…
    pods.push(PodRecord {
        namespace: "default".into(),
        name: "ghost".into(),
        uid: "ffffffff-0000-4000-8000-000000000001".into(),
        node_name: Some("node-a".into()),
        pod_ips: vec!["10.244.1.250".into()],
        ..PodRecord::default()
    });
    // …a namespace holding a pod-CIDR address that no pod owns (leaked sandbox)…
    index.namespaces.push(NetnsInfo {
        id: "ns-4026539999".into(),
        inode: 4026539999,
        has_pause: true,
        ..NetnsInfo::default()
    });
    snapshots.push(NetnsSnapshot {
        netns: "ns-4026539999".into(),
        links: vec![
            link(1, "lo", None, 65536),
            link(2, "eth0", Some("veth"), 1450),
        ],
        addrs: vec![addr(2, "10.244.1.251", 24)],
        ..NetnsSnapshot::default()
    });
    // …a namespace outside the pod CIDR (e.g. a VPN helper): not a leftover…
    snapshots.push(NetnsSnapshot {
        netns: "ns-4026538888".into(),
        links: vec![
            link(1, "lo", None, 65536),
            link(2, "wg0", Some("wireguard"), 1420),
        ],
        addrs: vec![addr(2, "172.16.9.1", 30)],
        ..NetnsSnapshot::default()
    });
    // …and pods that must be ignored: hostNetwork, and bound to another node.
    pods.push(PodRecord {
        namespace: "kube-system".into(),
        name: "kube-proxy-7lq5d".into(),
        uid: "ffffffff-0000-4000-8000-000000000002".into(),
        node_name: Some("node-a".into()),
        host_network: true,
        pod_ips: vec!["192.168.56.11".into()],
        ..PodRecord::default()
    });
    pods.push(PodRecord {
        namespace: "default".into(),
        name: "elsewhere".into(),
        uid: "ffffffff-0000-4000-8000-000000000003".into(),
        node_name: Some("node-b".into()),
        pod_ips: vec!["10.244.2.5".into()],
        ..PodRecord::default()
    });
    snapshots.insert(0, host);
    // Order must not matter: reverse what a naive index-based join would rely on.
    snapshots.reverse();
    veths.reverse();
    Lab {
        index,
        snapshots,
        veths,
        pods,
        runtime,
    }
}

#[test]
fn every_pod_is_paired_with_its_own_namespace_and_veth() {
    let lab = lab();
    let cidrs = vec!["10.244.1.0/24".to_string()];
    let c = correlate(&CorrelationInput {
        node_name: Some("node-a"),
        index: &lab.index,
        snapshots: &lab.snapshots,
        veths: &lab.veths,
        pods: &lab.pods,
        pod_cidrs: &cidrs,
        runtime_pods: &lab.runtime,
    });
    assert_eq!(c.node_name.as_deref(), Some("node-a"));
    // 60 pods + the ghost; hostNetwork and other-node pods are not listed.
    assert_eq!(c.pods.len(), N + 1);
    assert!(
        c.pods
            .iter()
            .all(|p| p.pod != "kube-system/kube-proxy-7lq5d" && p.pod != "default/elsewhere")
    );
    for i in 0..N {
        let p = c
            .pods
            .iter()
            .find(|p| p.pod == format!("default/app-{i}"))
            .unwrap();
        assert_eq!(p.netns.as_deref(), Some(pod_ns(i).as_str()), "app-{i}");
        assert_eq!(p.ifname.as_deref(), Some("eth0"));
        assert_eq!(p.mtu, Some(mtu(i)), "app-{i}");
        assert_eq!(
            p.host_veth.as_deref(),
            Some(format!("veth{:08x}", 0xa000_0000u32 + i as u32).as_str())
        );
        assert_eq!(p.host_veth_index, Some(10 + i as u32));
        assert_eq!(p.pod_ips, vec![pod_ip(i)]);
        let mut want = vec!["ip"];
        if i % 3 == 0 {
            want.push("cgroup-uid");
        }
        if i % 5 == 0 {
            want.push("runtime");
        }
        assert_eq!(p.matched_by, want, "app-{i}");
    }
    let ghost = c.pods.iter().find(|p| p.pod == "default/ghost").unwrap();
    assert_eq!(ghost.netns, None);
    assert_eq!(ghost.host_veth, None);
    assert!(ghost.matched_by.is_empty());
    assert_eq!(c.unowned_netns.len(), 1, "{:?}", c.unowned_netns);
    assert_eq!(c.unowned_netns[0].netns, "ns-4026539999");
    assert_eq!(c.unowned_netns[0].addresses, vec!["10.244.1.251"]);
}

#[test]
fn cgroup_uid_finds_a_pod_without_ip_and_wins_a_duplicate_ip() {
    let mut lab = lab();
    // app-3 (cgroup-labelled) lost its IP in the API status (e.g. still Pending).
    lab.pods
        .iter_mut()
        .find(|p| p.name == "app-3")
        .unwrap()
        .pod_ips
        .clear();
    // A leaked sandbox holds app-6's IP too; app-6's own namespace names its UID.
    lab.snapshots.push(NetnsSnapshot {
        netns: "ns-4026530001".into(),
        links: vec![
            link(1, "lo", None, 65536),
            link(2, "eth0", Some("veth"), 1450),
        ],
        addrs: vec![addr(2, &pod_ip(6), 24)],
        ..NetnsSnapshot::default()
    });
    let cidrs = vec!["10.244.1.0/24".to_string()];
    let c = correlate(&CorrelationInput {
        node_name: Some("node-a"),
        index: &lab.index,
        snapshots: &lab.snapshots,
        veths: &lab.veths,
        pods: &lab.pods,
        pod_cidrs: &cidrs,
        runtime_pods: &[],
    });
    let p3 = c.pods.iter().find(|p| p.pod == "default/app-3").unwrap();
    assert_eq!(p3.netns.as_deref(), Some(pod_ns(3).as_str()));
    assert_eq!(p3.matched_by, vec!["cgroup-uid"]);
    assert_eq!(p3.ifname.as_deref(), Some("eth0"));
    assert_eq!(p3.mtu, Some(mtu(3)));
    let p6 = c.pods.iter().find(|p| p.pod == "default/app-6").unwrap();
    assert_eq!(p6.netns.as_deref(), Some(pod_ns(6).as_str()));
    assert_eq!(p6.matched_by, vec!["ip", "ip-ambiguous", "cgroup-uid"]);
    // The leaked holder of the duplicate IP is reported.
    let leaked: Vec<&str> = c.unowned_netns.iter().map(|u| u.netns.as_str()).collect();
    assert_eq!(leaked, vec!["ns-4026530001", "ns-4026539999"]);
}

#[test]
fn without_pod_cidrs_only_sandboxes_are_leftovers() {
    let lab = lab();
    let c = correlate(&CorrelationInput {
        node_name: Some("node-a"),
        index: &lab.index,
        snapshots: &lab.snapshots,
        veths: &lab.veths,
        pods: &lab.pods,
        pod_cidrs: &[],
        runtime_pods: &[],
    });
    // ns-4026538888 (wireguard, no pause, not in the index) is not a sandbox.
    let leaked: Vec<&str> = c.unowned_netns.iter().map(|u| u.netns.as_str()).collect();
    assert_eq!(leaked, vec!["ns-4026539999"]);
}

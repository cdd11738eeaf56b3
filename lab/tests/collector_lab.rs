//! `netsnap-collect` run inside lab nodes (isolated net+pid+mount namespaces):
//! the bundle is compared with what the harness built (every pod netns, exact
//! veth pairs, the rules in both backends, the conntrack entries), and the
//! collector's safety behaviour (hung tool, missing tool, bounded memory) is
//! checked against real kernel state.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::disallowed_methods)] // test helpers outside #[test] fns; tests drive real programs

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use netsnap_bundle::native::{NetnsIndex, VethPair};
use netsnap_bundle::{ArtifactStatus, Bundle, ReaderOptions, layout};
use netsnap_lab::{
    Backend, CollectOptions, CollectRun, CtEntry, LabNode, LabPort, LabService, Proto, ToolDir,
    require_lab,
};

/// Netns inode of a host PID (what the collector names `ns-<inode>`).
fn netns_inode(pid: u32) -> u64 {
    std::fs::metadata(format!("/proc/{pid}/ns/net"))
        .unwrap()
        .ino()
}

fn open(run: &CollectRun) -> Bundle {
    assert!(
        run.output.success(),
        "collector failed: {}\n{}",
        run.output.status,
        run.output.stderr
    );
    Bundle::open(&run.bundle, &ReaderOptions::default())
        .unwrap_or_else(|e| panic!("bundle unreadable: {e}\n{}", run.output.stderr))
}

fn text(b: &Bundle, path: &str) -> String {
    b.read_text(path)
        .unwrap_or_else(|| panic!("{path} not in bundle"))
        .unwrap()
}

fn index(b: &Bundle) -> NetnsIndex {
    serde_json::from_str(&text(b, layout::NETNS_INDEX)).unwrap()
}

fn host_ifindex(node: &LabNode, dev: &str) -> u32 {
    node.run_in_node(&["cat", &format!("/sys/class/net/{dev}/ifindex")])
        .unwrap()
        .stdout
        .trim()
        .parse()
        .unwrap()
}

const FAST: &[&str] = &["--no-api", "--sample-interval", "0.2", "--quiet"];

#[test]
fn netns_discovery_finds_exactly_the_lab() {
    let Some(lab) = require_lab() else { return };
    if !lab.require_collector() || !lab.require_tools(&["dnsmasq"]) {
        return;
    }
    let mut node = lab.node().flannel().dns().pods(5).build().unwrap();
    let leak = node.leak_netns().unwrap();
    let orphan = node.orphan_veth().unwrap();
    let run = node.collect(FAST).unwrap();
    let b = open(&run);
    let idx = index(&b);

    // Host (the node netns) + one per pod + the leaked one. Not the outside netns of the
    // uplink, not the orphan's hidden netns, nothing of the real host.
    let host: Vec<_> = idx.namespaces.iter().filter(|n| n.is_host).collect();
    assert_eq!(host.len(), 1);
    assert_eq!(host[0].inode, netns_inode(node.pid1()));
    let found: BTreeSet<String> = idx.namespaces.iter().map(|n| n.id.clone()).collect();
    let mut want: BTreeSet<String> = node
        .pods()
        .iter()
        .map(|p| layout::netns_id(netns_inode(p.pause_pid)))
        .collect();
    want.insert(layout::HOST_NETNS.to_string());
    let leak_inode: u64 = node
        .run_in_node(&[
            "stat",
            "-L",
            "-c",
            "%i",
            &format!("/run/netns/{}", leak.netns),
        ])
        .unwrap()
        .stdout
        .trim()
        .parse()
        .unwrap();
    want.insert(layout::netns_id(leak_inode));
    assert_eq!(found, want, "orphan {orphan:?}");

    for p in node.pods() {
        let id = layout::netns_id(netns_inode(p.pause_pid));
        let ns = idx.namespaces.iter().find(|n| n.id == id).unwrap();
        assert_eq!(ns.names, vec![p.netns.clone()], "{id}");
        assert!(ns.has_pause, "{id}: pause not recognised");
        assert!(ns.host_nsid.is_some(), "{id}: no host nsid");
        let pause = ns.processes.iter().find(|pr| pr.comm == "pause").unwrap();
        // The collector sees node-local PIDs: it runs inside the node's PID namespace.
        assert_eq!(pause.pid, p.node_pid, "{id}");
        if node.has_cgroups() {
            assert_eq!(ns.pod_uid.as_deref(), Some(p.uid.as_str()), "{id}");
            assert_eq!(pause.container_id.as_deref(), Some(p.container_id.as_str()));
        }
    }
    let dns_id = layout::netns_id(netns_inode(node.dns_pod().unwrap().pause_pid));
    let dns_ns = idx.namespaces.iter().find(|n| n.id == dns_id).unwrap();
    assert!(dns_ns.processes.iter().any(|p| p.comm == "dnsmasq"));
    let leaked = idx
        .namespaces
        .iter()
        .find(|n| n.id == layout::netns_id(leak_inode))
        .unwrap();
    assert_eq!(leaked.names, vec![leak.netns.clone()]);
    assert_eq!(leaked.process_count, 0);
    assert!(!leaked.has_pause);
    // The leaked netns's snapshot still shows its pod-CIDR address.
    let snap = text(
        &b,
        &layout::netns_path(&layout::netns_id(leak_inode), layout::netns::NETLINK),
    );
    assert!(snap.contains(&leak.ip.to_string()));
}

fn check_veth_mapping(node: &LabNode, b: &Bundle) {
    let pairs: Vec<VethPair> =
        serde_json::from_str(&text(b, layout::correlation::VETH_PAIRS)).unwrap();
    let mut pod_indexes = BTreeSet::new();
    for p in node.pods() {
        let id = layout::netns_id(netns_inode(p.pause_pid));
        let mine: Vec<&VethPair> = pairs.iter().filter(|v| v.netns == id).collect();
        assert_eq!(mine.len(), 1, "{}: {mine:?}", p.name);
        let v = mine[0];
        assert_eq!(v.ifname, "eth0");
        assert_eq!(v.peer_netns, layout::HOST_NETNS);
        assert_eq!(v.peer_ifname, p.host_veth, "{}", p.name);
        assert_eq!(v.peer_ifindex, host_ifindex(node, &p.host_veth));
        pod_indexes.insert(v.ifindex);
    }
    // Indexes repeat across namespaces: only the netns identity tells the pods apart.
    assert!(
        pod_indexes.len() < node.pods().len() / 2,
        "pod eth0 indexes: {pod_indexes:?}"
    );
    // No host veth is claimed by two pods.
    let peers: BTreeSet<&str> = pairs
        .iter()
        .filter(|v| v.peer_netns == layout::HOST_NETNS)
        .map(|v| v.peer_ifname.as_str())
        .collect();
    assert!(peers.len() >= node.pods().len());
}

#[test]
fn veth_mapping_is_exact_with_60_bridge_pods() {
    let Some(lab) = require_lab() else { return };
    if !lab.require_collector() {
        return;
    }
    let node = lab.node().flannel().pods(60).build().unwrap();
    let run = node.collect(FAST).unwrap();
    let b = open(&run);
    check_veth_mapping(&node, &b);
    eprintln!(
        "60 pods: build {:?}, collect {:?}, peak RSS {:?} KiB",
        node.build_time(),
        run.output.elapsed,
        run.max_rss_kib
    );
}

#[test]
fn veth_mapping_is_exact_with_50_routed_pods() {
    let Some(lab) = require_lab() else { return };
    if !lab.require_collector() {
        return;
    }
    let node = lab.node().routed().pods(50).build().unwrap();
    let run = node.collect(FAST).unwrap();
    let b = open(&run);
    check_veth_mapping(&node, &b);
    assert!(node.pods().iter().all(|p| p.host_veth.starts_with("cali")));
}

/// `-A` rules of an iptables-save dump, without counters, sorted.
fn rules(save: &str) -> BTreeSet<String> {
    save.lines()
        .map(|l| {
            // `-c` output prefixes each rule with `[pkts:bytes] `.
            if l.starts_with('[') {
                l.split_once("] ").map_or(l, |(_, r)| r)
            } else {
                l
            }
        })
        .filter(|l| l.starts_with("-A "))
        .map(str::to_string)
        .collect()
}

#[test]
fn iptables_rules_from_both_backends() {
    let Some(lab) = require_lab() else { return };
    if !lab.require_collector()
        || !lab.require_tools(&["iptables-legacy-restore", "iptables-nft-restore"])
    {
        return;
    }
    let web = LabService::selecting(
        "default",
        "web",
        Ipv4Addr::new(10, 96, 50, 5),
        vec![LabPort::new("http", 80, Proto::Tcp).target(8080)],
        ("app", "web"),
    );
    let mut node = lab
        .node()
        .bridge()
        .pods(4)
        .service(web)
        .backend(Backend::Legacy)
        .build()
        .unwrap();
    node.apply_iptables(Backend::Nft).unwrap();
    let run = node.collect(FAST).unwrap();
    let b = open(&run);
    for (path, backend) in [
        (layout::iptables::LEGACY_SAVE, Backend::Legacy),
        (layout::iptables::NFT_SAVE, Backend::Nft),
    ] {
        // A backend's own save may be skipped as `same_as` the default `iptables-save`
        // when that is the same program: the record it names holds the rules.
        let rec = b.manifest().resolve(path).unwrap();
        assert_eq!(rec.status, ArtifactStatus::Ok, "{path}: {rec:?}");
        let want_backend = if backend == Backend::Legacy {
            "legacy"
        } else {
            "nft"
        };
        assert_eq!(
            rec.attributes.get("backend").map(String::as_str),
            Some(want_backend)
        );
        let got = rules(&text(&b, &rec.path));
        let live = rules(&node.run_in_node(&[backend.save()]).unwrap().stdout);
        assert_eq!(got, live, "{path} differs from the live {backend:?} rules");
        assert!(
            got.iter()
                .any(|r| r.contains("-j KUBE-SVC-NPX46M4PTMTKRN6Y"))
        );
        for p in node.pods() {
            assert!(
                got.iter()
                    .any(|r| r.contains(&format!("--to-destination {}:8080", p.ip))),
                "{path}: no DNAT to {}",
                p.ip
            );
        }
        assert!(
            got.iter()
                .any(|r| r.starts_with("-A KUBE-SERVICES -d 10.96.50.5/32"))
        );
    }
    // The nft backend's `ip nat`/`ip filter` tables are dumped once, by
    // iptables-nft-save: `nft/ruleset.txt` lists the other tables and names the ones
    // it left to that dump.
    let nft = b.record(layout::nft::RULESET).unwrap();
    assert_eq!(nft.status, ArtifactStatus::Ok, "{nft:?}");
    let left_out = nft
        .attributes
        .get("iptables_nft_tables")
        .cloned()
        .unwrap_or_default();
    assert!(left_out.contains("ip nat"), "{nft:?}");
    let ruleset = text(&b, layout::nft::RULESET);
    assert!(!ruleset.contains("table ip nat"), "{ruleset}");
}

#[test]
fn conntrack_table_of_200k_entries_is_streamed_with_bounded_memory() {
    let Some(lab) = require_lab() else { return };
    if !lab.require_collector() || !lab.require_tools(&["conntrack"]) {
        return;
    }
    const N: usize = 200_000;
    let node = lab.node().bridge().pods(2).build().unwrap();
    let collect = || {
        node.collect_with(&CollectOptions {
            args: FAST
                .iter()
                .map(|s| s.to_string())
                .chain(["--timeout".into(), "20".into()])
                .collect(),
            ..Default::default()
        })
        .unwrap()
    };
    // The same collection on the same node with an almost empty table: the
    // collector's fixed cost (runtime, buffers, the API-less steps).
    let base_rss = collect()
        .max_rss_kib
        .expect("peak RSS measured with /usr/bin/time");
    node.fill_conntrack(N).unwrap();
    let marker = CtEntry::udp_dnat(
        node.pods()[0].ip,
        41234,
        Ipv4Addr::new(10, 96, 0, 10),
        53,
        (Ipv4Addr::new(10, 244, 0, 77), 53),
    );
    node.conntrack_insert(&[marker]).unwrap();
    let live = node.conntrack_count().unwrap();
    assert!(live > N as u64);
    let run = collect();
    let b = open(&run);
    let rec = b.record(layout::conntrack::TABLE).unwrap();
    assert_eq!(rec.status, ArtifactStatus::Ok, "{rec:?}");
    let mut entries = 0u64;
    let mut saw_marker = false;
    let mut saw_first = false;
    {
        use std::io::BufRead;
        let f = b.open_artifact(layout::conntrack::TABLE).unwrap().unwrap();
        for line in std::io::BufReader::new(f).lines() {
            let line = line.unwrap();
            if line.contains("src=") {
                entries += 1;
            }
            saw_marker |= line.contains("sport=41234 dport=53") && line.contains("src=10.244.0.77");
            saw_first |= line.contains("src=10.200.0.1 dst=10.96.0.1 sport=10000 dport=443");
        }
    }
    // Entries can only expire (timeouts are an hour), and the node has no other traffic.
    assert!(
        entries >= N as u64 && entries <= live + 10,
        "{entries} vs {live}"
    );
    assert!(saw_marker && saw_first);
    let rss = run
        .max_rss_kib
        .expect("peak RSS measured with /usr/bin/time");
    eprintln!(
        "conntrack {entries} entries: collect {:?}, peak RSS {rss} KiB (empty table: {base_rss} KiB), table {} bytes",
        run.output.elapsed, rec.size
    );
    assert!(rss < 64 * 1024, "collector peak RSS {rss} KiB >= 64 MiB");
    // Streamed, not held: 200,000 more entries (tens of MB of text) cost the
    // collector less than a quarter of the table's size in extra memory.
    let growth = rss.saturating_sub(base_rss) * 1024;
    assert!(
        growth < rec.size / 4,
        "peak RSS grew by {growth} bytes ({base_rss} -> {rss} KiB) for a {} byte table",
        rec.size
    );
}

#[test]
fn hanging_iptables_save_is_cut_off_and_the_rest_lands() {
    let Some(lab) = require_lab() else { return };
    if !lab.require_collector() {
        return;
    }
    let node = lab.node().bridge().pods(3).build().unwrap();
    node.fill_conntrack(100).unwrap();
    let tools = ToolDir::new(&[])
        .unwrap()
        .hang("iptables-save", 120)
        .unwrap();
    let run = node
        .collect_with(&CollectOptions {
            args: FAST
                .iter()
                .map(|s| s.to_string())
                .chain(["--timeout".into(), "1".into()])
                .collect(),
            env: vec![tools.env()],
            timeout: Some(Duration::from_secs(60)),
        })
        .unwrap();
    assert!(
        run.output.elapsed < Duration::from_secs(30),
        "collector took {:?}",
        run.output.elapsed
    );
    let b = open(&run);
    let rec = b.record(layout::iptables::SAVE).unwrap();
    assert!(
        matches!(rec.status, ArtifactStatus::Partial | ArtifactStatus::Failed),
        "{rec:?}"
    );
    assert!(
        rec.error.as_deref().unwrap_or("").contains("timed out"),
        "{rec:?}"
    );
    for p in [
        layout::iptables::LEGACY_SAVE,
        layout::iptables::NFT_SAVE,
        layout::nft::RULESET,
        layout::NETNS_INDEX,
        layout::conntrack::TABLE,
        layout::correlation::VETH_PAIRS,
    ] {
        let r = b.record(p).unwrap_or_else(|| panic!("{p} missing"));
        assert_eq!(r.status, ArtifactStatus::Ok, "{p}: {r:?}");
    }
    // The real rules still arrived through the explicit backend.
    assert!(text(&b, layout::iptables::NFT_SAVE).contains("KUBE-SERVICES"));
    // The hung tool did not survive the collector (it ran inside the node).
    let ps = node.run_in_node(&["ps", "-eo", "args="]).unwrap().stdout;
    assert!(!ps.contains("sleep 120"), "{ps}");
    assert_eq!(index(&b).namespaces.len(), 4);
}

#[test]
fn missing_conntrack_program_falls_back_to_proc() {
    let Some(lab) = require_lab() else { return };
    if !lab.require_collector() || !lab.require_tools(&["conntrack"]) {
        return;
    }
    let node = lab.node().bridge().pods(2).build().unwrap();
    node.conntrack_insert(&[
        CtEntry::tcp(
            Ipv4Addr::new(10, 244, 0, 2),
            33333,
            Ipv4Addr::new(10, 96, 0, 1),
            443,
        ),
        CtEntry::udp_dnat(
            Ipv4Addr::new(10, 244, 0, 3),
            44444,
            Ipv4Addr::new(10, 96, 0, 10),
            53,
            (Ipv4Addr::new(10, 244, 0, 9), 53),
        ),
    ])
    .unwrap();
    let tools = ToolDir::new(&["conntrack"]).unwrap();
    let run = node
        .collect_with(&CollectOptions {
            args: FAST.iter().map(|s| s.to_string()).collect(),
            env: vec![tools.env()],
            timeout: None,
        })
        .unwrap();
    let b = open(&run);
    let table = b.record(layout::conntrack::TABLE).unwrap();
    assert_ne!(table.status, ArtifactStatus::Ok, "{table:?}");
    let proc_rec = b.record(layout::conntrack::PROC_TABLE).unwrap();
    assert_eq!(proc_rec.status, ArtifactStatus::Ok, "{proc_rec:?}");
    assert_eq!(
        proc_rec.attributes.get("source").map(String::as_str),
        Some("procfs")
    );
    let t = text(&b, layout::conntrack::PROC_TABLE);
    assert!(
        t.contains("src=10.244.0.2 dst=10.96.0.1 sport=33333 dport=443"),
        "{t}"
    );
    assert!(
        t.contains("src=10.244.0.9 dst=10.244.0.3 sport=53 dport=44444"),
        "{t}"
    );
    // Only the node's entries: /proc/net/nf_conntrack is per network namespace, so the copy
    // has as many lines as the node's own table (plus or minus the odd IGMP/ND entry).
    let live = node.conntrack_count().unwrap() as i64;
    let copied = t.lines().count() as i64;
    assert!(
        (copied - live).abs() <= 2,
        "{copied} lines vs {live} live entries:\n{t}"
    );
}

#[test]
fn node_config_files_land_verbatim() {
    let Some(lab) = require_lab() else { return };
    if !lab.require_collector() {
        return;
    }
    let mut node = lab.node().flannel().pods(3).build().unwrap();
    let leak = node.leak_netns().unwrap();
    let run = node.collect(FAST).unwrap();
    let b = open(&run);
    for (bundle_path, node_path) in [
        (
            format!("{}/10-flannel.conflist", layout::config::CNI_NET_D),
            "/etc/cni/net.d/10-flannel.conflist".to_string(),
        ),
        (
            layout::config::KUBELET_CONFIG.to_string(),
            "/var/lib/kubelet/config.yaml".to_string(),
        ),
        (
            layout::config::FLANNEL_SUBNET.to_string(),
            "/run/flannel/subnet.env".to_string(),
        ),
        (
            format!("{}/cbr0/{}", layout::config::CNI_NETWORKS, leak.ip),
            format!("/var/lib/cni/networks/cbr0/{}", leak.ip),
        ),
    ] {
        let live = node.run_in_node(&["cat", &node_path]).unwrap().stdout;
        assert_eq!(text(&b, &bundle_path), live, "{bundle_path}");
    }
    // One host-local reservation per pod, plus the leaked one, plus last_reserved_ip.0.
    let reservations = b
        .manifest()
        .artifacts
        .iter()
        .filter(|r| {
            r.path
                .starts_with(&format!("{}/cbr0/", layout::config::CNI_NETWORKS))
        })
        .count();
    assert_eq!(reservations, node.pods().len() + 2);
}

#[test]
fn node_faults_show_in_the_bundle_as_built() {
    let Some(lab) = require_lab() else { return };
    if !lab.require_collector() {
        return;
    }
    use netsnap_bundle::native::NetnsSnapshot;
    let mut node = lab.node().flannel().pods(3).build().unwrap();
    node.set_ip_forward(false).unwrap();
    let bridge_nf = node.set_bridge_nf_call_iptables(false).is_ok();
    node.set_pod_mtu(1, 1500).unwrap();
    let orphan = node.orphan_veth().unwrap();
    let run = node.collect(FAST).unwrap();
    let b = open(&run);

    let sysctls: BTreeMap<String, String> =
        serde_json::from_str(&text(&b, layout::node::SYSCTLS)).unwrap();
    assert_eq!(sysctls["net.ipv4.ip_forward"], "0");
    if bridge_nf {
        assert_eq!(sysctls["net.bridge.bridge-nf-call-iptables"], "0");
    }

    let host: NetnsSnapshot = serde_json::from_str(&text(
        &b,
        &layout::netns_path(layout::HOST_NETNS, layout::netns::NETLINK),
    ))
    .unwrap();
    let link = |name: &str| host.links.iter().find(|l| l.name == name).unwrap().clone();
    let vx = link("flannel.1");
    assert_eq!(vx.kind.as_deref(), Some("vxlan"));
    assert_eq!(vx.mtu, Some(1450));
    let cni0 = link("cni0");
    for p in node.pods() {
        let l = link(&p.host_veth);
        assert_eq!(l.master_index, Some(cni0.index), "{}", p.host_veth);
        assert_eq!(l.mtu, Some(1450), "host side keeps the overlay MTU");
    }
    // The orphan's peer netns is known to the node netns by id, but to nothing else.
    let o = link(&orphan.host_veth);
    assert_eq!(o.kind.as_deref(), Some("veth"));
    let orphan_nsid = o.link_netnsid.expect("orphan veth has a peer netnsid");
    let idx = index(&b);
    assert!(
        idx.namespaces
            .iter()
            .all(|n| n.host_nsid != Some(orphan_nsid))
    );

    // The pod whose MTU was raised shows 1500 in its own netns, the others 1450.
    for (i, p) in node.pods().iter().enumerate() {
        let id = layout::netns_id(netns_inode(p.pause_pid));
        let snap: NetnsSnapshot =
            serde_json::from_str(&text(&b, &layout::netns_path(&id, layout::netns::NETLINK)))
                .unwrap();
        let eth0 = snap.links.iter().find(|l| l.name == "eth0").unwrap();
        assert_eq!(
            eth0.mtu,
            Some(if i == 1 { 1500 } else { 1450 }),
            "{}",
            p.name
        );
    }
}

#[test]
fn manifest_records_the_collectors_own_resource_usage() {
    let Some(lab) = require_lab() else { return };
    if !lab.require_collector() {
        return;
    }
    let node = lab.node().bridge().pods(3).build().unwrap();
    let run = node.collect(FAST).unwrap();
    let b = open(&run);
    let m = b.manifest();
    assert_eq!(m.format_version, netsnap_bundle::FORMAT_VERSION);
    let u = m
        .collection
        .resource_usage
        .expect("collection.resource_usage in the manifest");
    eprintln!("resource usage {u:?}, /usr/bin/time {:?}", run.max_rss_kib);
    // A Rust binary with tokio, rustls and zstd is more than 1 MiB resident and, streaming,
    // far less than 64 MiB on a 3-pod node.
    assert!(u.peak_rss_kib > 1000 && u.peak_rss_kib < 64 * 1024, "{u:?}");
    // The run spawned programs (iptables-save, nft, ...): their peak is measured apart.
    let spawned = m
        .artifacts
        .iter()
        .any(|a| a.command.is_some() && a.exit_status.is_some());
    assert!(spawned, "no artifact came from a program");
    assert!(u.children_peak_rss_kib > 0, "{u:?}");
    assert!(u.children_peak_rss_kib < 64 * 1024, "{u:?}");
    // A collection with netlink dumps and zstd compression costs some CPU, not minutes.
    let cpu = u.user_cpu_ms + u.system_cpu_ms;
    assert!(cpu > 0 && cpu < 60_000, "{u:?}");
    // /usr/bin/time sees the collector and its children, measured after the manifest:
    // never less than either figure.
    let timed = std::path::Path::new("/usr/bin/time").is_file()
        && std::env::var_os("NETSNAP_LAB_RSS_SAMPLING").is_none();
    if timed {
        let all = run.max_rss_kib.expect("peak RSS from /usr/bin/time");
        assert!(
            all >= u.peak_rss_kib && all >= u.children_peak_rss_kib,
            "/usr/bin/time {all} KiB vs {u:?}"
        );
    }
}

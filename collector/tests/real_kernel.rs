//! The collector against real kernel state: throwaway namespaces, veths,
//! conntrack entries and PATH overrides, asserting on the bundle it writes.
//!
//! Root-needing tests skip with a printed reason unless `NETSNAP_REQUIRE_LAB=1`.
//! The collector runs inside a "node" namespace the test creates, so the
//! node's own netns is the test's, never the machine's.
#![allow(clippy::disallowed_methods, clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Ns, collect, fake_path, lab_available, open, unique};
use netsnap_bundle::native::{NetnsIndex, VethPair};
use netsnap_bundle::{ArtifactStatus, CollectionOutcome, layout};

/// Builds a node namespace with `n` pod namespaces, each `eth0` veth'd to `vh<i>` in the node.
fn build_node(tag: &str, n: usize) -> (Ns, Vec<Ns>) {
    let node = Ns::new(&unique(tag));
    let mut pods = Vec::new();
    let mut batch = String::new();
    for i in 0..n {
        let pod = Ns::new(&format!("{}-p{i}", node.name));
        batch.push_str(&format!(
            "link add vh{i} type veth peer name eth0 netns {}\nlink set vh{i} up\n",
            pod.name
        ));
        pods.push(pod);
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), batch).unwrap();
    node.ip(&["-batch", &file.path().display().to_string()]);
    for (i, pod) in pods.iter().enumerate() {
        pod.ip(&[
            "addr",
            "add",
            &format!("10.244.{}.{}/16", i / 200, i % 200 + 2),
            "dev",
            "eth0",
        ]);
        pod.ip(&["link", "set", "eth0", "up"]);
    }
    (node, pods)
}

#[test]
fn veth_pairs_are_mapped_exactly_with_50_pods() {
    if !lab_available("veth_pairs_are_mapped_exactly_with_50_pods", &["sysctl"]) {
        return;
    }
    let (node, pods) = build_node("v", 50);
    // Different sysctls per namespace prove they are read from each namespace.
    pods[0].exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    pods[1].exec(&["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=2"]);
    node.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=0"]);

    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("b.tar.zst");
    let out = collect(
        Some(&node),
        &["-o", out_path.to_str().unwrap(), "--sample-interval", "0.2"],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b = open(&out_path);

    let index: NetnsIndex =
        serde_json::from_str(&b.read_text(layout::NETNS_INDEX).unwrap().unwrap()).unwrap();
    let pairs: Vec<VethPair> = serde_json::from_str(
        &b.read_text(layout::correlation::VETH_PAIRS)
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    let mut pod_eth0_indexes = BTreeMap::new();
    for (i, pod) in pods.iter().enumerate() {
        let id = layout::netns_id(pod.inode());
        let entry = index
            .namespaces
            .iter()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("{} missing from index", pod.name));
        assert!(entry.names.contains(&pod.name));
        assert!(entry.host_nsid.is_some(), "{id}: host nsid not resolved");
        let mine: Vec<_> = pairs.iter().filter(|p| p.netns == id).collect();
        assert_eq!(mine.len(), 1, "{id}: {mine:?}");
        let p = mine[0];
        assert_eq!(p.ifname, "eth0");
        assert_eq!(p.ifindex, pod.ifindex("eth0"));
        assert_eq!(p.peer_netns, layout::HOST_NETNS);
        assert_eq!(p.peer_ifname, format!("vh{i}"));
        assert_eq!(p.peer_ifindex, node.ifindex(&format!("vh{i}")));
        pod_eth0_indexes.insert(p.ifindex, ());
        // The per-namespace native snapshot is there and names the pod address.
        let snap = b
            .read_text(&layout::netns_path(&id, layout::netns::NETLINK))
            .unwrap()
            .unwrap();
        assert!(snap.contains(&format!("10.244.{}.{}", i / 200, i % 200 + 2)));
    }
    // The point of namespace identity: every pod's eth0 has the same index.
    assert_eq!(pod_eth0_indexes.len(), 1, "indexes repeat across pods");

    let sysctls = |id: &str| -> BTreeMap<String, String> {
        serde_json::from_str(
            &b.read_text(&layout::netns_path(id, layout::netns::SYSCTLS))
                .unwrap()
                .unwrap(),
        )
        .unwrap()
    };
    let p0 = sysctls(&layout::netns_id(pods[0].inode()));
    let p1 = sysctls(&layout::netns_id(pods[1].inode()));
    let host = sysctls(layout::HOST_NETNS);
    assert_eq!(p0["net.ipv4.ip_forward"], "1");
    assert_eq!(host["net.ipv4.ip_forward"], "0");
    assert_eq!(p1["net.ipv4.conf.all.rp_filter"], "2");
    assert!(p1.contains_key("net.ipv4.conf.eth0.rp_filter"));

    // Second sample of link counters exists for a pod namespace.
    let rec = b
        .record(&layout::netns_path(
            &layout::netns_id(pods[3].inode()),
            layout::netns::LINK_STATS_2,
        ))
        .expect("link-stats.2 record");
    assert_eq!(rec.status, ArtifactStatus::Ok);
}

#[test]
fn hanging_tool_is_cut_off_and_the_rest_lands() {
    if !lab_available(
        "hanging_tool_is_cut_off_and_the_rest_lands",
        &["iptables-legacy-save", "nft"],
    ) {
        return;
    }
    let node = Ns::new(&unique("h"));
    let bins = tempfile::tempdir().unwrap();
    let marker = format!(
        "{}.{}",
        40 + std::process::id() % 50,
        std::process::id() % 997
    );
    let script = format!("#!/bin/sh\necho '# partial output'\nsleep {marker}\n");
    let path = fake_path(bins.path(), &[], &[("iptables-save", &script)]);
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("b.tar.zst");
    let start = Instant::now();
    let out = collect(
        Some(&node),
        &[
            "-o",
            out_path.to_str().unwrap(),
            "--timeout",
            "1",
            "--sample-interval",
            "0.2",
        ],
        &[("PATH", &path)],
    );
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(took < Duration::from_secs(20), "took {took:?}");
    let b = open(&out_path);
    let rec = b.record(layout::iptables::SAVE).expect("record");
    assert_eq!(rec.status, ArtifactStatus::Partial, "{rec:?}");
    // A ruleset dump may stay silent 4x --timeout; it printed one line, then nothing.
    let err = rec.error.as_deref().unwrap_or_default();
    assert!(
        err.starts_with("timed out after 4") && err.ends_with("(no output for 4s)"),
        "{err}"
    );
    // A core artifact was cut: the outcome says so, and the summary names the fix.
    assert_eq!(b.manifest().collection.outcome, CollectionOutcome::Partial);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("PARTIAL bundle")
            && stderr.contains(
                "iptables/iptables-save.txt (iptables-save -c) is incomplete: timed out after 4"
            )
            && stderr.contains("rerun with --timeout 2s"),
        "{stderr}"
    );
    // The fake iptables-save is not iptables-nft-save: that one ran on its own.
    assert_eq!(
        b.record(layout::iptables::NFT_SAVE).unwrap().status,
        ArtifactStatus::Ok
    );
    assert_eq!(
        b.read_text(layout::iptables::SAVE).unwrap().unwrap(),
        "# partial output\n"
    );
    // The rest is intact.
    for p in [
        layout::iptables::LEGACY_SAVE,
        layout::nft::RULESET,
        layout::node::SYSCTLS,
        layout::NETNS_INDEX,
    ] {
        let r = b.record(p).unwrap_or_else(|| panic!("{p} missing"));
        assert_eq!(r.status, ArtifactStatus::Ok, "{p}: {r:?}");
    }
    // The sleeping child was killed with its process group.
    std::thread::sleep(Duration::from_millis(200));
    let survivors: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&marker) && c.contains("sleep"))
        .collect();
    assert!(survivors.is_empty(), "still running: {survivors:?}");
}

#[test]
fn missing_conntrack_falls_back_to_proc() {
    if !lab_available("missing_conntrack_falls_back_to_proc", &["conntrack"]) {
        return;
    }
    let node = Ns::new(&unique("c"));
    // A real entry in the node namespace's own table.
    node.exec(&[
        "conntrack",
        "-I",
        "-p",
        "tcp",
        "-s",
        "10.99.7.1",
        "-d",
        "10.99.7.2",
        "--sport",
        "4242",
        "--dport",
        "80",
        "--state",
        "ESTABLISHED",
        "-t",
        "120",
        "-u",
        "ASSURED",
    ]);
    let bins = tempfile::tempdir().unwrap();
    let path = fake_path(bins.path(), &["conntrack"], &[]);
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("b.tar.zst");
    let out = collect(
        Some(&node),
        &["-o", out_path.to_str().unwrap(), "--sample-interval", "0.2"],
        &[("PATH", &path)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b = open(&out_path);
    let table = b.record(layout::conntrack::TABLE).unwrap();
    assert_eq!(table.status, ArtifactStatus::Unavailable);
    assert_eq!(
        table.error.as_deref(),
        Some("program not installed: conntrack")
    );
    let proc_rec = b.record(layout::conntrack::PROC_TABLE).unwrap();
    assert_eq!(
        proc_rec.attributes.get("source").map(String::as_str),
        Some("procfs")
    );
    if std::path::Path::new("/proc/net/nf_conntrack").exists() {
        assert_eq!(proc_rec.status, ArtifactStatus::Ok, "{proc_rec:?}");
        let text = b.read_text(layout::conntrack::PROC_TABLE).unwrap().unwrap();
        assert!(
            text.contains("src=10.99.7.1") && text.contains("dport=80"),
            "{text}"
        );
    } else {
        assert_eq!(proc_rec.status, ArtifactStatus::Unavailable);
        assert!(
            proc_rec
                .error
                .as_deref()
                .unwrap_or("")
                .contains("does not exist")
        );
    }
    // -S and -C need the program too: recorded unavailable, not failed.
    assert_eq!(
        b.record(layout::conntrack::STATS).unwrap().status,
        ArtifactStatus::Unavailable
    );
    // With the program present, the same entry is in conntrack -L.
    let out_path2 = dir.path().join("c.tar.zst");
    let out = collect(
        Some(&node),
        &[
            "-o",
            out_path2.to_str().unwrap(),
            "--sample-interval",
            "0.2",
        ],
        &[],
    );
    assert!(out.status.success());
    let b2 = open(&out_path2);
    let text = b2.read_text(layout::conntrack::TABLE).unwrap().unwrap();
    assert!(text.contains("src=10.99.7.1"), "{text}");
    assert_eq!(
        b2.record(layout::conntrack::PROC_TABLE).unwrap().status,
        ArtifactStatus::Skipped
    );
}

#[test]
fn sigterm_writes_a_valid_partial_bundle() {
    if !lab_available("sigterm_writes_a_valid_partial_bundle", &[]) {
        return;
    }
    let node = Ns::new(&unique("t"));
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("b.tar.zst");
    let child = std::process::Command::new("ip")
        .args(["netns", "exec", &node.name])
        .arg(common::bin())
        .args(["--no-api", "--quiet", "--sample-interval", "20", "-o"])
        .arg(&out_path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the bundle writer exists (signal handlers are registered before it),
    // then give the steps a moment to start.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(20)
        && !std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(".netsnap-"))
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(700));
    // `ip netns exec` execs the collector, so the child pid is the collector.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let start = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b = open(&out_path);
    assert_eq!(
        b.manifest().collection.outcome,
        CollectionOutcome::Interrupted
    );
    // What finished before the signal is there; the second sample says why it is not.
    assert_eq!(
        b.record(layout::node::SYSCTLS).unwrap().status,
        ArtifactStatus::Ok
    );
    let second = b.record(layout::conntrack::PROC_STAT_2).unwrap();
    if second.status != ArtifactStatus::Unavailable {
        assert_eq!(second.status, ArtifactStatus::Failed, "{second:?}");
        assert_eq!(
            second.error.as_deref(),
            Some("second sample not taken: interrupted (Ctrl-C/SIGTERM)")
        );
    }
    // No temp files left behind next to the bundle.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn deadline_cuts_a_hanging_tool_and_marks_the_bundle() {
    if !lab_available("deadline_cuts_a_hanging_tool_and_marks_the_bundle", &[]) {
        return;
    }
    let node = Ns::new(&unique("d"));
    let bins = tempfile::tempdir().unwrap();
    let script = "#!/bin/sh\nexec sleep 47\n";
    let path = fake_path(bins.path(), &[], &[("iptables-save", script)]);
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("b.tar.zst");
    let start = Instant::now();
    let out = collect(
        Some(&node),
        &[
            "-o",
            out_path.to_str().unwrap(),
            "--timeout",
            "30",
            "--deadline",
            "2",
            "--sample-interval",
            "0.2",
        ],
        &[("PATH", &path)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    let b = open(&out_path);
    assert_eq!(
        b.manifest().collection.outcome,
        CollectionOutcome::DeadlineExceeded
    );
    // Silent, but within its 4 x 30 s budget: only the deadline stops it.
    let rec = b.record(layout::iptables::SAVE).unwrap();
    assert_eq!(rec.status, ArtifactStatus::Failed, "{rec:?}");
    assert_eq!(rec.error.as_deref(), Some("global deadline exceeded"));
    assert!(
        b.manifest()
            .collection
            .notes
            .iter()
            .any(|n| n.starts_with("incomplete: iptables/iptables-save.txt")
                && n.ends_with("rerun with --deadline 4s")),
        "{:?}",
        b.manifest().collection.notes
    );
    assert_eq!(
        b.record(layout::node::SYSCTLS).unwrap().status,
        ArtifactStatus::Ok
    );
}

#[test]
fn host_root_files_are_copied_verbatim() {
    // Read-only on the machine: only a temp tree is the "host root".
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::create_dir_all(r.join("etc/cni/net.d")).unwrap();
    std::fs::create_dir_all(r.join("var/lib/cni/networks/cbr0")).unwrap();
    std::fs::create_dir_all(r.join("var/lib/kubelet")).unwrap();
    let conflist = "{\"cniVersion\":\"1.0.0\",\"name\":\"cbr0\",\"plugins\":[{\"type\":\"bridge\",\"hairpinMode\":true}]}\n";
    std::fs::write(r.join("etc/cni/net.d/10-bridge.conflist"), conflist).unwrap();
    std::fs::write(
        r.join("var/lib/cni/networks/cbr0/10.244.0.5"),
        "abc123\neth0",
    )
    .unwrap();
    std::fs::write(
        r.join("var/lib/cni/networks/cbr0/last_reserved_ip.0"),
        "10.244.0.5",
    )
    .unwrap();
    std::fs::write(
        r.join("var/lib/kubelet/config.yaml"),
        "clusterDNS:\n- 10.96.0.10\nhairpinMode: promiscuous-bridge\n",
    )
    .unwrap();
    std::os::unix::fs::symlink("/proc", r.join("proc")).unwrap();
    std::os::unix::fs::symlink("/sys", r.join("sys")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("b.tar.zst");
    let out = collect(
        None,
        &[
            "-o",
            out_path.to_str().unwrap(),
            "--host-root",
            r.to_str().unwrap(),
            "--sample-interval",
            "0.2",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b = open(&out_path);
    assert_eq!(
        b.read_text("cni/net.d/10-bridge.conflist")
            .unwrap()
            .unwrap(),
        conflist
    );
    assert_eq!(
        b.read_text("cni/networks/cbr0/10.244.0.5")
            .unwrap()
            .unwrap(),
        "abc123\neth0"
    );
    assert!(b.record("cni/networks/cbr0/last_reserved_ip.0").is_some());
    assert!(
        b.read_text(layout::config::KUBELET_CONFIG)
            .unwrap()
            .unwrap()
            .contains("10.96.0.10")
    );
    let flannel = b.record(layout::config::FLANNEL_SUBNET).unwrap();
    assert_eq!(flannel.status, ArtifactStatus::Unavailable);
    assert!(flannel.error.as_deref().unwrap().contains("does not exist"));
    // os-release is absent in the fake root: recorded, not invented.
    assert_eq!(
        b.record(layout::node::OS_RELEASE).unwrap().status,
        ArtifactStatus::Unavailable
    );
}

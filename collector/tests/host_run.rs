//! Runs the real binary on this machine's own (host) namespace, read-only:
//! `netsnap-collect --no-api -o x.tar.zst`, then opens the bundle with
//! verification and checks that every key artifact is either there or
//! recorded with a reason.
#![allow(clippy::disallowed_methods, clippy::unwrap_used)]

mod common;

use netsnap_bundle::{ArtifactStatus, CollectionOutcome, layout};

#[test]
fn host_run_writes_a_verifiable_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("x.tar.zst");
    let out = common::collect(
        None,
        &["-o", out_path.to_str().unwrap(), "--sample-interval", "0.3"],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // stdout carries only the bundle path.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        out_path.display().to_string()
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("wrote"), "{stderr}");

    let b = common::open(&out_path);
    let m = b.manifest();
    assert_eq!(m.tool.name, "netsnap-collect");
    assert_eq!(m.collection.outcome, CollectionOutcome::Complete);
    assert!(!m.node.kernel_release.is_empty());
    assert_eq!(m.collection.options["no_api"], serde_json::json!(true));
    // The API/DNS step options are recorded too.
    assert_eq!(m.collection.options["dns_from"], serde_json::json!("3"));
    assert_eq!(m.collection.options["kubeconfig"], serde_json::Value::Null);

    let key = [
        layout::NETNS_INDEX,
        layout::correlation::VETH_PAIRS,
        &layout::netns_path(layout::HOST_NETNS, layout::netns::NETLINK),
        &layout::netns_path(layout::HOST_NETNS, layout::netns::SYSCTLS),
        &layout::netns_path(layout::HOST_NETNS, layout::netns::IP_ADDR),
        layout::node::SYSCTLS,
        layout::node::KERNEL_LOG,
        layout::node::UNAME,
        layout::node::OS_RELEASE,
        layout::node::TOOL_VERSIONS,
        layout::node::BRIDGE_PORTS,
        layout::node::PRIVILEGES,
        layout::node::IP_RULE,
        layout::conntrack::TABLE,
        layout::conntrack::PROC_TABLE,
        layout::conntrack::STATS,
        layout::conntrack::PROC_STAT,
        layout::conntrack::PROC_STAT_2,
        layout::conntrack::SYSCTLS,
        layout::iptables::SAVE,
        layout::iptables::SAVE6,
        layout::iptables::LEGACY_SAVE,
        layout::iptables::NFT_SAVE,
        layout::iptables::IPSET,
        layout::nft::RULESET,
        layout::ipvs::LIST,
        layout::ipvs::PROC,
        layout::config::KUBELET_CONFIG,
        layout::config::FLANNEL_SUBNET,
    ];
    for path in key {
        let rec = b
            .record(path)
            .unwrap_or_else(|| panic!("{path}: no record"));
        if rec.status.has_content() {
            assert!(
                b.artifact_file(path).is_some(),
                "{path}: record without bytes"
            );
        } else {
            assert!(
                rec.error.as_deref().is_some_and(|e| !e.is_empty()),
                "{path}: {:?} without a reason",
                rec.status
            );
        }
    }
    // Facts that hold on any Linux machine.
    let idx = b.read_text(layout::NETNS_INDEX).unwrap().unwrap();
    assert!(idx.contains("\"is_host\": true"));
    let host = b
        .read_text(&layout::netns_path(
            layout::HOST_NETNS,
            layout::netns::NETLINK,
        ))
        .unwrap()
        .unwrap();
    assert!(host.contains("\"name\": \"lo\""), "loopback missing");
    // IPVS: present only when the kernel has it; otherwise said so.
    let ipvs = b.record(layout::ipvs::LIST).unwrap();
    if !std::path::Path::new("/proc/net/ip_vs").exists() {
        assert_eq!(ipvs.status, ArtifactStatus::Unavailable);
        assert!(ipvs.error.as_deref().unwrap().contains("no IPVS"));
    }
    // iptables backend recorded for the plain iptables-save.
    let save = b.record(layout::iptables::SAVE).unwrap();
    if save.status.has_content() {
        let backend = save.attributes.get("backend").map(String::as_str);
        assert!(
            matches!(backend, Some("nft") | Some("legacy")),
            "{backend:?}"
        );
    }
    // Each distinct dump once: an explicit variant that is the same program as
    // iptables-save is skipped and names the dump that holds its bytes.
    for p in [layout::iptables::NFT_SAVE, layout::iptables::LEGACY_SAVE] {
        let r = b.record(p).unwrap();
        if r.status == ArtifactStatus::Skipped {
            assert_eq!(
                r.attributes
                    .get(netsnap_bundle::SAME_AS_ATTRIBUTE)
                    .map(String::as_str),
                Some(layout::iptables::SAVE),
                "{r:?}"
            );
            assert_eq!(r.attributes.get("backend"), save.attributes.get("backend"));
        }
    }
    if b.record(layout::iptables::LEGACY_SAVE)
        .unwrap()
        .status
        .has_content()
    {
        assert_eq!(
            b.record(layout::iptables::LEGACY_SAVE).unwrap().attributes["backend"],
            "legacy"
        );
    }
}

#[test]
fn unwritable_output_exits_2() {
    let out = common::collect(None, &["-o", "/nonexistent-dir-netsnap/x.tar.zst"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("error"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn help_says_read_only_and_exit_codes() {
    let out = std::process::Command::new(common::bin())
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("READ-ONLY"), "{text}");
    assert!(text.contains("Exit codes"), "{text}");
}

#[test]
fn unprivileged_run_explains_and_still_writes_a_bundle() {
    // Needs root to drop to nobody; elsewhere the plain run above already is unprivileged.
    if !nix::unistd::geteuid().is_root() || !std::path::Path::new("/usr/bin/setpriv").exists() {
        eprintln!(
            "SKIP unprivileged_run_explains_and_still_writes_a_bundle: needs root and setpriv"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let out_path = dir.path().join("u.tar.zst");
    let out = std::process::Command::new("/usr/bin/setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(common::bin())
        .args(["--no-api", "--quiet", "--sample-interval", "0.2", "-o"])
        .arg(&out_path)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr.matches("missing privileges").count(),
        1,
        "one explanation line: {stderr}"
    );
    assert!(stderr.contains("CAP_NET_ADMIN"), "{stderr}");
    let b = common::open(&out_path);
    let p: netsnap_bundle::native::Privileges =
        serde_json::from_str(&b.read_text(layout::node::PRIVILEGES).unwrap().unwrap()).unwrap();
    assert_eq!(p.euid, 65534);
    assert!(!p.cap_net_admin && !p.cap_sys_admin);
    assert!(
        b.manifest()
            .collection
            .notes
            .iter()
            .any(|n| n.contains("missing privileges"))
    );
    // The host namespace is still read natively.
    assert!(
        b.record(&layout::netns_path(
            layout::HOST_NETNS,
            layout::netns::NETLINK
        ))
        .unwrap()
        .status
        .has_content()
    );
    // The kernel log is there or says why not.
    let klog = b.record(layout::node::KERNEL_LOG).unwrap();
    assert!(
        klog.status.has_content() || klog.error.is_some(),
        "{klog:?}"
    );
}

//! How netsnap-collect gets onto a node, checked on lab nodes: `-o -` streams
//! the finished bundle to stdout; the *static* (musl) collector runs in a mount
//! namespace whose root holds nothing but the binary and the node's `/proc`,
//! `/sys`, `/run/netns` (no libc, no shell, no tools) and still writes a
//! complete node-local bundle; with the node's root at `/host` it runs the
//! node's own netfilter tools chrooted into it, before any tool of its own, and
//! records which binary, from where and what version produced each artifact.
//!
//! The static binary comes from `NETSNAP_STATIC_COLLECT_BIN`, else
//! `dist/x86_64-unknown-linux-musl/netsnap-collect` (`scripts/build-static`).
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use netsnap_bundle::{ArtifactRecord, ArtifactStatus, Bundle, ReaderOptions, layout};
use netsnap_lab::{LabNode, collector_bin, lab_required, require_lab};

fn static_collector() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let p = std::env::var_os("NETSNAP_STATIC_COLLECT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("dist/x86_64-unknown-linux-musl/netsnap-collect"));
    if p.is_file() {
        return Some(p);
    }
    let why = format!(
        "static collector {} not found: run scripts/build-static",
        p.display()
    );
    if lab_required() {
        panic!("{why}");
    }
    eprintln!("SKIP: {why}");
    None
}

/// Runs `collector args…` chrooted into a fresh root that holds only the binary,
/// the node's /proc, /sys, /run/netns, an /out directory and, with `host`, the
/// node's whole root at /host. `decoy` puts a program of the root's own under
/// /usr/sbin (the collector's "container" tools). Returns (stderr, bundle path).
fn run_in_bare_root(
    node: &LabNode,
    collector: &Path,
    host: bool,
    decoy: Option<&str>,
    args: &str,
) -> (String, PathBuf) {
    let tmp = node.tmp_dir();
    let root = tmp.join(format!("bare-root-{}", std::process::id()));
    let out = tmp.join(format!("bare-out-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    let (r, o, bin) = (root.display(), out.display(), collector.display());
    let mut script = format!(
        "mount -t tmpfs -o mode=755 bare {r}\n\
         mkdir -p {r}/proc {r}/sys {r}/run/netns {r}/out\n\
         cp {bin} {r}/netsnap-collect\n\
         mount --rbind /proc {r}/proc\n\
         mount --rbind /sys {r}/sys\n\
         mount --rbind /run/netns {r}/run/netns\n\
         mount --bind {o} {r}/out\n"
    );
    if host {
        script.push_str(&format!("mkdir {r}/host\nmount --rbind -o ro / {r}/host\n"));
    }
    if let Some(name) = decoy {
        // The static collector itself stands in for a container's own copy: it
        // needs no libc here, and if it ran as `iptables-save -c` it would fail.
        script.push_str(&format!(
            "mkdir -p {r}/usr/sbin\ncp {bin} {r}/usr/sbin/{name}\n"
        ));
    }
    script.push_str(&format!(
        "exec chroot {r} /netsnap-collect {args} -o /out/bundle.tar.zst\n"
    ));
    let outp = node
        .run_in_node_raw(
            &[
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-ec",
                &script,
            ],
            &[(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )],
            Duration::from_secs(120),
        )
        .unwrap();
    assert!(
        outp.success(),
        "collector in the bare root failed: {}\n{}",
        outp.status,
        outp.stderr
    );
    (outp.stderr, out.join("bundle.tar.zst"))
}

fn record<'a>(b: &'a Bundle, path: &str) -> &'a ArtifactRecord {
    b.manifest()
        .artifacts
        .iter()
        .find(|a| a.path == path)
        .unwrap_or_else(|| panic!("{path} not in the manifest"))
}

const FAST: &str = "--no-api --sample-interval 0.2 --quiet";

#[test]
fn dash_o_dash_streams_the_finished_bundle_to_stdout_and_nothing_else() {
    let Some(lab) = require_lab() else { return };
    if !lab.require_collector() {
        return;
    }
    let node = lab.node().bridge().pods(2).build().unwrap();
    let bin = collector_bin().unwrap();
    let tmp = node.tmp_dir();
    let spool = tmp.join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let out = tmp.join("streamed.tar.zst");
    let err = tmp.join("streamed.err");
    // Through a pipe, as `kubectl exec … -o -` delivers it.
    let script = format!(
        "TMPDIR={} {} {FAST} -o - 2>{} | cat >{}",
        spool.display(),
        bin.display(),
        err.display(),
        out.display()
    );
    node.sh(&script).unwrap();
    let stderr = std::fs::read_to_string(&err).unwrap();
    assert!(
        stderr.contains("wrote the bundle to stdout"),
        "stderr: {stderr}"
    );
    let b = Bundle::open(&out, &ReaderOptions::default())
        .unwrap_or_else(|e| panic!("stdout is not a bundle: {e}\n{stderr}"));
    assert!(b.manifest().artifacts.len() > 20);
    assert_eq!(record(&b, layout::NETNS_INDEX).status, ArtifactStatus::Ok);
    // Nothing but the bundle went to stdout: the file ends where the bundle does
    // (the reader would refuse trailing text), and the spool is gone.
    assert_eq!(
        std::fs::read_dir(&spool).unwrap().count(),
        0,
        "spool directory left behind"
    );
}

#[test]
fn static_collector_without_libc_or_tools_writes_a_complete_node_local_bundle() {
    let Some(lab) = require_lab() else { return };
    let Some(collector) = static_collector() else {
        return;
    };
    let node = lab.node().bridge().pods(3).build().unwrap();
    let (stderr, bundle) = run_in_bare_root(&node, &collector, false, None, FAST);
    let b = Bundle::open(&bundle, &ReaderOptions::default())
        .unwrap_or_else(|e| panic!("bundle unreadable: {e}\n{stderr}"));
    let m = b.manifest();

    // Every natively read artifact is complete; every tool is recorded as
    // unavailable with the reason, not failed and not silently absent.
    let mut tools = 0;
    for a in &m.artifacts {
        // The kernel log is read from /dev/kmsg (or by dmesg): a root with no /dev and no
        // tools cannot have it, and says so; recorded failed (not unavailable) so rules
        // that need it are not evaluated instead of passing on an empty log.
        if a.path == layout::node::KERNEL_LOG {
            assert_eq!(a.status, ArtifactStatus::Failed, "{a:?}");
            assert!(
                a.error.as_deref().unwrap_or_default().contains("/dev/kmsg"),
                "{a:?}"
            );
            continue;
        }
        assert!(
            !matches!(a.status, ArtifactStatus::Failed | ArtifactStatus::Partial),
            "{} {:?}: {:?}\n{stderr}",
            a.path,
            a.status,
            a.error
        );
        if a.command.is_some() && a.status == ArtifactStatus::Unavailable {
            tools += 1;
            let err = a.error.as_deref().unwrap_or_default();
            // Not installed, or not needed by this kernel (no IPVS: ipvsadm is not run).
            assert!(
                err.starts_with("program not installed: ") || err.starts_with("kernel has no IPVS"),
                "{}: {err}",
                a.path
            );
        }
    }
    assert!(
        tools >= 5,
        "expected the tool-based artifacts as unavailable"
    );
    assert_eq!(
        record(&b, layout::iptables::SAVE).status,
        ArtifactStatus::Unavailable
    );
    // The native namespace discovery and netlink dumps see every pod.
    let index: netsnap_bundle::native::NetnsIndex =
        serde_json::from_str(&b.read_text(layout::NETNS_INDEX).unwrap().unwrap()).unwrap();
    assert_eq!(index.namespaces.len(), node.pods().len() + 1, "{index:?}");
    for ns in &index.namespaces {
        let netlink = layout::netns_path(&ns.id, layout::netns::NETLINK);
        assert_eq!(record(&b, &netlink).status, ArtifactStatus::Ok, "{netlink}");
    }
}

#[test]
fn in_a_pod_the_nodes_own_netfilter_tools_run_chrooted_and_are_recorded() {
    let Some(lab) = require_lab() else { return };
    let Some(collector) = static_collector() else {
        return;
    };
    let node = lab.node().bridge().pods(2).build().unwrap();
    let args = format!("{FAST} --host-root /host");
    let (stderr, bundle) = run_in_bare_root(&node, &collector, true, Some("iptables-save"), &args);
    let b = Bundle::open(&bundle, &ReaderOptions::default())
        .unwrap_or_else(|e| panic!("bundle unreadable: {e}\n{stderr}"));

    let save = record(&b, layout::iptables::SAVE);
    assert_eq!(save.status, ArtifactStatus::Ok, "{save:?}\n{stderr}");
    let attr = |a: &ArtifactRecord, k: &str| a.attributes.get(k).cloned().unwrap_or_default();
    assert_eq!(attr(save, "program_origin"), "host-root", "{save:?}");
    assert_eq!(attr(save, "program_path"), "/host/usr/sbin/iptables-save");
    let node_version = node.run_in_node(&["iptables-save", "--version"]).unwrap();
    assert_eq!(attr(save, "program_version"), node_version.stdout.trim());
    // The node's rules, read by the node's binary (the lab's pod masquerade rule).
    let rules = b.read_text(layout::iptables::SAVE).unwrap().unwrap();
    let live = node.run_in_node(&["iptables-save"]).unwrap().stdout;
    // The collector saves with counters (`iptables-save -c`: `[pkts:bytes] -A …`).
    let chain = |t: &str| {
        t.lines()
            .filter(|l| l.starts_with("-A ") || (l.starts_with('[') && l.contains("] -A ")))
            .count()
    };
    assert_eq!(chain(&rules), chain(&live), "{rules}");

    // A program that is not a netfilter tool and only exists on the host also
    // runs chrooted, with its host-root path arguments translated: the raw
    // `ip addr` of every pod namespace via the node's nsenter.
    let index: netsnap_bundle::native::NetnsIndex =
        serde_json::from_str(&b.read_text(layout::NETNS_INDEX).unwrap().unwrap()).unwrap();
    for ns in index.namespaces.iter().filter(|n| !n.is_host) {
        let p = layout::netns_path(&ns.id, layout::netns::IP_ADDR);
        let a = record(&b, &p);
        assert_eq!(a.status, ArtifactStatus::Ok, "{a:?}");
        assert_eq!(attr(a, "program_origin"), "host-root");
        assert!(b.read_text(&p).unwrap().unwrap().contains("eth0"));
    }
    let ct = record(&b, layout::conntrack::TABLE);
    if ct.status == ArtifactStatus::Ok {
        assert_eq!(attr(ct, "program_origin"), "host-root", "{ct:?}");
        assert!(
            attr(ct, "program_version").starts_with("conntrack v"),
            "{ct:?}"
        );
    }
}

//! A `--host-root` tree built to trap the collector: FIFOs where `/proc`,
//! `/sys` and config files should be, a character device, and symlinks that
//! point outside the tree. Every file read must stay inside the tree, refuse
//! what is not a regular file, and the run must finish without waiting for
//! its deadline (a FIFO read used to block an async worker past it).
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::disallowed_methods)] // runs zstd(1) on the bundle

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{collect, lab_available, open};
use netsnap_bundle::{ArtifactStatus, CollectionOutcome, layout};
use nix::sys::stat::{Mode, SFlag, makedev, mknod};

fn fifo(p: &Path) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    nix::unistd::mkfifo(p, Mode::from_bits_truncate(0o644)).unwrap();
}

#[test]
fn fifos_devices_and_escaping_symlinks_under_host_root_are_refused_in_time() {
    if !lab_available(
        "fifos_devices_and_escaping_symlinks_under_host_root_are_refused_in_time",
        &["zstd"],
    ) {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    // A secret outside the tree, reachable only by escaping it.
    let outside = tempfile::tempdir().unwrap();
    let canary = format!("OUTSIDE-CANARY-{}", std::process::id());
    let secret = outside.path().join("secret");
    std::fs::write(&secret, &canary).unwrap();

    let netd = r.join("etc/cni/net.d");
    std::fs::create_dir_all(&netd).unwrap();
    std::fs::write(
        netd.join("10-ok.conflist"),
        "{\"name\":\"ok\",\"plugins\":[]}\n",
    )
    .unwrap();
    fifo(&netd.join("20-fifo.conf"));
    std::fs::create_dir_all(r.join("dev")).unwrap();
    mknod(
        &r.join("dev/zero"),
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        makedev(1, 5),
    )
    .unwrap();
    std::os::unix::fs::symlink("/dev/zero", netd.join("30-zero.conf")).unwrap();
    std::os::unix::fs::symlink(&secret, netd.join("40-abs.conf")).unwrap();
    let up = format!("../../../../../../../../..{}", secret.display());
    std::os::unix::fs::symlink(&up, netd.join("50-rel.conf")).unwrap();
    fifo(&r.join("var/lib/kubelet/config.yaml"));
    fifo(&r.join("run/flannel/subnet.env"));
    fifo(&r.join("proc/sys/net/ipv4/ip_forward"));
    fifo(&r.join("proc/sys/net/netfilter/nf_conntrack_max"));
    fifo(&r.join("proc/net/stat/nf_conntrack"));
    fifo(&r.join("sys/class/net/veth0/brport/hairpin_mode"));

    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("b.tar.zst");
    let start = Instant::now();
    let out = collect(
        None,
        &[
            "-o",
            out_path.to_str().unwrap(),
            "--host-root",
            r.to_str().unwrap(),
            "--sample-interval",
            "0.2",
            "--deadline",
            "30",
        ],
        &[],
    );
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b = open(&out_path);
    assert_eq!(
        b.manifest().collection.outcome,
        CollectionOutcome::Complete,
        "nothing may wait for the deadline ({took:?}): {:?}",
        b.manifest().collection.notes
    );
    assert!(took < Duration::from_secs(30), "{took:?}");

    let rec = |p: &str| {
        b.record(p)
            .unwrap_or_else(|| panic!("no record for {p}"))
            .clone()
    };
    let refused = |p: &str, what: &str| {
        let r = rec(p);
        assert_eq!(r.status, ArtifactStatus::Failed, "{p}: {r:?}");
        assert_eq!(r.size, 0, "{p}");
        let e = r.error.clone().unwrap_or_default();
        assert!(e.starts_with("refused: ") && e.contains(what), "{p}: {e}");
        assert_eq!(
            r.attributes.get("refused").map(String::as_str),
            Some("true")
        );
    };
    refused("cni/net.d/20-fifo.conf", "(a FIFO)");
    refused("cni/net.d/30-zero.conf", "(a character device)");
    refused(layout::config::KUBELET_CONFIG, "(a FIFO)");
    refused(layout::config::FLANNEL_SUBNET, "(a FIFO)");
    // Symlinks out of the tree resolve inside it, where the target does not exist.
    for p in ["cni/net.d/40-abs.conf", "cni/net.d/50-rel.conf"] {
        assert_eq!(rec(p).status, ArtifactStatus::Unavailable, "{:?}", rec(p));
    }
    assert_eq!(
        b.read_text("cni/net.d/10-ok.conflist").unwrap().unwrap(),
        "{\"name\":\"ok\",\"plugins\":[]}\n"
    );
    // A sysctl that is a FIFO is not a value: listed as absent.
    let sysctls = rec(layout::node::SYSCTLS);
    assert!(
        sysctls
            .attributes
            .get("absent")
            .is_some_and(|a| a.split(',').any(|k| k == "net.ipv4.ip_forward")),
        "{sysctls:?}"
    );
    let ports: serde_json::Value =
        serde_json::from_str(&b.read_text(layout::node::BRIDGE_PORTS).unwrap().unwrap()).unwrap();
    assert_eq!(ports["ports"][0]["port"], "veth0");
    assert!(ports["ports"][0]["hairpin"].is_null(), "{ports}");

    let raw = std::process::Command::new("zstd")
        .arg("-dc")
        .arg(&out_path)
        .output()
        .unwrap();
    assert!(raw.status.success());
    assert!(
        !raw.stdout
            .windows(canary.len())
            .any(|w| w == canary.as_bytes()),
        "a byte from outside --host-root reached the bundle"
    );
}

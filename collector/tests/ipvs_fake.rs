//! IPVS on a kernel that has none: the only way to exercise the "IPVS present"
//! path here is a `--host-root` whose `proc/net/ip_vs*` exist and an `ipvsadm`
//! on `$PATH` that prints what the real one prints (format from ipvsadm(8)).
//! Also checks the line cap of `-Lnc` and `/proc/net/ip_vs_conn`.
#![allow(clippy::disallowed_methods, clippy::unwrap_used)]

mod common;

use netsnap_bundle::{ArtifactStatus, TruncationReason, layout};

const LIST: &str = "IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.96.0.1:443 rr
  -> 172.18.0.2:6443              Masq    1      0          0
";

#[test]
fn ipvs_present_is_captured_and_connections_are_capped() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::create_dir_all(r.join("proc/net")).unwrap();
    std::fs::write(r.join("proc/net/ip_vs"), LIST).unwrap();
    let mut conn = String::from(
        "Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData\n",
    );
    for i in 0..10 {
        conn.push_str(&format!(
            "TCP 0A000001 {:04X} 0A600001 01BB AC120002 192B ESTABLISHED     900\n",
            40000 + i
        ));
    }
    std::fs::write(r.join("proc/net/ip_vs_conn"), &conn).unwrap();
    let bins = tempfile::tempdir().unwrap();
    let list_file = bins.path().join("list.txt");
    std::fs::write(&list_file, LIST).unwrap();
    // Prints the list for -Ln*, and 10 connection lines for -Lnc.
    let script = format!(
        "#!/bin/sh\ncase \"$*\" in\n  -Lnc) echo 'IPVS connection entries'; i=0; while [ $i -lt 10 ]; do echo \"TCP 14:59  ESTABLISHED 10.0.0.1:$((40000+i)) 10.96.0.1:443 172.18.0.2:6443\"; i=$((i+1)); done ;;\n  *) cat {} ;;\nesac\n",
        list_file.display()
    );
    let path = common::fake_path(bins.path(), &[], &[("ipvsadm", &script)]);
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("i.tar.zst");
    let out = common::collect(
        None,
        &[
            "-o",
            out_path.to_str().unwrap(),
            "--host-root",
            r.to_str().unwrap(),
            "--ipvs-max-connections",
            "3",
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
    let b = common::open(&out_path);
    for p in [layout::ipvs::LIST, layout::ipvs::STATS, layout::ipvs::RATE] {
        let rec = b.record(p).unwrap();
        assert_eq!(rec.status, ArtifactStatus::Ok, "{p}: {rec:?}");
        assert_eq!(b.read_text(p).unwrap().unwrap(), LIST);
    }
    assert_eq!(
        b.record(layout::ipvs::STATS)
            .unwrap()
            .command
            .as_ref()
            .unwrap(),
        &["ipvsadm", "-Ln", "--stats"]
    );
    for p in [layout::ipvs::CONNECTIONS, layout::ipvs::PROC_CONN] {
        let rec = b.record(p).unwrap();
        assert_eq!(rec.status, ArtifactStatus::Partial, "{p}: {rec:?}");
        assert_eq!(
            rec.truncated.as_ref().unwrap().reason,
            TruncationReason::EntryCap
        );
        let text = b.read_text(p).unwrap().unwrap();
        assert_eq!(text.lines().count(), 3, "{p}: {text}");
        assert!(text.ends_with('\n'));
    }
    assert_eq!(b.read_text(layout::ipvs::PROC).unwrap().unwrap(), LIST);
    // No conntrack in this fake root: recorded, not run.
    let ct = b.record(layout::conntrack::TABLE).unwrap();
    assert_eq!(ct.status, ArtifactStatus::Unavailable);
    assert!(
        ct.error
            .as_deref()
            .unwrap()
            .contains("nf_conntrack is not loaded")
    );
}

//! `netsnap-analyze import` on a directory of hand-collected outputs named after their
//! commands (real captures from `fixtures/raw/`) and on tarballs, including hostile
//! members. The real-sosreport test is a lab test (`tests/tests/import_sos.rs`).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::path::Path;
use std::process::Command;

use netsnap_analyzer::import::normalize_name;
use netsnap_bundle::{ArtifactStatus, Bundle, ReaderOptions, layout};

fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/raw")
            .join(rel),
    )
    .unwrap()
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_netsnap-analyze"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn names_normalize_like_the_documented_table() {
    assert_eq!(normalize_name("ip -d addr.txt"), "ip-d-addr");
    assert_eq!(normalize_name("ip_-d_address"), "ip-d-address");
    assert_eq!(normalize_name("IPTABLES-SAVE.out"), "iptables-save");
    assert_eq!(
        normalize_name("conntrack -L -o extended.log"),
        "conntrack-l-o-extended"
    );
}

#[test]
fn hand_collected_directory_imports_and_analyzes() {
    let src = tempfile::tempdir().unwrap();
    let put = |name: &str, rel: &str| std::fs::write(src.path().join(name), fixture(rel)).unwrap();
    put(
        "iptables-save.txt",
        "iptables/garbled-dnat-version-skew.txt",
    );
    put("ip addr.txt", "ip/seed-node-ip-addr.txt");
    put("ip_route", "ip/node-ip-route.txt");
    put("conntrack -L.txt", "conntrack/conntrack-L.txt");
    put("ipvsadm -Ln", "ipvs/seed-ipvsadm-Ln.txt");
    put("dmesg.txt", "kernel-log/dmesg.txt");
    put("sysctl -a.txt", "sysctl/sysctl-a.txt");
    put("notes.md", "dns/resolv-host.conf"); // unknown name: ignored
    let out = tempfile::tempdir().unwrap();
    let bundle = out.path().join("b.tar.zst");
    let (code, _, err) = run(&[
        "import",
        src.path().to_str().unwrap(),
        "-o",
        bundle.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("HandCollected"), "{err}");
    let b = Bundle::open(&bundle, &ReaderOptions::default()).unwrap();
    let status = |p: &str| b.record(p).unwrap().status;
    for p in [
        layout::iptables::SAVE,
        layout::conntrack::TABLE,
        layout::ipvs::LIST,
        layout::node::KERNEL_LOG,
        layout::node::SYSCTLS,
        "netns/host/ip-addr.txt",
        "netns/host/ip-route.txt",
        "netns/host/netlink.json",
    ] {
        assert_eq!(status(p), ArtifactStatus::Ok, "{p}");
    }
    // Byte for byte, with the source file named.
    assert_eq!(
        b.read_text(layout::iptables::SAVE)
            .unwrap()
            .unwrap()
            .as_bytes(),
        fixture("iptables/garbled-dnat-version-skew.txt")
    );
    let rec = b.record(layout::iptables::SAVE).unwrap();
    assert_eq!(rec.attributes["imported_from"], "iptables-save.txt");
    let nft = b.record(layout::nft::RULESET).unwrap();
    assert_eq!(nft.status, ArtifactStatus::Skipped);
    assert!(nft.error.as_deref().unwrap().contains("nft list ruleset"));
    // The analysis runs on it: the garbled DNAT rule fires with the imported lines.
    let (_, json, _) = run(&["analyze", bundle.to_str().unwrap(), "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let hit = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule_id"] == "iptables-dnat-garbled-version-skew")
        .unwrap_or_else(|| panic!("{json}"));
    assert_eq!(hit["evidence"][0]["line"], 93);
    let ne: Vec<&str> = v["not_evaluated"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["rule_id"].as_str().unwrap())
        .collect();
    assert!(ne.contains(&"nft-service-map-mismatch"), "{ne:?}");
    // The seed tutorial's `ip addr` is viewable.
    let (code, links, _) = run(&["inspect", bundle.to_str().unwrap(), "links"]);
    assert_eq!(code, 0);
    assert!(links.contains("veth4f7342d"), "{links}");
}

#[test]
fn tarballs_import_and_hostile_members_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let tar_path = dir.path().join("sosreport-x.tar");
    {
        let f = std::fs::File::create(&tar_path).unwrap();
        let mut t = tar::Builder::new(f);
        let add = |t: &mut tar::Builder<std::fs::File>, path: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            // Raw name bytes: tar::Builder refuses `..`, a hostile archive does not.
            h.as_gnu_mut().unwrap().name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_cksum();
            t.append(&h, data).unwrap();
        };
        add(
            &mut t,
            "sosreport-n1-2026/sos_commands/kernel/uname_-a",
            b"Linux n1 6.1.0 #1 SMP x86_64 GNU/Linux\n",
        );
        add(
            &mut t,
            "sosreport-n1-2026/sos_commands/networking/ip_-d_address",
            &fixture("ip/node-ip-d-addr.txt"),
        );
        add(
            &mut t,
            "../escape/sos_commands/networking/ip_-4_rule",
            b"0:\tfrom all lookup local\n",
        );
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_size(0);
        link.set_link_name("/etc/passwd").unwrap();
        link.set_path("sosreport-n1-2026/etc/resolv.conf").unwrap();
        link.set_cksum();
        t.append(&link, &[][..]).unwrap();
        t.finish().unwrap();
    }
    // Plain tar, and the same through xz when the system has it.
    let mut inputs = vec![tar_path.clone()];
    if Command::new("xz")
        .arg("-k")
        .arg(&tar_path)
        .status()
        .is_ok_and(|s| s.success())
    {
        inputs.push(dir.path().join("sosreport-x.tar.xz"));
    }
    for input in inputs {
        let bundle = dir.path().join("b.tar.zst");
        let (code, _, err) = run(&[
            "import",
            input.to_str().unwrap(),
            "-o",
            bundle.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{}: {err}", input.display());
        let b = Bundle::open(&bundle, &ReaderOptions::default()).unwrap();
        assert_eq!(b.manifest().node.hostname, "n1");
        assert_eq!(
            b.record("netns/host/ip-addr.txt").unwrap().status,
            ArtifactStatus::Ok
        );
        // The `..` member and the symlink were not taken.
        assert_eq!(
            b.record(layout::node::IP_RULE).unwrap().status,
            ArtifactStatus::Skipped
        );
        assert_eq!(
            b.record("netns/host/resolv.conf").unwrap().status,
            ArtifactStatus::Skipped
        );
        assert!(!dir.path().join("../escape").exists());
        std::fs::remove_file(&bundle).unwrap();
    }
    // Nothing known: a clear one-line error, exit 2.
    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join("readme.txt"), "hello").unwrap();
    let (code, _, err) = run(&[
        "import",
        empty.path().to_str().unwrap(),
        "-o",
        dir.path().join("x.tar.zst").to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("no file named after a known command"), "{err}");
}

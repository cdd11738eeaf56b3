//! `netsnap-collect --redact` on real kernel state: a namespace with a veth
//! pair carrying known addresses and MACs, and a conntrack-free run. Only the
//! redacted bundle reaches the output (no unredacted spool is left), the map
//! lies beside it, and the known values appear in no byte of the bundle.
#![allow(clippy::disallowed_methods, clippy::unwrap_used)]

mod common;

use std::io::Read;

fn all_bytes(path: &std::path::Path) -> String {
    let mut out = Vec::new();
    zstd::stream::read::Decoder::new(std::fs::File::open(path).unwrap())
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn redacted_collection_leaves_no_known_value() {
    if !common::lab_available("redacted_collection_leaves_no_known_value", &[]) {
        return;
    }
    let ns = common::Ns::new(&common::unique("red"));
    let peer = common::unique("rp");
    ns.ip(&["link", "add", "eth7", "type", "veth", "peer", "name", &peer]);
    ns.ip(&["link", "set", "eth7", "address", "02:5e:11:22:33:44"]);
    ns.ip(&["link", "set", &peer, "address", "02:5e:55:66:77:88"]);
    ns.ip(&["addr", "add", "10.77.3.9/24", "dev", "eth7"]);
    ns.ip(&["addr", "add", "fd42:77:3::9/64", "dev", "eth7"]);
    ns.ip(&["link", "set", "eth7", "up"]);
    ns.ip(&["link", "set", &peer, "up"]);
    ns.ip(&["route", "add", "10.88.0.0/16", "via", "10.77.3.1"]);

    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("r.tar.zst");
    let key_path = dir.path().join("k");
    std::fs::write(&key_path, "5a".repeat(32)).unwrap();
    let run = |out: &std::path::Path| {
        common::collect(
            Some(&ns),
            &[
                "-o",
                out.to_str().unwrap(),
                "--sample-interval",
                "0.1",
                "--redact",
                "--key",
                key_path.to_str().unwrap(),
                "--node-name",
                "secret-node-name",
            ],
            &[],
        )
    };
    let out = run(&out_path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Only the bundle and its map: no unredacted spool left beside them.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["k", "r.tar.zst", "r.tar.zst.map.json"]);

    let b = common::open(&out_path);
    let m = b.manifest();
    let r = m.redaction.as_ref().expect("a redaction record");
    assert_eq!(r.tool.name, "netsnap-collect");
    assert_eq!(m.format_version, netsnap_bundle::REDACTED_FORMAT_VERSION);
    // The addresses were there to be redacted: the namespace's link is in the bundle.
    let addr = b.read_text("netns/host/ip-addr.txt").unwrap().unwrap();
    assert!(addr.contains("eth7"), "{addr}");
    assert!(addr.contains("/24") && addr.contains("/64"), "{addr}");

    let hay = all_bytes(&out_path).to_ascii_lowercase();
    let host = nix::unistd::gethostname().unwrap();
    for needle in [
        "10.77.3.9",
        "10.77.3.1",
        "10.88.0.0",
        "fd42:77:3::9",
        "02:5e:11:22:33:44",
        "02:5e:55:66:77:88",
        "secret-node-name",
        host.to_str().unwrap(),
    ] {
        // As a token: the host name `vm` may well be part of `kvm`.
        let needle = needle.to_ascii_lowercase();
        let b = hay.as_bytes();
        let first: Vec<&str> = hay
            .match_indices(&needle)
            .filter(|(i, _)| {
                let before = i.checked_sub(1).map(|j| b[j]);
                let after = b.get(i + needle.len()).copied();
                !before.is_some_and(|c| c.is_ascii_alphanumeric())
                    && !after.is_some_and(|c| c.is_ascii_alphanumeric())
            })
            .take(3)
            .map(|(i, _)| {
                hay.get(i.saturating_sub(60)..(i + 60).min(hay.len()))
                    .unwrap_or("")
            })
            .collect();
        assert!(first.is_empty(), "{needle} leaked: {first:?}");
    }
    // The private range and the prefixes are kept.
    assert!(addr.contains("inet 10."), "{addr}");
    assert!(addr.contains("inet6 fd"), "{addr}");

    // The same key on another run names the node the same way.
    let again = dir.path().join("again.tar.zst");
    assert!(run(&again).status.success());
    let m2 = common::open(&again).manifest().clone();
    assert_eq!(m.node.name, m2.node.name);
    assert_ne!(m.node.name.as_deref(), Some("secret-node-name"));

    // `-o -` has nowhere to put the map unless told.
    let out = common::collect(Some(&ns), &["-o", "-", "--redact"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs --map"));
}

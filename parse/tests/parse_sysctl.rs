//! sysctl parser tests over `fixtures/raw/sysctl/` (real `sysctl` and `grep -r /proc/sys`
//! captures inside a throwaway netns, plus one hand-made file of every form).

// Helpers outside #[test] fns unwrap too; a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use netsnap_parse::sysctl::{parse_sysctl, proc_path_to_key};
use proptest::prelude::*;

fn fixture(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/raw/sysctl")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn snapshots() {
    insta::glob!("../../fixtures/raw/sysctl", "*.txt", |path| {
        let text = std::fs::read_to_string(path).unwrap();
        let name = path.file_name().unwrap().to_str().unwrap();
        let dump = parse_sysctl(&text);
        if name == "sysctl-a.txt" {
            // The full dump is large and host-specific; snapshot its shape only.
            insta::assert_yaml_snapshot!((dump.values.len(), dump.unparsed));
        } else {
            insta::assert_yaml_snapshot!(dump);
        }
    });
}

#[test]
fn real_dumps_parse_completely() {
    for name in [
        "sysctl-a.txt",
        "sysctl-net.ipv4.txt",
        "sysctl-net.netfilter.txt",
        "sysctl-net.ipv6.conf.all.stdout+stderr.txt",
    ] {
        let text = fixture(name);
        let d = parse_sysctl(&text);
        assert!(d.unparsed.is_empty(), "{name}: {:?}", d.unparsed);
        let keys: std::collections::BTreeSet<&str> =
            text.lines().filter_map(|l| l.split(" = ").next()).collect();
        assert_eq!(d.values.len(), keys.len(), "{name}");
        for (k, e) in &d.values {
            let line = text.lines().nth(e.line - 1).unwrap();
            assert!(line.starts_with(&format!("{k} =")), "{name}:{}", e.line);
        }
    }
    let v4 = parse_sysctl(&fixture("sysctl-net.ipv4.txt"));
    assert_eq!(
        v4.fields("net.ipv4.ip_local_port_range").unwrap(),
        ["32768", "60999"]
    );
    assert!(
        v4.get("net.ipv4.ip_local_port_range")
            .unwrap()
            .contains('\t')
    );
    let nf = parse_sysctl(&fixture("sysctl-net.netfilter.txt"));
    // The capture ran with accounting on and 28 entries in the table.
    assert_eq!(nf.get_i64("net.netfilter.nf_conntrack_acct"), Some(1));
    assert_eq!(nf.get_i64("net.netfilter.nf_conntrack_count"), Some(28));
}

#[test]
fn proc_paths_and_errors() {
    let g = parse_sysctl(&fixture("proc-sys-grep-r.txt"));
    assert_eq!(g.get_i64("net.ipv4.ip_forward"), Some(0));
    assert_eq!(g.fields("net.ipv4.ip_local_port_range").unwrap().len(), 2);
    assert!(g.get("net.netfilter.nf_conntrack_max").is_some());
    assert_eq!(g.unparsed.len(), 1);
    assert!(g.unparsed[0].text.contains("stable_secret"));

    let e = parse_sysctl(&fixture("sysctl-errors.stdout+stderr.txt"));
    assert_eq!(e.get_i64("net.ipv4.ip_forward"), Some(0));
    assert_eq!(e.unparsed.len(), 1);

    let h = parse_sysctl(&fixture("handmade-forms.txt"));
    assert_eq!(h.get_i64("net.netfilter.nf_conntrack_max"), Some(262_144));
    assert_eq!(h.get_i64("net.ipv4.conf.all.rp_filter"), Some(0));
    assert_eq!(h.values["net.ipv4.conf.all.rp_filter"].line, 6);
    assert_eq!(h.get("net.ipv4.conf.all.arp_ignore"), Some(""));
    assert_eq!(h.get("vm.empty_value"), Some(""));
    assert_eq!(
        h.fields("net.ipv4.tcp_rmem").unwrap(),
        ["4096", "131072", "6291456"]
    );
    assert_eq!(
        h.unparsed.iter().map(|u| u.line).collect::<Vec<_>>(),
        [10, 11, 12]
    );
    assert_eq!(
        proc_path_to_key("/proc/sys/net/ipv4/ip_forward").as_deref(),
        Some("net.ipv4.ip_forward")
    );
}

proptest! {
    #[test]
    fn every_line_is_a_value_or_unparsed(s in "(([a-z]{1,5}\\.){0,3}[a-z_]{0,6}( = |:| =|/proc/sys/|\t| |[0-9]{1,3}|sysctl: )*\n?){0,8}") {
        let d = parse_sysctl(&s);
        let non_blank = s.lines().filter(|l| !l.trim().is_empty()).count();
        // Values are keyed, so a repeated key counts once; its lines are still accounted.
        let parsed_lines = s.lines().enumerate().filter(|(i, _)| d.values.values().any(|e| e.line == i + 1)).count();
        prop_assert!(parsed_lines + d.unparsed.len() <= non_blank);
        prop_assert!(d.values.len() + d.unparsed.len() <= non_blank);
        let distinct_ok = non_blank - d.unparsed.len();
        prop_assert!(d.values.len() <= distinct_ok);
    }

    #[test]
    fn arbitrary_text_never_panics(s in any::<String>()) {
        let _ = parse_sysctl(&s);
    }
}

//! Issue 19: lines a parser did not understand are reported with their line numbers
//! by `manifest`, `inspect … parse` and `analyze` (text, JSON, Markdown), per artifact.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use netsnap_bundle::testing::TestNode;
use netsnap_bundle::{ArtifactSpec, BundleWriter, Completion, WriterOptions, layout};

fn ok() -> Completion {
    Completion {
        exit_status: Some(0),
        duration: Duration::from_millis(5),
        ..Completion::default()
    }
}

/// iptables-save with a stray line (3) and a `-D` (6); an nft ruleset whose 4th line is
/// garbage; a conntrack listing with one bad line (2); a clean ip rule listing.
fn write_bundle(path: &Path) {
    let w = BundleWriter::create(path, WriterOptions::default()).unwrap();
    let raw = |p: &str, c: &str, argv: &[&str], body: &str| {
        w.add_bytes(ArtifactSpec::raw_command(p, c, argv), body.as_bytes(), ok())
            .unwrap();
    };
    raw(
        layout::iptables::SAVE,
        layout::content::IPTABLES_SAVE,
        &["iptables-save", "-c"],
        "*nat\n:PREROUTING ACCEPT [0:0]\nthis is not iptables\n:KUBE-X - [0:0]\n[0:0] -A KUBE-X -j RETURN\n-D KUBE-X 1\nCOMMIT\n",
    );
    raw(
        layout::nft::RULESET,
        layout::content::NFT_RULESET,
        &["nft", "list", "ruleset"],
        "table inet f {\n\tchain c {\n\t}\n}\nnot nft at all\n",
    );
    raw(
        layout::conntrack::TABLE,
        layout::content::CONNTRACK_LIST,
        &["conntrack", "-L"],
        "tcp      6 431999 ESTABLISHED src=10.0.0.1 dst=10.0.0.2 sport=1 dport=2 src=10.0.0.2 dst=10.0.0.1 sport=2 dport=1 [ASSURED] mark=0 use=1\ngarbage line here\n",
    );
    raw(
        layout::node::IP_RULE,
        layout::content::IP_RULE,
        &["ip", "rule", "show"],
        "0:\tfrom all lookup local\n32766:\tfrom all lookup main\n",
    );
    let t = chrono::DateTime::parse_from_rfc3339("2026-11-28T03:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    TestNode::new("node-u", t + chrono::Duration::seconds(2))
        .took(2)
        .finish(w)
        .unwrap();
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

fn bundle() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("b.tar.zst");
    write_bundle(&p);
    let s = p.to_str().unwrap().to_string();
    (dir, s)
}

#[test]
fn manifest_shows_unparsed_counts_per_artifact() {
    let (_d, b) = bundle();
    let (code, out, err) = run(&["manifest", &b]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("parsed 4 text artifact(s): 3 with lines not understood"),
        "{out}"
    );
    // The coverage table comes after the artifact list: the last line naming the path.
    let row = |path: &str| {
        out.lines()
            .rfind(|l| l.starts_with(path))
            .unwrap()
            .to_string()
    };
    let ipt = row(layout::iptables::SAVE);
    assert!(ipt.contains(" 2  line 3: "), "{ipt}");
    assert!(row(layout::nft::RULESET).contains("line 5: expected `table`"));
    let rule = row(layout::node::IP_RULE);
    assert!(rule.split_whitespace().nth(2) == Some("0"), "{rule}");
    let (code, json, _) = run(&["manifest", "--format", "json", &b]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let cov = v["parse_coverage"].as_array().unwrap();
    let ipt = cov
        .iter()
        .find(|c| c["path"] == layout::iptables::SAVE)
        .unwrap();
    assert_eq!(ipt["unparsed"], 2);
    assert_eq!(ipt["lines"], 7);
    assert_eq!(ipt["first"][0]["line"], 3);
    assert_eq!(ipt["first"][1]["line"], 6);
    let ct = cov
        .iter()
        .find(|c| c["path"] == layout::conntrack::TABLE)
        .unwrap();
    assert_eq!(
        (ct["unparsed"].as_u64(), ct["first"][0]["line"].as_u64()),
        (Some(1), Some(2))
    );
}

#[test]
fn inspect_parse_lists_each_unparsed_line() {
    let (_d, b) = bundle();
    let (code, out, err) = run(&["inspect", &b, "parse", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let lines: Vec<(String, u64)> = rows
        .iter()
        .filter(|r| !r["line"].is_null())
        .map(|r| {
            (
                r["path"].as_str().unwrap().to_string(),
                r["line"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            (layout::conntrack::TABLE.to_string(), 2),
            (layout::iptables::SAVE.to_string(), 3),
            (layout::iptables::SAVE.to_string(), 6),
            (layout::nft::RULESET.to_string(), 5),
        ]
    );
    let clean = rows
        .iter()
        .find(|r| r["path"] == layout::node::IP_RULE)
        .unwrap();
    assert_eq!(clean["unparsed"], 0);
    let (code, table, _) = run(&["inspect", &b, "parse"]);
    assert_eq!(code, 0);
    assert!(table.starts_with("ARTIFACT"));
    assert!(table.contains("this is not iptables"));
}

#[test]
fn analyze_lists_artifacts_with_unparsed_lines_in_every_format() {
    let (_d, b) = bundle();
    let (_, text, err) = run(&["analyze", &b, "--color", "never"]);
    assert!(!err.contains("panicked"), "{err}");
    assert!(text.contains("Lines not understood:"), "{text}");
    assert!(text.contains(&format!(
        "  {}: 2 of 7 line(s), first at line 3",
        layout::iptables::SAVE
    )));
    assert!(text.contains(&format!(
        "  {}: 1 of 5 line(s), first at line 5",
        layout::nft::RULESET
    )));
    assert!(!text.contains(&format!("  {}:", layout::node::IP_RULE)));
    let (_, json, _) = run(&["analyze", &b, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let u = v["unparsed_artifacts"].as_array().unwrap();
    assert_eq!(u.len(), 3);
    assert!(
        u.iter()
            .all(|x| x["node"] == "node-u" && x["first_line"].as_u64().unwrap() > 0)
    );
    let (_, md, _) = run(&["analyze", &b, "--format", "markdown"]);
    assert!(md.contains("## Lines not understood"));
    assert!(md.contains(&format!(
        "| node-u | `{}` | 1 of 2 | line 2:",
        layout::conntrack::TABLE
    )));
}

/// Issue 19: a bundle whose iptables-save holds garbled DNAT targets (the version-skew
/// fixture) gets the `iptables-dnat-garbled-version-skew` finding, citing each garbled
/// rule's line; the intact capture of the same rule set does not.
#[test]
fn garbled_dnat_targets_are_a_finding_with_their_lines() {
    let fixture = |name: &str| {
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../fixtures/raw/iptables")
                .join(name),
        )
        .unwrap()
    };
    for (name, expect) in [
        ("garbled-dnat-version-skew.txt", true),
        ("kube-proxy-v1.29-nft.txt", false),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.tar.zst");
        let w = BundleWriter::create(&path, WriterOptions::default()).unwrap();
        w.add_bytes(
            ArtifactSpec::raw_command(
                layout::iptables::SAVE,
                layout::content::IPTABLES_SAVE,
                &["iptables-save", "-c"],
            )
            .with_attribute("backend", "nft"),
            fixture(name).as_bytes(),
            ok(),
        )
        .unwrap();
        let t = chrono::Utc::now();
        TestNode::new("node-g", t).finish(w).unwrap();
        let (_, json, err) = run(&["analyze", path.to_str().unwrap(), "--format", "json"]);
        let v: serde_json::Value =
            serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {err}"));
        let hits: Vec<&serde_json::Value> = v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["rule_id"] == "iptables-dnat-garbled-version-skew")
            .collect();
        assert_eq!(hits.len(), usize::from(expect), "{name}: {json}");
        if expect {
            let lines: Vec<u64> = hits[0]["evidence"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["line"].as_u64().unwrap())
                .collect();
            assert_eq!(lines, [93, 97, 103, 109]);
            assert!(
                hits[0]["evidence"][0]["text"]
                    .as_str()
                    .unwrap()
                    .contains("--to-destination --random")
            );
            assert!(
                hits[0]["message"]
                    .as_str()
                    .unwrap()
                    .contains("4 NAT rule(s)")
            );
        }
    }
}

/// `analyze` takes the conntrack table's and the iptables save's coverage from the fact
/// build's own parse (not a second one): it must list exactly what `manifest`'s separate
/// coverage pass finds, in the same order, with the same counts, first lines and reasons.
#[test]
fn analyze_coverage_from_the_fact_build_matches_the_coverage_pass() {
    let (_d, b) = bundle();
    let (_, manifest, _) = run(&["manifest", "--format", "json", &b]);
    let m: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    let want: Vec<(String, u64, u64, u64, String)> = m["parse_coverage"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["unparsed"].as_u64().unwrap() > 0)
        .map(|c| {
            (
                c["path"].as_str().unwrap().to_string(),
                c["lines"].as_u64().unwrap(),
                c["unparsed"].as_u64().unwrap(),
                c["first"][0]["line"].as_u64().unwrap(),
                c["first"][0]["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let (_, json, _) = run(&["analyze", &b, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let got: Vec<(String, u64, u64, u64, String)> = v["unparsed_artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["path"].as_str().unwrap().to_string(),
                u["lines"].as_u64().unwrap(),
                u["unparsed"].as_u64().unwrap(),
                u["first_line"].as_u64().unwrap(),
                u["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(got, want);
    assert!(got.iter().any(|g| g.0 == layout::conntrack::TABLE));
    assert!(got.iter().any(|g| g.0 == layout::iptables::SAVE));
}

//! One output vocabulary on every command: `--format text` (with `table` kept as an alias in
//! `inspect`), `--color` everywhere, kubectl short names and did-you-mean for views, usage
//! errors as usage errors (exit 2), each cause said once, no internal enum names, JSON never
//! cut, planned skips apart from errors, evidence that quotes the line it rests on.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::path::Path;
use std::process::Command;

fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_netsnap-analyze"))
        .args(args)
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/bundles")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn inspect_takes_kubectl_short_names_and_suggests_on_a_typo() {
    let b = fixture("inspect-example.tar.zst");
    for (short, long) in [
        ("po", "pods"),
        ("svc", "services"),
        ("ep", "services"),
        ("route", "routes"),
        ("addr", "addrs"),
        ("ct", "conntrack"),
        ("dmesg", "kernel-log"),
    ] {
        let extra: &[&str] = if matches!(long, "pods" | "services") {
            &["-A"]
        } else {
            &[]
        };
        let run = |view: &str| {
            let mut args = vec!["inspect", b.as_str(), view];
            args.extend_from_slice(extra);
            cli(&args)
        };
        let (c1, o1, e1) = run(short);
        let (c2, o2, _) = run(long);
        assert_eq!(c1, 0, "{short}: {e1}");
        assert_eq!((c1, &o1), (c2, &o2), "{short} is {long}");
        assert!(!o1.is_empty());
    }
    let (code, _, err) = cli(&["inspect", &b, "servces"]);
    assert_eq!(code, 2);
    assert!(err.contains("a similar value exists: 'services'"), "{err}");
}

#[test]
fn text_is_the_format_name_everywhere_and_table_stays_an_alias() {
    let b = fixture("inspect-example.tar.zst");
    let (c1, text, _) = cli(&["inspect", &b, "pods", "-A", "--format", "text"]);
    let (c2, table, _) = cli(&["inspect", &b, "pods", "-A", "--format", "table"]);
    assert_eq!((c1, c2), (0, 0));
    assert_eq!(text, table);
    assert!(text.starts_with("NAMESPACE"), "{text}");
    for args in [
        vec!["manifest", b.as_str(), "--format", "text"],
        vec!["rules", "list", "--format", "text"],
    ] {
        let (code, _, err) = cli(&args);
        assert_eq!(code, 0, "{args:?}: {err}");
    }
    let (code, out, _) = cli(&["analyze", &b, "--format", "html"]);
    assert!(code <= 1);
    assert!(out.starts_with("<!DOCTYPE html>"));
}

#[test]
fn color_is_accepted_by_every_command_and_only_paints_when_asked() {
    let b = fixture("conntrack-near-max.tar.zst");
    for args in [
        vec!["manifest", b.as_str()],
        vec!["inspect", b.as_str(), "sysctl"],
        vec!["rules", "list"],
        vec!["facts", "--docs"],
    ] {
        for color in ["auto", "always", "never"] {
            let mut a = args.clone();
            a.extend(["--color", color]);
            let (code, _, err) = cli(&a);
            assert_eq!(code, 0, "{a:?}: {err}");
        }
    }
    let (_, painted, _) = cli(&["analyze", &b, "--color", "always"]);
    assert!(painted.contains("\x1b[1;31mERROR"), "{painted}");
    let (_, plain, _) = cli(&["analyze", &b, "--color", "never"]);
    assert!(!plain.contains('\x1b'));
    // auto: not a terminal here, so no colour.
    let (_, auto, _) = cli(&["analyze", &b]);
    assert!(!auto.contains('\x1b'));
}

#[test]
fn an_unknown_netns_is_a_usage_error_with_a_suggestion() {
    let b = fixture("inspect-example.tar.zst");
    let (code, _, err) = cli(&["inspect", &b, "links", "--netns", "ns-402653230"]);
    assert_eq!(code, 2, "a typo is a usage error, not missing data: {err}");
    assert!(
        err.contains("--netns ns-402653230: no such network namespace in the bundle, did you mean ns-4026532301?"),
        "{err}"
    );
    assert!(
        err.contains("known: host, ns-4026532301, ns-4026532302"),
        "{err}"
    );
    // A namespace the bundle has but whose data failed is still "no data" (exit 3).
    let (code, _, err) = cli(&["inspect", &b, "links", "--netns", "ns-4026532302"]);
    assert!(code == 3 || code == 0, "{code}: {err}");
}

#[test]
fn an_error_says_its_cause_once() {
    let (code, _, err) = cli(&["analyze", "/nonexistent/bundle.tar.zst"]);
    assert_eq!(code, 2);
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert_eq!(
        err.matches("/nonexistent/bundle.tar.zst").count(),
        1,
        "{err}"
    );
    let (code, _, err) = cli(&[
        "analyze",
        &fixture("healthy-flannel.tar.zst"),
        "--rules",
        "/nonexistent/rules",
    ]);
    assert_eq!(code, 2);
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}

#[test]
fn no_internal_enum_name_reaches_the_user() {
    let b = fixture("conntrack-near-max.tar.zst");
    for args in [
        vec!["manifest", b.as_str()],
        vec!["analyze", b.as_str()],
        vec!["analyze", b.as_str(), "--format", "json"],
        vec!["analyze", b.as_str(), "--format", "markdown"],
    ] {
        let (_, out, _) = cli(&args);
        for name in [
            "EntryCap",
            "ArtifactCap",
            "TotalCap",
            "(Failed",
            "(Skipped",
            "(Partial",
        ] {
            assert!(!out.contains(name), "{name} in {args:?}:\n{out}");
        }
        assert!(out.contains("the entry cap"), "{args:?}:\n{out}");
    }
}

#[test]
fn planned_skips_are_not_collection_errors() {
    let b = fixture("conntrack-near-max.tar.zst");
    let (_, out, _) = cli(&["analyze", &b]);
    let skipped = out
        .split("Skipped on purpose:")
        .nth(1)
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        skipped.contains("conntrack/proc-nf_conntrack.txt: not needed: conntrack -L ran"),
        "{out}"
    );
    let errors = out.split("Collection errors:").nth(1).unwrap_or_default();
    assert!(!errors.contains("not needed"), "{out}");
    let (_, json, _) = cli(&["analyze", &b, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["skipped"][0]["path"], "conntrack/proc-nf_conntrack.txt");
    assert!(
        v["collection_errors"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["status"] != "skipped")
    );
}

#[test]
fn json_evidence_is_never_cut_and_text_is() {
    let b = fixture("dns-vip-failing.tar.zst");
    let (_, json, _) = cli(&["analyze", &b, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let texts: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| f["evidence"].as_array().unwrap())
        .filter_map(|e| e["text"].as_str())
        .collect();
    let long = texts
        .iter()
        .find(|t| t.chars().count() > 240)
        .unwrap_or_else(|| panic!("no evidence line over 240 characters: {texts:?}"));
    assert!(!long.ends_with('…'));
    // A JSON line quoted whole is valid JSON again.
    serde_json::from_str::<serde_json::Value>(long).unwrap();
    let (_, text, _) = cli(&["analyze", &b]);
    assert!(text.contains("…\n"), "the text report cuts long lines");
}

#[test]
fn conntrack_near_max_quotes_the_count_and_max_lines() {
    let (_, out, _) = cli(&["analyze", &fixture("conntrack-near-max.tar.zst")]);
    assert!(
        out.contains(
            "| conntrack/sysctls.json:5:   \"net.netfilter.nf_conntrack_count\": \"241175\","
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "| conntrack/sysctls.json:17:   \"net.netfilter.nf_conntrack_max\": \"262144\","
        ),
        "{out}"
    );
}

fn cli_cols(args: &[&str], columns: Option<&str>) -> String {
    let mut c = Command::new(env!("CARGO_BIN_EXE_netsnap-analyze"));
    c.args(args).env_remove("COLUMNS");
    if let Some(w) = columns {
        c.env("COLUMNS", w);
    }
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{args:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn widest(s: &str) -> usize {
    s.lines().map(|l| l.chars().count()).max().unwrap_or(0)
}

#[test]
fn tables_fit_the_terminal_and_wide_shows_everything() {
    let b = fixture("inspect-example.tar.zst");
    for view in [
        &["pods", "-A"][..],
        &["services", "-A"],
        &["routes"],
        &["kernel-log"],
    ] {
        let mut args = vec!["inspect", b.as_str()];
        args.extend_from_slice(view);
        let whole = cli_cols(&args, None);
        assert!(widest(&whole) > 100, "{view:?} is wide to begin with");
        let fit = cli_cols(&args, Some("100"));
        assert!(widest(&fit) <= 100, "{view:?}:\n{fit}");
        assert_eq!(fit.lines().count(), whole.lines().count(), "no row lost");
        let mut wide = args.clone();
        wide.extend(["-o", "wide"]);
        assert_eq!(
            cli_cols(&wide, Some("100")),
            whole,
            "{view:?}: -o wide is whole"
        );
    }
    // The least important columns go first: pods keep NAME, IP, NETNS and VETH.
    let fit = cli_cols(&["inspect", &b, "pods", "-A"], Some("100"));
    let header = fit.lines().next().unwrap();
    for keep in ["NAME", "IP", "NETNS", "VETH"] {
        assert!(header.contains(keep), "{header}");
    }
    assert!(!header.contains("RESTARTS"), "{header}");
    // JSON is never fitted.
    let json = cli_cols(
        &["inspect", &b, "pods", "-A", "--format", "json"],
        Some("40"),
    );
    assert_eq!(
        json,
        cli_cols(&["inspect", &b, "pods", "-A", "--format", "json"], None)
    );
}

//! End-to-end tests of `netsnap-analyze manifest`: output and exit codes.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use netsnap_bundle::{
    ArtifactSource, ArtifactSpec, ArtifactStatus, BundleWriter, CollectionInfo, CollectionOutcome,
    Completion, NodeInfo, ResourceUsage, ToolInfo, WriterOptions, layout,
};

fn write_bundle(path: &Path) {
    let w = BundleWriter::create(path, WriterOptions::default()).unwrap();
    w.add_bytes(
        ArtifactSpec::raw_command(
            layout::iptables::SAVE,
            layout::content::IPTABLES_SAVE,
            &["iptables-save", "-c"],
        ),
        b"*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n",
        Completion {
            exit_status: Some(0),
            duration: Duration::from_millis(40),
            ..Completion::default()
        },
    )
    .unwrap();
    w.add_json(
        ArtifactSpec::native(layout::node::SYSCTLS, ArtifactSource::File),
        &serde_json::json!({"net.ipv4.ip_forward": "1"}),
        Duration::ZERO,
    )
    .unwrap();
    w.record_missing(
        ArtifactSpec::raw_command(
            layout::ipvs::LIST,
            layout::content::IPVSADM_LIST,
            &["ipvsadm", "-Ln"],
        ),
        ArtifactStatus::Unavailable,
        "the kernel has no IPVS (/proc/net/ip_vs is absent)",
        Completion::default(),
    )
    .unwrap();
    let t = chrono::DateTime::parse_from_rfc3339("2026-11-28T03:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    w.finish(
        ToolInfo {
            name: "netsnap-collect".into(),
            version: "0.1.0".into(),
        },
        NodeInfo {
            name: Some("node-one".into()),
            hostname: "node-one".into(),
            kernel_release: "6.1.0".into(),
            machine: None,
        },
        CollectionInfo {
            started_at: t,
            finished_at: t + chrono::Duration::milliseconds(2500),
            outcome: CollectionOutcome::Complete,
            options: serde_json::json!({}),
            notes: vec![],
            resource_usage: Some(ResourceUsage {
                peak_rss_kib: 21_600,
                children_peak_rss_kib: 211_500,
                user_cpu_ms: 2_310,
                system_cpu_ms: 870,
            }),
        },
    )
    .unwrap();
}

fn analyze(args: &[&str]) -> (i32, String, String) {
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
fn manifest_text_lists_every_record_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.tar.zst");
    write_bundle(&path);
    let (code, stdout, stderr) = analyze(&["manifest", path.to_str().unwrap()]);
    assert_eq!(code, 0, "stderr: {stderr}");
    assert!(stdout.contains("3 artifacts: 2 ok, 0 partial, 0 failed, 0 skipped, 1 unavailable"));
    assert!(stdout.contains("the kernel has no IPVS"));
    insta::assert_snapshot!(stdout);
}

#[test]
fn manifest_json_is_versioned_and_complete() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.tar.zst");
    write_bundle(&path);
    let (code, stdout, _) = analyze(&["manifest", "--format", "json", path.to_str().unwrap()]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["counts"]["ok"], 2);
    assert_eq!(v["counts"]["unavailable"], 1);
    assert_eq!(v["manifest"]["artifacts"].as_array().unwrap().len(), 3);
}

#[test]
fn bad_bundles_exit_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let not_bundle = dir.path().join("x.tar.zst");
    std::fs::write(&not_bundle, b"definitely not a bundle").unwrap();
    let missing = dir.path().join("missing.tar.zst");
    let truncated = dir.path().join("t.tar.zst");
    write_bundle(&truncated);
    let bytes = std::fs::read(&truncated).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    for (path, needle) in [
        (&not_bundle, "is not a netsnap bundle"),
        (&missing, "cannot open bundle"),
        (&truncated, "corrupt or truncated"),
    ] {
        let (code, stdout, stderr) = analyze(&["manifest", path.to_str().unwrap()]);
        assert_eq!(code, 2, "{needle}: {stderr}");
        assert!(stdout.is_empty());
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(needle), "{stderr}");
        assert!(!stderr.contains("panicked"));
    }
}

#[test]
fn usage_errors_exit_2() {
    let (code, _, stderr) = analyze(&["manifest"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("BUNDLE") || stderr.contains("bundle"),
        "{stderr}"
    );
    let (code, _, _) = analyze(&["no-such-command"]);
    assert_eq!(code, 2);
    let (code, stdout, _) = analyze(&["--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("manifest"));
}

/// A bundle whose ruleset dump timed out and whose iptables-nft dump was skipped as
/// the same program: the manifest says PARTIAL first, with the collector's advice.
#[test]
fn manifest_text_puts_incomplete_core_artifacts_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.tar.zst");
    let w = BundleWriter::create(&path, WriterOptions::default()).unwrap();
    let mut sink = w
        .artifact(
            ArtifactSpec::raw_command(
                layout::iptables::SAVE,
                layout::content::IPTABLES_SAVE,
                &["iptables-save", "-c"],
            )
            .with_attribute("backend", "nft"),
        )
        .unwrap();
    std::io::Write::write_all(&mut sink, b"*nat\n:PREROUTING ACCEPT [0:0]\n").unwrap();
    sink.finish(Completion {
        error: Some("timed out after 20.4s (no output for 20s)".into()),
        duration: Duration::from_millis(20_400),
        ..Completion::default()
    })
    .unwrap();
    w.record_missing(
        ArtifactSpec::raw_command(
            layout::iptables::NFT_SAVE,
            layout::content::IPTABLES_SAVE,
            &["iptables-nft-save", "-c"],
        )
        .with_attribute(netsnap_bundle::SAME_AS_ATTRIBUTE, layout::iptables::SAVE),
        ArtifactStatus::Skipped,
        "same as iptables/iptables-save.txt",
        Completion::default(),
    )
    .unwrap();
    let t = chrono::Utc::now();
    let advice = "iptables/iptables-save.txt (iptables-save -c) is incomplete: timed out after 20.4s (no output for 20s): rerun with --timeout 10s";
    w.finish(
        ToolInfo {
            name: "netsnap-collect".into(),
            version: "0.1.0".into(),
        },
        NodeInfo::default(),
        CollectionInfo {
            started_at: t,
            finished_at: t,
            outcome: CollectionOutcome::Partial,
            options: serde_json::json!({}),
            notes: vec![format!("incomplete: {advice}")],
            resource_usage: None,
        },
    )
    .unwrap();
    let (code, stdout, stderr) = analyze(&["manifest", path.to_str().unwrap()]);
    assert_eq!(code, 0, "stderr: {stderr}");
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next(),
        Some("PARTIAL: 1 core artifact(s) incomplete; the analysis cannot judge what needs them:")
    );
    assert_eq!(lines.next(), Some(format!("  {advice}").as_str()));
    assert!(stdout.contains("outcome partial"), "{stdout}");
    // The skipped twin is not counted as missing: its data is in the record it names.
    assert!(
        !stdout.contains("  iptables/iptables-nft-save.txt:"),
        "{stdout}"
    );
}

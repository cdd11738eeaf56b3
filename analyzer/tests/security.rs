//! Bundles are untrusted input: every string a pod or a crafted bundle controls (pod and
//! Service names, iptables comments, interface names, process names, kernel log lines, the
//! manifest's own notes and reasons) carries terminal escapes, carriage returns, bidi
//! overrides and Markdown/HTML here, and no text output may pass them on raw. Also: the
//! extraction directory is private and removed when the analyzer is killed.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::Digest;

/// What a hostile pod or bundle puts in a name: clear screen, set title, carriage return,
/// a C1 CSI, a bidi override, a Markdown heading/link/HTML/code span/table cell. No space
/// or quote, so the files stay parseable.
const HOSTILE: &str = "\x1b[2J\x1b]0;pwn\x07\r#_[x](http://e.vil)<img>`|*\u{9b}31m\u{202e}";
/// The JSON-only part: a newline that would fake a line or a heading.
const HOSTILE_JSON_EXTRA: &str = "\n# fake heading\n<script>x</script>";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_netsnap-analyze")
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/bundles")
        .join(name)
}

fn untar(bundle: &Path, dir: &Path) {
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "zstd -dc '{}' | tar -x -C '{}'",
            bundle.display(),
            dir.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
}

/// The inspect-example bundle with every name a pod or a bundle controls made hostile, and
/// the manifest's digests recomputed so it opens with verification on.
fn hostile_bundle(dir: &Path) {
    untar(&fixture("inspect-example.tar.zst"), dir);
    // Names that flow into findings, tables and evidence: the node, a Service, a pod, an
    // interface, process names.
    let tokens = [
        "node-two",
        "kube-dns",
        "coredns-7db6d8ff4d-x8k2p",
        "eth0",
        "kubelet",
        "systemd",
    ];
    let json_hostile = serde_json::to_string(&format!("{HOSTILE}{HOSTILE_JSON_EXTRA}")).unwrap();
    let json_hostile = &json_hostile[1..json_hostile.len() - 1];
    let mut files = Vec::new();
    collect(dir, &mut files);
    for f in &files {
        let rel = f.strip_prefix(dir).unwrap().to_string_lossy().to_string();
        let mut text = std::fs::read_to_string(f).unwrap();
        let is_json = rel.ends_with(".json") || rel.ends_with(".jsonl");
        for t in tokens {
            let with = if is_json {
                format!("{t}{json_hostile}")
            } else {
                format!("{t}{HOSTILE}")
            };
            text = text.replace(t, &with);
        }
        if rel == "node/kernel-log.txt" {
            text.push_str(&format!("[Sat Nov 28 09:20:00 2026] {HOSTILE} oops\n"));
        }
        std::fs::write(f, text).unwrap();
    }
    let manifest_path = dir.join("manifest.json");
    let mut manifest_text = std::fs::read_to_string(&manifest_path).unwrap();
    for t in tokens {
        manifest_text = manifest_text.replace(t, &format!("{t}{json_hostile}"));
    }
    let mut m: serde_json::Value = serde_json::from_str(&manifest_text).unwrap();
    let hostile_json = format!("{HOSTILE}{HOSTILE_JSON_EXTRA}");
    m["collection"]["notes"]
        .as_array_mut()
        .unwrap()
        .push(hostile_json.clone().into());
    for a in m["artifacts"].as_array_mut().unwrap() {
        let path = a["path"].as_str().unwrap().to_string();
        let file = dir.join(&path);
        if file.is_file() {
            let bytes = std::fs::read(&file).unwrap();
            a["size"] = bytes.len().into();
            a["sha256"] = hex::encode(sha2::Sha256::digest(&bytes)).into();
        } else if a["status"] != "ok" {
            a["error"] = hostile_json.clone().into();
        }
    }
    std::fs::write(&manifest_path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.file_name().unwrap() != "manifest.json" {
            out.push(p);
        }
    }
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// Raw bytes that could drive a terminal; `allow_sgr` lets the report's own colours through.
fn raw_controls(s: &str, allow_sgr: bool) -> Vec<String> {
    let stripped = if allow_sgr {
        regex::Regex::new("\x1b\\[[0-9;]*m")
            .unwrap()
            .replace_all(s, "")
            .into_owned()
    } else {
        s.to_string()
    };
    stripped
        .lines()
        .filter(|l| {
            l.chars().any(|c| {
                (c.is_control() && c != '\t')
                    || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
            })
        })
        .map(|l| format!("{l:?}"))
        .collect()
}

#[test]
fn no_raw_control_reaches_a_text_output() {
    let tmp = tempfile::tempdir().unwrap();
    hostile_bundle(tmp.path());
    let b = tmp.path().to_str().unwrap();
    let mut outputs: Vec<(String, String, bool)> = Vec::new();
    let (code, out, err) = run(&["manifest", b]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("pwn"), "the hostile note is shown: {out}");
    outputs.push(("manifest".into(), out, false));
    let views: &[&[&str]] = &[
        &["pods", "-A"],
        &["services", "-A"],
        &["netns"],
        &["links"],
        &["addrs"],
        &["routes"],
        &["conntrack"],
        &["conntrack", "--summary"],
        &["conntrack", "--stats"],
        &["iptables"],
        &["iptables", "--table", "nat", "--chain", "KUBE-SERVICES"],
        &["ipvs"],
        &["dns"],
        &["sysctl"],
        &["kernel-log"],
    ];
    let mut shown = 0;
    for v in views {
        let mut args = vec!["inspect", b];
        args.extend_from_slice(v);
        let (code, out, err) = run(&args);
        assert!(code == 0 || code == 3, "{v:?}: {code} {err}");
        assert!(
            raw_controls(&err, false).is_empty(),
            "{v:?} stderr: {err:?}"
        );
        if out.contains("pwn") {
            shown += 1;
        }
        outputs.push((format!("inspect {v:?}"), out, false));
    }
    // The hostile names do reach the views (escaped), so the check below is not vacuous.
    assert!(shown >= 6, "only {shown} views showed a hostile name");
    for color in ["never", "always"] {
        let (code, out, err) = run(&["analyze", b, "--color", color]);
        assert!(code <= 1, "{err}");
        assert!(out.contains("kube-dns^[[2J^[]0;pwn^G^M"), "{out}");
        outputs.push((format!("analyze --color {color}"), out, color == "always"));
    }
    let (_, md, _) = run(&["analyze", b, "--format", "markdown"]);
    outputs.push(("analyze markdown".into(), md, false));
    for (what, out, sgr) in &outputs {
        let bad = raw_controls(out, *sgr);
        assert!(bad.is_empty(), "{what}: raw control characters in {bad:#?}");
        assert!(!out.contains('\u{9b}'), "{what}: a C1 CSI");
    }
    // JSON stays exact: the same strings, escaped by JSON only.
    let (_, json, _) = run(&["analyze", b, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(
        v["bundles"][0]["node"]
            .as_str()
            .unwrap()
            .starts_with(&format!("node-two{HOSTILE}\n# fake heading")),
        "{}",
        v["bundles"][0]["node"]
    );
}

#[test]
fn markdown_report_carries_no_injected_structure() {
    let tmp = tempfile::tempdir().unwrap();
    hostile_bundle(tmp.path());
    let b = tmp.path().to_str().unwrap();
    let (code, md, err) = run(&["analyze", b, "--format", "markdown"]);
    assert!(code <= 1, "{err}");
    // Every line that opens a block is one the renderer wrote.
    for line in md.lines() {
        if line.starts_with('#') {
            assert!(
                line == "# netsnap analysis"
                    || line.starts_with("## ")
                    || line.starts_with("### `"),
                "injected heading: {line:?}"
            );
            assert!(!line.replace("\\#", "").contains("# fake"), "{line:?}");
        }
        assert!(!line.starts_with('<'), "raw HTML block: {line:?}");
        assert!(!line.starts_with("# fake"), "{line:?}");
    }
    // No unescaped HTML tag, link or image from the bundle outside code blocks (inside one,
    // evidence is shown verbatim and inert).
    let mut in_code = false;
    let mut prose = String::new();
    for line in md.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code {
            prose.push_str(line);
            prose.push('\n');
        }
    }
    for needle in ["<img>", "<script>", "](http://e.vil)", "http://e.vil"] {
        assert!(!prose.contains(needle), "{needle} in\n{prose}");
    }
    assert!(md.contains("```text\n"), "the report quotes evidence");
    assert!(md.contains("\\<img\\>"), "escaped HTML kept as text");
    assert!(
        md.contains("\\[x\\](http\\://e.vil)"),
        "escaped link kept as text"
    );
    // Evidence sits in fences no evidence line can close.
    let mut fence: Option<String> = None;
    for line in md.lines() {
        match &fence {
            None if line.starts_with("```") => {
                fence = Some(line.chars().take_while(|c| *c == '`').collect());
            }
            Some(f) if line == f => fence = None,
            Some(f) => assert!(
                !line.trim_start().starts_with(f.as_str()),
                "line {line:?} would close the fence"
            ),
            None => {}
        }
    }
    assert!(fence.is_none());
    // Snapshot: the node name is a temp-free constant, so the document is reproducible.
    insta::assert_snapshot!("hostile_markdown", md);
}

/// A bundle whose conntrack table is large enough that the analysis runs for a while.
fn large_tar(dir: &Path) -> PathBuf {
    let root = dir.join("b");
    std::fs::create_dir(&root).unwrap();
    untar(&fixture("inspect-example.tar.zst"), &root);
    let ct = root.join("conntrack/conntrack-L.txt");
    let lines = std::fs::read_to_string(&ct).unwrap();
    let mut big = String::with_capacity(200 << 20);
    while big.len() < (150 << 20) {
        big.push_str(&lines);
    }
    std::fs::write(&ct, big).unwrap();
    let tar = dir.join("big.tar");
    let status = Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .arg("-C")
        .arg(&root)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::remove_dir_all(&root).unwrap();
    tar
}

#[cfg(unix)]
#[test]
fn sigterm_removes_the_private_extraction_directory() {
    use std::os::unix::fs::PermissionsExt;
    let work = tempfile::tempdir().unwrap();
    let tar = large_tar(work.path());
    for signal in ["TERM", "INT", "HUP"] {
        let tmpdir = work.path().join(format!("tmp-{signal}"));
        std::fs::create_dir(&tmpdir).unwrap();
        let mut child = Command::new(bin())
            .args(["analyze", "--no-verify", "--format", "json"])
            .arg(&tar)
            .env("TMPDIR", &tmpdir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Wait until the extraction has written the big file.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let extracted = loop {
            let dirs: Vec<PathBuf> = std::fs::read_dir(&tmpdir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            if let Some(d) = dirs.first() {
                let f = d.join("conntrack/conntrack-L.txt");
                if f.metadata().map(|m| m.len() > 1 << 20).unwrap_or(false) {
                    break d.clone();
                }
            }
            assert!(std::time::Instant::now() < deadline, "no extraction seen");
            assert!(child.try_wait().unwrap().is_none(), "finished too early");
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        // Private while it lives: 0700 directories, 0600 files.
        let mode = |p: &Path| p.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&extracted), 0o700);
        assert_eq!(mode(&extracted.join("conntrack")), 0o700);
        assert_eq!(mode(&extracted.join("conntrack/conntrack-L.txt")), 0o600);
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(130),
            "{signal}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let left: Vec<_> = std::fs::read_dir(&tmpdir).unwrap().collect();
        assert!(left.is_empty(), "{signal}: left behind {left:?}");
    }
}

#[test]
fn an_error_path_removes_the_extraction_directory_too() {
    let work = tempfile::tempdir().unwrap();
    let tmpdir = work.path().join("tmp");
    std::fs::create_dir(&tmpdir).unwrap();
    // A tar that is not a bundle (no manifest): refused after extraction began.
    let bad = work.path().join("bad.tar");
    std::fs::write(work.path().join("x.txt"), "x").unwrap();
    let ok = Command::new("tar")
        .arg("-cf")
        .arg(&bad)
        .arg("-C")
        .arg(work.path())
        .arg("x.txt")
        .status()
        .unwrap();
    assert!(ok.success());
    let out = Command::new(bin())
        .args(["analyze"])
        .arg(&bad)
        .env("TMPDIR", &tmpdir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(std::fs::read_dir(&tmpdir).unwrap().count(), 0);
}

/// The inspect-example bundle plus `n` Services with a selector and no endpoint.
fn many_services_bundle(dir: &Path, n: usize) {
    untar(&fixture("inspect-example.tar.zst"), dir);
    let path = dir.join("k8s/services.jsonl");
    let mut text = std::fs::read_to_string(&path).unwrap();
    for i in 0..n {
        text.push_str(&format!(
            "{{\"namespace\":\"load\",\"name\":\"svc-{i:06}\",\"uid\":\"uid-{i}\",\"type\":\"ClusterIP\",\"cluster_ips\":[\"10.{}.{}.{}\"],\"external_ips\":[],\"load_balancer_ips\":[],\"ports\":[{{\"name\":\"http\",\"protocol\":\"TCP\",\"port\":80,\"target_port\":\"8080\",\"node_port\":null}}],\"selector\":{{\"app\":\"gone-{i}\"}},\"external_traffic_policy\":null,\"internal_traffic_policy\":null,\"session_affinity\":null,\"health_check_node_port\":null,\"annotations\":{{}},\"labels\":{{}},\"created_at\":\"2026-11-22T10:25:00Z\"}}\n",
            100 + i / 65536,
            (i / 256) % 256,
            i % 256
        ));
    }
    std::fs::write(&path, &text).unwrap();
    let manifest_path = dir.join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).unwrap()).unwrap();
    for a in m["artifacts"].as_array_mut().unwrap() {
        if a["path"] == "k8s/services.jsonl" {
            a["size"] = text.len().into();
            a["sha256"] = hex::encode(sha2::Sha256::digest(text.as_bytes())).into();
        }
    }
    std::fs::write(&manifest_path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

#[test]
fn many_findings_of_one_rule_make_one_aggregated_finding_in_every_format() {
    use netsnap_analyzer::analyze::{AGGREGATE_ABOVE, AGGREGATE_SUBJECTS};
    const N: usize = 100_000;
    let tmp = tempfile::tempdir().unwrap();
    many_services_bundle(tmp.path(), N);
    let b = tmp.path().to_str().unwrap();
    let (_, json, err) = run(&["analyze", b, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {err}"));
    let findings = v["findings"].as_array().unwrap();
    let no_ep: Vec<_> = findings
        .iter()
        .filter(|f| f["rule_id"] == "service-no-endpoints")
        .collect();
    assert_eq!(no_ep.len(), 1, "one aggregated finding");
    let agg = &no_ep[0]["aggregate"];
    assert_eq!(agg["count"], N);
    let first: Vec<&str> = agg["first_subjects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(first.len(), AGGREGATE_SUBJECTS);
    assert_eq!(first[0], "load/svc-000000");
    assert_eq!(first[9], "load/svc-000009");
    // Every rule's findings are bounded the same way.
    let mut per_rule = std::collections::BTreeMap::<String, usize>::new();
    for f in findings {
        *per_rule
            .entry(format!("{}/{}", f["rule_id"], f["severity"]))
            .or_default() += 1;
    }
    assert!(
        per_rule.values().all(|&n| n <= AGGREGATE_ABOVE),
        "{per_rule:?}"
    );
    // The counts still say how many subjects there are.
    assert!(v["summary"]["info"].as_u64().unwrap() >= N as u64);
    assert!(json.len() < 200_000, "JSON report is {} bytes", json.len());
    let (_, text, _) = run(&["analyze", b]);
    assert!(text.len() < 100_000, "text report is {} bytes", text.len());
    assert!(
        text.contains(&format!(
            "subjects: {N} in all; first 10: load/svc-000000, load/svc-000001"
        )),
        "{text}"
    );
    assert!(text.contains(&format!("(and {} more)", N - 10)));
    let (_, md, _) = run(&["analyze", b, "--format", "markdown"]);
    assert!(md.len() < 100_000, "Markdown report is {} bytes", md.len());
    assert!(
        md.contains(&format!("Subjects: {N} in all; first 10: load/svc-000000")),
        "{md}"
    );
}

/// Rewrites one artifact of an extracted bundle and its manifest digest.
fn rewrite_artifact(dir: &Path, path: &str, text: &str) {
    std::fs::write(dir.join(path), text).unwrap();
    let manifest_path = dir.join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).unwrap()).unwrap();
    for a in m["artifacts"].as_array_mut().unwrap() {
        if a["path"] == path {
            a["size"] = text.len().into();
            a["sha256"] = hex::encode(sha2::Sha256::digest(text.as_bytes())).into();
        }
    }
    std::fs::write(&manifest_path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

#[test]
fn impossible_conntrack_counters_make_the_rules_not_evaluated() {
    let cases = [
        ("18446744073709551617", "262144", "not a count"),
        ("28", "-1", "not a count"),
        ("28", "0", "is 0"),
        ("NaN", "262144", "not a count"),
        ("9000000000", "262144", "more than 4 times"),
    ];
    for (count, max, why) in cases {
        let tmp = tempfile::tempdir().unwrap();
        untar(&fixture("inspect-example.tar.zst"), tmp.path());
        let sysctls = serde_json::json!({
            "net.netfilter.nf_conntrack_buckets": "262144",
            "net.netfilter.nf_conntrack_count": count,
            "net.netfilter.nf_conntrack_max": max,
        });
        rewrite_artifact(tmp.path(), "conntrack/sysctls.json", &sysctls.to_string());
        let (_, json, err) = run(&["analyze", tmp.path().to_str().unwrap(), "--format", "json"]);
        let v: serde_json::Value =
            serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {err}"));
        let not_evaluated: Vec<&serde_json::Value> = v["not_evaluated"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["rule_id"] == "conntrack-near-max")
            .collect();
        assert_eq!(not_evaluated.len(), 1, "{count}/{max}: {json}");
        let reason = not_evaluated[0]["reason"].as_str().unwrap();
        assert!(reason.contains(why), "{count}/{max}: {reason}");
        assert!(
            !v["findings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["rule_id"] == "conntrack-near-max"),
            "{count}/{max}"
        );
    }
    // A sane pair is evaluated (and silent at 28 of 262,144).
    let tmp = tempfile::tempdir().unwrap();
    untar(&fixture("inspect-example.tar.zst"), tmp.path());
    let (_, json, _) = run(&["analyze", tmp.path().to_str().unwrap(), "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let listed = |section: &str| {
        v[section]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["rule_id"] == "conntrack-near-max")
    };
    assert!(!listed("findings") && !listed("not_evaluated"), "{json}");
    assert!(listed("passed"), "{json}");
}

#[test]
fn an_over_long_line_is_skipped_and_noted_not_loaded() {
    let tmp = tempfile::tempdir().unwrap();
    untar(&fixture("inspect-example.tar.zst"), tmp.path());
    // A 20 MiB line (5x the cap) in the middle of the iptables dump and of a JSON Lines file.
    let long = "x".repeat(20 << 20);
    let ipt = std::fs::read_to_string(tmp.path().join("iptables/iptables-save.txt")).unwrap();
    let mut lines: Vec<&str> = ipt.lines().collect();
    lines.insert(3, &long);
    rewrite_artifact(
        tmp.path(),
        "iptables/iptables-save.txt",
        &(lines.join("\n") + "\n"),
    );
    let pods = std::fs::read_to_string(tmp.path().join("k8s/pods.jsonl")).unwrap();
    rewrite_artifact(tmp.path(), "k8s/pods.jsonl", &format!("{long}\n{pods}"));
    let b = tmp.path().to_str().unwrap();
    let (code, json, err) = run(&["facts", b]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let notes: Vec<&str> = v["collection"]["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(
        notes.iter().any(|n| n.contains(
            "iptables/iptables-save.txt: 1 line(s) longer than 4 MiB skipped (first: line 4, 20971520 bytes)"
        )),
        "{notes:#?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n
                .contains("k8s/pods.jsonl: 1 unreadable line(s), first at line 1: 20971520 bytes")),
        "{notes:#?}"
    );
    // The rest of both files is still used: the pods and the iptables rules are there.
    assert!(v["pods"].as_array().unwrap().len() >= 4);
    let (code, out, _) = run(&["analyze", b]);
    assert!(code <= 1);
    assert!(!out.contains("xxxxxxxxxx"));
}

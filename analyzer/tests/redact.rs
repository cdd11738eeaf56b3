//! `netsnap-analyze redact`: a redacted bundle diagnoses the same faults
//! (rule invariance over every bundle in `fixtures/bundles/`), carries none of
//! the original names, addresses, MACs or secrets (an independent leak scan of
//! every byte), is idempotent with the same key, and withholds what it cannot
//! redact unless asked not to.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::collections::BTreeSet;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;

use netsnap_analyzer::analyze::{Report, analyze};
use netsnap_analyzer::rules::RuleSet;
use netsnap_bundle::{
    ArtifactKind, ArtifactSpec, ArtifactStatus, Bundle, BundleWriter, Completion, ReaderOptions,
    ToolInfo, WriterOptions,
};
use netsnap_redact::{Key, Map, RedactOptions, redact_bundle};
use regex::Regex;
use serde_json::Value;

fn fixture_bundles() -> Vec<PathBuf> {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/bundles"));
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".tar.zst"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 5, "fixture bundles: {paths:?}");
    paths
}

fn options(key: u8) -> RedactOptions {
    RedactOptions {
        key: Key::from_bytes([key; 32]),
        tool: ToolInfo {
            name: "netsnap-analyze".into(),
            version: "test".into(),
        },
        keep_unredactable: false,
    }
}

fn open(p: &Path) -> Bundle {
    Bundle::open(p, &ReaderOptions::default()).unwrap()
}

fn report(p: &Path, rules: &RuleSet) -> Report {
    let b = open(p);
    analyze(&[("bundle".to_string(), &b)], rules).unwrap()
}

/// The report as JSON without what necessarily differs: the bundle summary
/// (source path, hashes) and the quoted evidence text (cut at a character
/// count, and replacements are longer than some originals).
fn comparable(r: &Report) -> Value {
    let mut v = serde_json::to_value(r).unwrap();
    v.as_object_mut().unwrap().remove("bundles");
    if let Some(findings) = v.get_mut("findings").and_then(Value::as_array_mut) {
        for f in findings {
            if let Some(ev) = f.get_mut("evidence").and_then(Value::as_array_mut) {
                for e in ev {
                    e.as_object_mut().unwrap().remove("text");
                }
            }
        }
    }
    v
}

/// (rule id, severity, evidence (path, line) list) of one finding.
type Shape = (String, String, Vec<(String, Option<u64>)>);

/// The [`Shape`] of every finding, in order.
fn shape(r: &Report, map: Option<&Map>) -> Vec<Shape> {
    r.findings
        .iter()
        .map(|f| {
            let ev = f
                .evidence
                .iter()
                .map(|e| {
                    let p = map.map_or(e.path.clone(), |m| m.unredact(&e.path));
                    (p, e.line)
                })
                .collect();
            (f.rule_id.clone(), format!("{:?}", f.severity), ev)
        })
        .collect()
}

#[test]
fn rule_invariance_over_fixture_bundles() {
    let rules = RuleSet::builtin().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut subjects_changed = 0;
    for path in fixture_bundles() {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let out = tmp.path().join(&name);
        let done = redact_bundle(&path, &out, &options(1)).unwrap();
        let (a, b) = (report(&path, &rules), report(&out, &rules));
        // Same rules fire, with the same severities, counts and evidence lines.
        assert_eq!(a.summary, b.summary, "{name}: summary");
        assert_eq!(shape(&a, None), shape(&b, Some(&done.map)), "{name}");
        assert_eq!(a.not_evaluated.len(), b.not_evaluated.len(), "{name}");
        // Everything else (subjects, messages, reasons) maps back exactly.
        let back: Value =
            serde_json::from_str(&done.map.unredact(&comparable(&b).to_string())).unwrap();
        assert_eq!(
            comparable(&a),
            back,
            "{name}: the report maps back through the map"
        );
        for (fa, fb) in a.findings.iter().zip(&b.findings) {
            if fa.subject != fb.subject {
                subjects_changed += 1;
            }
        }
    }
    // The fixtures' findings name Services, IPs and nodes: redaction must show.
    assert!(
        subjects_changed >= 5,
        "only {subjects_changed} subjects changed"
    );
}

/// Every name, address and MAC of a bundle, gathered independently of the
/// redactor: from the API objects, the netns index and links, and a regex scan
/// of every artifact for dotted IPv4 addresses and MACs.
#[derive(Default, Debug)]
struct Originals {
    names: BTreeSet<String>,
    ips: BTreeSet<IpAddr>,
    macs: BTreeSet<String>,
}

fn add_name(o: &mut Originals, s: &str) {
    for part in s.split(['/', ' ', '.']) {
        if part.len() >= 3
            && !netsnap_redact::names::WELL_KNOWN.contains(&part)
            && !part.chars().next().unwrap().is_ascii_uppercase()
            && part.parse::<f64>().is_err()
        {
            o.names.insert(part.to_string());
        }
    }
}

fn gather(path: &Path) -> Originals {
    let b = open(path);
    let mut o = Originals::default();
    let ipv4 = Regex::new(r"\b(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})\b").unwrap();
    let mac = Regex::new(r"\b([0-9a-f]{2}(?::[0-9a-f]{2}){5})\b").unwrap();
    if let Some(n) = &b.manifest().node.name {
        add_name(&mut o, n);
    }
    for record in &b.manifest().artifacts {
        let Some(Ok(text)) = b.read_text(&record.path) else {
            continue;
        };
        for c in ipv4.captures_iter(&text) {
            if let Ok(ip) = c[1].parse::<Ipv4Addr>() {
                o.ips.insert(IpAddr::V4(ip));
            }
        }
        for c in mac.captures_iter(&text) {
            let m = c[1].to_string();
            let first = u8::from_str_radix(&m[..2], 16).unwrap();
            if first & 1 == 0 && m != "00:00:00:00:00:00" {
                o.macs.insert(m);
            }
        }
        let docs: Vec<Value> = if record.path.ends_with(".jsonl") {
            text.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        } else if record.path.ends_with(".json") {
            serde_json::from_str(&text).into_iter().collect()
        } else {
            Vec::new()
        };
        // Interface names (`eth0`, `veth…`) are kept by design (docs/redaction.md):
        // names come from the API objects, the netns index, the correlation and
        // the DNS probes; addresses from everywhere.
        let named = record.path.starts_with("k8s/")
            || record.path.starts_with("correlation/")
            || record.path.starts_with("dns/")
            || record.path == "netns/index.json";
        for d in &docs {
            walk(&mut o, d, "", named);
        }
    }
    o
}

fn walk(o: &mut Originals, v: &Value, key: &str, named: bool) {
    match v {
        Value::Object(m) => {
            if matches!(key, "ports" | "container_ports" | "conditions") {
                return;
            }
            for (k, c) in m {
                walk(o, c, k, named);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| walk(o, i, key, named)),
        Value::String(s) => {
            match key {
                "namespace" | "name" | "uid" | "node_name" | "pod" | "pod_uid" | "names"
                | "service_name" | "target_ref" | "hostname"
                    if named =>
                {
                    add_name(o, s)
                }
                _ => {}
            }
            if let Ok(ip) = s.parse::<IpAddr>() {
                o.ips.insert(ip);
            }
        }
        _ => {}
    }
}

/// The decompressed tar stream of a bundle: every byte a recipient gets,
/// manifest and entry names included.
fn all_bytes(path: &Path) -> String {
    let f = std::fs::File::open(path).unwrap();
    let mut out = Vec::new();
    zstd::stream::read::Decoder::new(f)
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// Occurrences of `needle` in `hay` not flanked by a letter or digit (and, for
/// addresses, not continued by `.digit`).
fn token_hits(hay: &str, needle: &str) -> usize {
    let b = hay.as_bytes();
    hay.match_indices(needle)
        .filter(|(i, _)| {
            let before = i.checked_sub(1).map(|j| b[j]);
            let end = i + needle.len();
            let after = b.get(end).copied();
            let cont = after == Some(b'.') && b.get(end + 1).is_some_and(u8::is_ascii_digit);
            let pre =
                before == Some(b'.') && i.checked_sub(2).is_some_and(|j| b[j].is_ascii_digit());
            !before.is_some_and(|c| c.is_ascii_alphanumeric())
                && !after.is_some_and(|c| c.is_ascii_alphanumeric())
                && !cont
                && !pre
        })
        .count()
}

fn leaks(original: &Path, redacted: &Path) -> Vec<String> {
    let o = gather(original);
    assert!(
        o.names.len() >= 5 && o.ips.len() >= 5,
        "the gathering found too little to prove anything: {o:?}"
    );
    let hay = all_bytes(redacted);
    let lower = hay.to_ascii_lowercase();
    let mut found = Vec::new();
    for n in &o.names {
        if token_hits(&hay, n) > 0 {
            found.push(format!("name {n}"));
        }
    }
    for ip in &o.ips {
        if netsnap_redact::addr::is_kept(*ip) {
            continue;
        }
        if token_hits(&hay, &ip.to_string()) > 0 {
            found.push(format!("address {ip}"));
        }
        if let IpAddr::V4(a) = ip {
            let o = a.octets();
            let ptr = format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0]);
            if lower.contains(&ptr) {
                found.push(format!("PTR {ptr}"));
            }
            // /proc/net/ip_vs (network order) and /proc/net/tcp (host order) hex.
            for hex in [
                format!("{:08x}", u32::from(*a)),
                format!("{:08x}", u32::from(*a).swap_bytes()),
            ] {
                if token_hits(&lower, &hex) > 0 {
                    found.push(format!("hex {hex} of {ip}"));
                }
            }
        }
    }
    for m in &o.macs {
        if lower.contains(m.as_str()) {
            found.push(format!("MAC {m}"));
        }
    }
    found
}

#[test]
fn no_original_value_survives_in_any_byte() {
    let tmp = tempfile::tempdir().unwrap();
    for path in fixture_bundles() {
        let out = tmp.path().join(path.file_name().unwrap());
        redact_bundle(&path, &out, &options(2)).unwrap();
        let found = leaks(&path, &out);
        assert!(found.is_empty(), "{}: {found:?}", path.display());
        // The scan is not blind: the original bundle is full of hits.
        let control = leaks(&path, &path);
        assert!(control.len() >= 10, "control scan found only {control:?}");
    }
}

/// Copies `src` into a new bundle at `dst` with extra artifacts.
fn with_extra(src: &Path, dst: &Path, extra: &[(&str, ArtifactKind, &str, &[u8])]) {
    let b = open(src);
    let w = BundleWriter::create(dst, WriterOptions::default()).unwrap();
    for r in &b.manifest().artifacts {
        if let Some(Ok(mut f)) = b.open_artifact(&r.path) {
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes).unwrap();
            let spec = ArtifactSpec::new(r.path.clone(), r.kind, &r.content, r.source);
            w.add_bytes(spec, &bytes, Completion::default()).unwrap();
        }
    }
    for (path, kind, content, bytes) in extra {
        let spec = ArtifactSpec::new(*path, *kind, content, netsnap_bundle::ArtifactSource::File);
        w.add_bytes(spec, bytes, Completion::default()).unwrap();
    }
    let m = b.manifest().clone();
    w.finish(m.tool, m.node, m.collection).unwrap();
}

#[test]
fn planted_secrets_are_removed_and_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixture_bundles()[0].clone();
    let planted = tmp.path().join("planted.tar.zst");
    let canary = "CANARY-7f3a9c1e5b2d4f60a8e1";
    let conf = format!(
        r#"{{"name":"cbr0","plugins":[{{"type":"calico","token":"{canary}","kubernetes":{{"kubeconfig":"/etc/cni/net.d/calico-kubeconfig"}}}}]}}"#
    );
    let pem = format!("-----BEGIN PRIVATE KEY-----\n{canary}PEM\n-----END PRIVATE KEY-----\n");
    with_extra(
        &src,
        &planted,
        &[
            (
                "cni/net.d/10-calico.conflist",
                ArtifactKind::Raw,
                "file",
                conf.as_bytes(),
            ),
            (
                "kubelet/client.key",
                ArtifactKind::Raw,
                "file",
                pem.as_bytes(),
            ),
        ],
    );
    assert!(
        all_bytes(&planted).contains(canary),
        "the canary is planted"
    );
    let out = tmp.path().join("out.tar.zst");
    let done = redact_bundle(&planted, &out, &options(3)).unwrap();
    let hay = all_bytes(&out);
    assert!(!hay.contains(canary), "the canary leaked");
    let r = done.manifest.redaction.unwrap();
    assert!(
        r.secrets_removed
            .iter()
            .any(|s| s.contains("10-calico.conflist") && s.contains("token")),
        "{:?}",
        r.secrets_removed
    );
    assert!(
        r.secrets_removed.iter().any(|s| s.contains("client.key")),
        "{:?}",
        r.secrets_removed
    );
    // The configuration itself is still there for the rules.
    let b = open(&out);
    let text = b
        .read_text("cni/net.d/10-calico.conflist")
        .unwrap()
        .unwrap();
    assert!(text.contains("calico"), "{text}");
}

#[test]
fn idempotent_with_the_same_key_and_layered_with_another() {
    let tmp = tempfile::tempdir().unwrap();
    let src = &fixture_bundles()[1];
    let once = tmp.path().join("once.tar.zst");
    let twice = tmp.path().join("twice.tar.zst");
    let other = tmp.path().join("other.tar.zst");
    redact_bundle(src, &once, &options(4)).unwrap();
    let again = redact_bundle(&once, &twice, &options(4)).unwrap();
    assert!(again.already_redacted);
    let (a, b) = (open(&once), open(&twice));
    assert_eq!(a.manifest(), b.manifest());
    for r in &a.manifest().artifacts {
        assert_eq!(
            a.read_text(&r.path).map(Result::unwrap),
            b.read_text(&r.path).map(Result::unwrap),
            "{}",
            r.path
        );
    }
    // Another key redacts again and keeps the history.
    let layered = redact_bundle(&once, &other, &options(5)).unwrap();
    assert!(!layered.already_redacted);
    let rec = layered.manifest.redaction.unwrap();
    assert_eq!(rec.earlier.len(), 1);
    assert_eq!(
        rec.earlier[0].key_fingerprint,
        Key::from_bytes([4; 32]).fingerprint()
    );
    assert_ne!(rec.key_fingerprint, rec.earlier[0].key_fingerprint);
}

#[test]
fn same_key_agrees_across_bundles() {
    // Two bundles of the same cluster redacted with one key name the same
    // Service, node and addresses the same way (a multi-node analysis joins).
    let tmp = tempfile::tempdir().unwrap();
    let bundles = fixture_bundles();
    let healthy = bundles
        .iter()
        .find(|p| p.to_string_lossy().contains("healthy"))
        .unwrap();
    let missing = bundles
        .iter()
        .find(|p| p.to_string_lossy().contains("service-missing"))
        .unwrap();
    let a = redact_bundle(healthy, &tmp.path().join("a.tar.zst"), &options(6)).unwrap();
    let b = redact_bundle(missing, &tmp.path().join("b.tar.zst"), &options(6)).unwrap();
    let shared: Vec<_> = a
        .map
        .addrs
        .keys()
        .filter(|k| b.map.addrs.contains_key(*k))
        .collect();
    assert!(shared.len() >= 5, "{shared:?}");
    for k in shared {
        assert_eq!(a.map.addrs[k], b.map.addrs[k], "{k}");
    }
    assert_eq!(a.map.names.get("web"), b.map.names.get("web"));
    assert!(a.map.names.contains_key("web"));
}

#[test]
fn malformed_artifacts_are_withheld_unless_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixture_bundles()[0].clone();
    let bad = tmp.path().join("bad.tar.zst");
    with_extra(
        &src,
        &bad,
        &[
            (
                "k8s/runtime-pods.jsonl",
                ArtifactKind::Native,
                "native-jsonl",
                b"{\"name\":\"secret-pod\"}\n{not json\n",
            ),
            (
                "node/vendor-dump.bin",
                ArtifactKind::Raw,
                "file",
                b"NAME=\xff\xfe binary\n",
            ),
        ],
    );
    let out = tmp.path().join("out.tar.zst");
    let done = redact_bundle(&bad, &out, &options(7)).unwrap();
    let r = done.manifest.redaction.as_ref().unwrap();
    assert_eq!(
        r.withheld,
        vec!["k8s/runtime-pods.jsonl", "node/vendor-dump.bin"]
    );
    let b = open(&out);
    for p in ["k8s/runtime-pods.jsonl", "node/vendor-dump.bin"] {
        let rec = b.record(p).unwrap();
        assert_eq!(rec.status, ArtifactStatus::Failed, "{p}");
        assert!(
            rec.error
                .as_deref()
                .unwrap()
                .contains("withheld by redaction"),
            "{p}"
        );
        assert!(b.read_text(p).is_none(), "{p}");
    }
    assert!(!all_bytes(&out).contains("secret-pod"));

    let kept = tmp.path().join("kept.tar.zst");
    let mut opts = options(7);
    opts.keep_unredactable = true;
    let done = redact_bundle(&bad, &kept, &opts).unwrap();
    let r = done.manifest.redaction.as_ref().unwrap();
    assert!(r.withheld.is_empty());
    assert_eq!(
        r.not_redacted,
        vec!["k8s/runtime-pods.jsonl", "node/vendor-dump.bin"]
    );
    let b = open(&kept);
    let rec = b.record("node/vendor-dump.bin").unwrap();
    assert!(rec.attributes["redaction"].starts_with("could not be redacted"));
    assert!(b.read_text("node/vendor-dump.bin").is_some());
}

fn analyze_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_netsnap-analyze"))
}

#[test]
fn cli_redact_then_unredact_a_report() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixture_bundles()
        .into_iter()
        .find(|p| p.to_string_lossy().contains("dns-vip-failing"))
        .unwrap();
    let out = tmp.path().join("r.tar.zst");
    let st = Command::new(analyze_bin())
        .args(["redact", src.to_str().unwrap(), "-o", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let map_path = tmp.path().join("r.tar.zst.map.json");
    assert!(map_path.exists(), "the map is written beside the bundle");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&map_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the map is private: {mode:o}");
    }
    // The map is not inside the bundle.
    assert!(!all_bytes(&out).contains("netsnap.redaction-map"));
    let report = |b: &Path| {
        let o = Command::new(analyze_bin())
            .args(["analyze", b.to_str().unwrap(), "--format", "markdown"])
            .output()
            .unwrap();
        String::from_utf8(o.stdout).unwrap()
    };
    let (orig, red) = (report(&src), report(&out));
    assert!(orig.contains("10.96.0.10") && !red.contains("10.96.0.10"));
    let report_path = tmp.path().join("report.md");
    std::fs::write(&report_path, &red).unwrap();
    let back = Command::new(analyze_bin())
        .args([
            "unredact",
            report_path.to_str().unwrap(),
            "--map",
            map_path.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(back.status.success());
    let back = String::from_utf8(back.stdout).unwrap();
    // Line for line the same report, except the bundle line (its path and hash)
    // and quoted evidence cut at a character count.
    let differ: Vec<(&str, &str)> = orig
        .lines()
        .zip(back.lines())
        .filter(|(a, b)| a != b)
        .filter(|(a, _)| {
            !a.contains("r.tar.zst")
                && !a.contains("fixtures/bundles")
                && !a.contains('…')
                && !a.contains("sha256")
        })
        .collect();
    assert_eq!(orig.lines().count(), back.lines().count());
    assert!(differ.is_empty(), "{differ:#?}");

    // A second bundle into the same map reuses its key.
    let out2 = tmp.path().join("r2.tar.zst");
    let st = Command::new(analyze_bin())
        .args([
            "redact",
            src.to_str().unwrap(),
            "-o",
            out2.to_str().unwrap(),
            "--map",
            map_path.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    assert_eq!(open(&out).manifest(), open(&out2).manifest());

    // Bad input: a clear one-line error and exit 2.
    let bad_key = tmp.path().join("short.key");
    std::fs::write(&bad_key, "tiny").unwrap();
    let st = Command::new(analyze_bin())
        .args([
            "redact",
            src.to_str().unwrap(),
            "-o",
            tmp.path().join("x.tar.zst").to_str().unwrap(),
            "--key",
            bad_key.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(st.status.code(), Some(2));
    let err = String::from_utf8_lossy(&st.stderr);
    assert!(err.contains("bad key"), "{err}");
}

#[test]
fn a_path_too_long_once_redacted_is_withheld_not_fatal() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixture_bundles()[0].clone();
    // 173 bytes, fits a tar header; with `web` replaced by `n-` + 10 it does not.
    let long = format!("cni/networks/{}x", "web/".repeat(40));
    let bad = tmp.path().join("long.tar.zst");
    with_extra(&src, &bad, &[(&long, ArtifactKind::Raw, "file", b"{}\n")]);
    let out = tmp.path().join("out.tar.zst");
    let done = redact_bundle(&bad, &out, &options(8)).unwrap();
    let r = done.manifest.redaction.as_ref().unwrap();
    assert_eq!(r.withheld.len(), 1, "{:?}", r.withheld);
    let b = open(&out);
    let rec = b.record(&r.withheld[0]).unwrap();
    assert_eq!(rec.status, ArtifactStatus::Failed);
    assert!(
        rec.error
            .as_deref()
            .unwrap()
            .contains("redacted path invalid")
    );
    // Every other artifact is still there.
    assert_eq!(
        b.manifest().artifacts.len(),
        open(&bad).manifest().artifacts.len()
    );
}

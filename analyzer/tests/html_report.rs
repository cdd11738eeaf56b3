//! `analyze --format html`: one self-contained file, safe against any bundle content,
//! checked in a real browser.
//!
//! A hostile copy of the inspect-example bundle carries `<script>`, an attribute break-out
//! with an `<img onerror>` pointing at a probe host, and terminal escapes in pod, Service and
//! node names, the kernel log and the manifest's notes. The report must show them as text,
//! hold no script, image, style sheet or other URL to load, and render in headless
//! Chromium (Debian package `chromium`) offline: the DOM Chromium builds has no injected
//! element, its net log shows no request for the probe host (a control page proves the net
//! log would show it), and a screenshot is kept under the target directory
//! (`$CARGO_TARGET_TMPDIR/html-report/`). Without Chromium the browser checks print
//! `SKIP` unless `NETSNAP_REQUIRE_LAB=1` (CI), where they fail.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::Digest;

const SCRIPT: &str = "<script>alert(1)</script>";
/// Breaks out of a quoted attribute and loads an image from the probe host.
const ATTR: &str = "\"><img src=http://netsnap-probe.invalid/x.png onerror=alert(2)>";
const TERM: &str = "\x1b[2J\x1b]0;pwn\x07";
const PROBE_HOST: &str = "netsnap-probe.invalid";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_netsnap-analyze")
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/bundles")
        .join(name)
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

/// Extracts the inspect-example bundle into `dir` and makes it hostile (digests recomputed
/// so it opens with verification on).
fn hostile_bundle(dir: &Path) {
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "zstd -dc '{}' | tar -x -C '{}'",
            fixture("inspect-example.tar.zst").display(),
            dir.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    let full = format!("{SCRIPT}{ATTR}{TERM}");
    let json_full = serde_json::to_string(&full).unwrap();
    let json_full = &json_full[1..json_full.len() - 1];
    // Text artifacts are whitespace-separated: no space or quote there.
    let text_part = format!("{SCRIPT}{TERM}");
    let tokens = ["node-two", "kube-dns", "coredns-7db6d8ff4d-x8k2p"];
    let mut files = Vec::new();
    collect(dir, &mut files);
    for f in &files {
        let rel = f.strip_prefix(dir).unwrap().to_string_lossy().to_string();
        let mut text = std::fs::read_to_string(f).unwrap();
        let is_json = rel.ends_with(".json") || rel.ends_with(".jsonl");
        for t in tokens {
            let with = if is_json {
                format!("{t}{json_full}")
            } else {
                format!("{t}{text_part}")
            };
            text = text.replace(t, &with);
        }
        if rel == "node/kernel-log.txt" {
            text.push_str(&format!("[Sat Nov 28 09:20:00 2026] {full} oops\n"));
        }
        std::fs::write(f, text).unwrap();
    }
    let manifest_path = dir.join("manifest.json");
    let mut manifest_text = std::fs::read_to_string(&manifest_path).unwrap();
    for t in tokens {
        manifest_text = manifest_text.replace(t, &format!("{t}{json_full}"));
    }
    let mut m: serde_json::Value = serde_json::from_str(&manifest_text).unwrap();
    m["collection"]["notes"]
        .as_array_mut()
        .unwrap()
        .push(full.clone().into());
    for a in m["artifacts"].as_array_mut().unwrap() {
        let path = a["path"].as_str().unwrap().to_string();
        let file = dir.join(&path);
        if file.is_file() {
            let bytes = std::fs::read(&file).unwrap();
            a["size"] = bytes.len().into();
            a["sha256"] = hex::encode(sha2::Sha256::digest(&bytes)).into();
        } else if a["status"] != "ok" {
            a["error"] = full.clone().into();
        }
    }
    std::fs::write(&manifest_path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

fn analyze_html(bundle: &Path) -> String {
    let out = Command::new(bin())
        .args(["analyze", bundle.to_str().unwrap(), "--format", "html"])
        .output()
        .unwrap();
    assert!(
        out.status.code().unwrap_or(-1) <= 1,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Tags a report may hold; anything else came from the bundle.
const TAGS: &[&str] = &[
    "!doctype", "html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "span",
    "table", "thead", "tbody", "tr", "th", "td", "code", "div", "pre", "strong", "a", "footer",
];
/// Attributes a report may hold.
const ATTRS: &[&str] = &[
    "charset",
    "http-equiv",
    "content",
    "name",
    "lang",
    "class",
    "id",
    "href",
    "rel",
];

/// Every tag of an HTML text (each `<` outside a tag opens one: text has none, it is
/// escaped) with its attribute names (outside quoted values).
fn tags(html: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        let after = &rest[start + 1..];
        let mut end = 0;
        let mut quote: Option<char> = None;
        for (i, c) in after.char_indices() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '"' | '\'') => quote = Some(c),
                (None, '>') => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        let inner = &after[..end];
        let name: String = inner
            .trim_start_matches('/')
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '/')
            .collect::<String>()
            .to_ascii_lowercase();
        // Attribute names: words before `=` outside quotes.
        let mut attrs = Vec::new();
        let mut quote: Option<char> = None;
        let mut word = String::new();
        for c in inner.chars().skip(name.len() + 1) {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '"' | '\'') => quote = Some(c),
                (None, '=') => attrs.push(std::mem::take(&mut word).to_ascii_lowercase()),
                (None, c) if c.is_whitespace() || c == '/' => word.clear(),
                (None, c) => word.push(c),
            }
        }
        if !name.is_empty() {
            out.push((name, attrs));
        }
        rest = &after[end..];
    }
    out
}

/// Only the report's own tags and attributes.
fn assert_only_report_markup(what: &str, html: &str) {
    let found = tags(html);
    assert!(found.len() > 50, "{what}: only {} tags", found.len());
    for (name, attrs) in &found {
        assert!(TAGS.contains(&name.as_str()), "{what}: tag <{name}>");
        for a in attrs {
            assert!(
                ATTRS.contains(&a.as_str()),
                "{what}: attribute {a} on <{name}>"
            );
        }
    }
}

/// Static checks: what the file holds, before any browser sees it.
fn assert_self_contained_and_inert(html: &str) {
    assert_only_report_markup("report", html);
    let lower = html.to_ascii_lowercase();
    for bad in ["url(", "@import", "http-equiv=\"refresh\""] {
        assert!(!lower.contains(bad), "{bad:?} in the HTML report");
    }
    assert!(
        html.contains("content=\"default-src 'none'; style-src 'unsafe-inline'\""),
        "the CSP forbids every load"
    );
    // Raw control characters never reach the file (escapes are shown like `cat -v`).
    assert!(
        !html
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t'),
        "raw control character in the HTML report"
    );
    // Every link is a rule reference: a plain http(s) URL, never a bundle string.
    for (i, _) in html.match_indices("<a ") {
        let tag = &html[i..i + html[i..].find('>').unwrap()];
        assert!(
            tag.starts_with("<a href=\"https://") || tag.starts_with("<a href=\"http://"),
            "{tag}"
        );
        assert!(!tag.contains(PROBE_HOST), "{tag}");
    }
}

#[test]
fn html_report_of_a_hostile_bundle_is_inert_and_self_contained() {
    let tmp = tempfile::tempdir().unwrap();
    hostile_bundle(tmp.path());
    let html = analyze_html(tmp.path());
    assert!(html.starts_with("<!DOCTYPE html>"), "{}", &html[..80]);
    assert_self_contained_and_inert(&html);
    // The hostile strings are there, as text.
    assert!(
        html.contains("node-two&lt;script&gt;alert(1)&lt;/script&gt;"),
        "escaped script in the node name"
    );
    assert!(
        html.contains(
            "&quot;&gt;&lt;img src=http://netsnap-probe.invalid/x.png onerror=alert(2)&gt;"
        ),
        "escaped attribute break-out"
    );
    assert!(
        html.contains("^[[2J^[]0;pwn^G"),
        "terminal escapes shown inert"
    );
    // The sections a reader needs.
    for section in [
        "<h2 id=\"nodes\">Nodes</h2>",
        "<h2 id=\"findings\">Findings</h2>",
        "<h2 id=\"not-evaluated\">Not evaluated (missing data)</h2>",
        "<h2 id=\"passed\">Checks that passed</h2>",
    ] {
        assert!(html.contains(section), "{section} missing");
    }
}

#[test]
fn html_report_sections_follow_the_report() {
    // A clean healthy bundle: no finding, checks passed; the node row counts them.
    let html = analyze_html(&fixture("healthy-flannel.tar.zst"));
    assert_self_contained_and_inert(&html);
    assert!(html.contains("<p>No findings.</p>"));
    assert!(!html.contains("id=\"rule-errors\""), "no empty sections");
    let passed_rows = html
        .split("<h2 id=\"passed\">")
        .nth(1)
        .unwrap()
        .matches("<td>passed</td>")
        .count();
    assert!(passed_rows > 20, "{passed_rows} passed checks listed");
    // A faulty bundle: the critical finding with its quoted evidence line.
    let html = analyze_html(&fixture("conntrack-near-max.tar.zst"));
    let findings = html.split("<h2 id=\"findings\">").nth(1).unwrap();
    assert!(
        findings.contains("<code>conntrack-near-max</code>"),
        "{findings}"
    );
    assert!(findings.contains("<pre>"), "evidence is quoted");
}

/// Headless Chromium, or why not (None: skip, unless CI requires it).
fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser"].iter().find_map(|name| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
    });
    if found.is_none() {
        assert!(
            std::env::var("NETSNAP_REQUIRE_LAB").as_deref() != Ok("1"),
            "chromium is required (apt-get install chromium)"
        );
        eprintln!("SKIP browser test: chromium not installed (apt-get install chromium)");
    }
    found
}

/// Runs headless Chromium offline (every host name resolves to nothing, no proxy, no
/// background networking) on `page` with extra arguments; returns stdout and the net log.
fn run_chromium(chrome: &Path, page: &Path, work: &Path, extra: &[String]) -> (String, String) {
    let netlog = work.join(format!(
        "netlog-{}.json",
        page.file_stem().unwrap().to_string_lossy()
    ));
    let profile = work.join("profile");
    let out = Command::new(chrome)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--no-proxy-server",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--log-net-log={}", netlog.display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = std::fs::read_to_string(&netlog).unwrap_or_default();
    (String::from_utf8(out.stdout).unwrap(), log)
}

#[test]
fn html_report_renders_in_headless_chromium_offline() {
    let Some(chrome) = chromium() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("bundle");
    std::fs::create_dir(&bundle).unwrap();
    hostile_bundle(&bundle);
    let html = analyze_html(&bundle);
    let page = tmp.path().join("report.html");
    std::fs::write(&page, &html).unwrap();

    // Control: a page that does load the probe image shows it in the net log, so the
    // absence below means something.
    let control = tmp.path().join("control.html");
    std::fs::write(
        &control,
        format!("<!DOCTYPE html><p>control</p><img src=\"http://{PROBE_HOST}/x.png\">"),
    )
    .unwrap();
    let (_, control_log) = run_chromium(&chrome, &control, tmp.path(), &["--dump-dom".into()]);
    assert!(
        control_log.contains(PROBE_HOST),
        "the net log records a page's requests"
    );

    let (dom, log) = run_chromium(&chrome, &page, tmp.path(), &["--dump-dom".into()]);
    assert!(!log.is_empty(), "no net log written");
    assert!(
        !log.contains(PROBE_HOST),
        "the report made the browser request the probe host"
    );
    // The DOM Chromium built holds no injected element: only the report's own tags.
    assert_only_report_markup("rendered DOM", &dom);
    assert!(
        tags(&dom).iter().filter(|(t, _)| t == "div").count() >= 4,
        "the findings render as elements"
    );
    // The hostile names are rendered as text (the serializer escapes them again).
    assert!(
        dom.contains("node-two&lt;script&gt;alert(1)&lt;/script&gt;"),
        "the node name renders as text"
    );
    assert!(dom.contains("<h2 id=\"findings\">Findings</h2>"));
    assert!(dom.contains("<h2 id=\"passed\">Checks that passed</h2>"));
    assert!(
        dom.contains("<code>conntrack-stale-udp</code>"),
        "a finding renders"
    );
    assert!(dom.contains("Not evaluated (missing data)"));

    // A screenshot kept as a test artifact.
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("html-report");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join("hostile-report.png");
    let _ = std::fs::remove_file(&shot);
    run_chromium(
        &chrome,
        &page,
        tmp.path(),
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,2400".into(),
        ],
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(
        png.len() > 20_000,
        "a blank screenshot ({} bytes)",
        png.len()
    );
    eprintln!("screenshot: {}", shot.display());
}

#[test]
fn the_markup_check_catches_an_injection() {
    // The renderer's own output passes (above); the same page with one unescaped bundle
    // string does not.
    let html = analyze_html(&fixture("conntrack-near-max.tar.zst"));
    let injected = html.replacen(
        "<h2 id=\"findings\">",
        "<p>x\"><img src=http://netsnap-probe.invalid/x.png onerror=alert(2)></p><h2 id=\"findings\">",
        1,
    );
    assert!(std::panic::catch_unwind(|| assert_only_report_markup("ok", &html)).is_ok());
    assert!(std::panic::catch_unwind(|| assert_only_report_markup("injected", &injected)).is_err());
}

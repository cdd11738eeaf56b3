//! One huge line in a bundle (issue 12: a 2 GiB line inside a 112 KB bundle used to take
//! 6.2 GiB of RSS) is skipped and noted, and the analyzer's peak memory stays bounded.
//!
//! The bundle is streamed: the line is generated while it is hashed and while it is
//! compressed, never held in memory (zstd makes a few hundred KB of it). The non-ignored
//! test uses a 300 MiB line; the issue's 2 GiB line is `#[ignore]`d because it writes and
//! reads 2 GiB through the extraction directory (about two minutes on a loaded 2-core
//! machine):
//!
//! ```sh
//! cargo test -p netsnap-analyzer --test long_line -- --ignored --nocapture
//! ```
//!
//! Peak RSS is the child's `VmHWM`, read from `/proc/<pid>/status` until it exits (its own
//! test binary and its own child, so nothing else is counted).

#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::Digest;

const ARTIFACT: &str = "iptables/iptables-save.txt";
/// The line is inserted before this line of the original dump (1-based).
const AT_LINE: usize = 4;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_netsnap-analyze")
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/bundles/inspect-example.tar.zst")
}

/// The iptables dump with a `len`-byte line of `x` inserted as line [`AT_LINE`], as a stream.
fn dump_with_long_line(original: &str, len: u64) -> (u64, impl Read) {
    let mut head = String::new();
    let mut tail = String::from("\n");
    for (i, l) in original.lines().enumerate() {
        let part = if i + 1 < AT_LINE {
            &mut head
        } else {
            &mut tail
        };
        part.push_str(l);
        part.push('\n');
    }
    let total = head.len() as u64 + len + tail.len() as u64;
    let r = std::io::Cursor::new(head.into_bytes())
        .chain(std::io::repeat(b'x').take(len))
        .chain(std::io::Cursor::new(tail.into_bytes()));
    (total, r)
}

/// Writes `out`, the inspect-example bundle whose iptables dump carries a `len`-byte line;
/// returns the dump's line count.
fn long_line_bundle(work: &Path, len: u64, out: &Path) -> usize {
    let root = work.join("extracted");
    std::fs::create_dir(&root).unwrap();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "zstd -dc '{}' | tar -x -C '{}'",
            fixture().display(),
            root.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    let original = std::fs::read_to_string(root.join(ARTIFACT)).unwrap();
    // First pass: size and digest for the manifest.
    let (size, mut r) = dump_with_long_line(&original, len);
    let mut sha = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
    }
    let manifest_path = root.join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).unwrap()).unwrap();
    for a in m["artifacts"].as_array_mut().unwrap() {
        if a["path"] == ARTIFACT {
            a["size"] = size.into();
            a["sha256"] = hex::encode(sha.clone().finalize()).into();
        }
    }
    let manifest = serde_json::to_vec_pretty(&m).unwrap();
    // Second pass: the archive, the long artifact streamed into it.
    let enc = zstd::stream::Encoder::new(std::fs::File::create(out).unwrap(), 3).unwrap();
    let mut tar = tar::Builder::new(enc);
    let mut append = |path: &str, size: u64, data: &mut dyn Read| {
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, path, data).unwrap();
    };
    append("manifest.json", manifest.len() as u64, &mut &manifest[..]);
    let mut files = Vec::new();
    walk(&root, &mut files);
    for f in files {
        let rel = f
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if rel == "manifest.json" {
            continue;
        }
        if rel == ARTIFACT {
            let (size, mut r) = dump_with_long_line(&original, len);
            append(&rel, size, &mut r);
        } else {
            let bytes = std::fs::read(&f).unwrap();
            append(&rel, bytes.len() as u64, &mut &bytes[..]);
        }
    }
    let enc = tar.into_inner().unwrap();
    enc.finish().unwrap().flush().unwrap();
    std::fs::remove_dir_all(&root).unwrap();
    original.lines().count() + 1
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    peak_rss_kib: u64,
}

/// Runs the analyzer with its scratch space in `tmp`, sampling its peak RSS until it exits.
fn run(args: &[&str], tmp: &Path) -> Run {
    let mut child = Command::new(bin())
        .args(args)
        .env("TMPDIR", tmp)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        out.read_to_end(&mut s).unwrap();
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        err.read_to_end(&mut s).unwrap();
        s
    });
    // VmHWM only grows; the last value read before the process exits is its peak (up to the
    // last 20 ms of its life, which render and write the report).
    let mut peak = 0;
    let status = loop {
        if let Some(kib) = vm_hwm_kib(pid) {
            peak = peak.max(kib);
        }
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Run {
        code: status.code(),
        stdout: String::from_utf8(reader.join().unwrap()).unwrap(),
        stderr: String::from_utf8_lossy(&err_reader.join().unwrap()).into_owned(),
        peak_rss_kib: peak,
    }
}

/// Most RSS the analyzer may use on the fixture plus one over-long line. The fixture alone
/// takes about 40 MiB; a line kept whole would take a multiple of its length.
const RSS_BOUND_KIB: u64 = 128 * 1024;

fn check(len: u64) {
    let work = tempfile::tempdir().unwrap();
    let bundle = work.path().join("long-line.tar.zst");
    let lines = long_line_bundle(work.path(), len, &bundle);
    let compressed = std::fs::metadata(&bundle).unwrap().len();
    eprintln!("{len}-byte line: bundle is {compressed} bytes");
    assert!(compressed < 16 << 20, "the bundle is small: {compressed}");
    let tmp = work.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let cap = (len + (64 << 20)).to_string();
    let b = bundle.to_str().unwrap();
    let r = run(
        &[
            "analyze",
            b,
            "--format",
            "json",
            "--max-unpacked-size",
            &cap,
        ],
        &tmp,
    );
    eprintln!("peak RSS {} KiB", r.peak_rss_kib);
    assert!(matches!(r.code, Some(0 | 1)), "{:?}: {}", r.code, r.stderr);
    assert!(r.peak_rss_kib > 0, "no RSS sample");
    assert!(
        r.peak_rss_kib < RSS_BOUND_KIB,
        "peak RSS {} KiB for a {len}-byte line",
        r.peak_rss_kib
    );
    // Skipped and noted, with its line number and length, among the artifacts the parsers
    // did not fully understand.
    assert!(
        !r.stdout.contains("xxxxxxxxxx"),
        "the line reached the report"
    );
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let unparsed: Vec<&serde_json::Value> = v["unparsed_artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["path"] == ARTIFACT)
        .collect();
    assert_eq!(unparsed.len(), 1, "{}", v["unparsed_artifacts"]);
    assert_eq!(unparsed[0]["first_line"], AT_LINE, "{}", unparsed[0]);
    assert_eq!(
        unparsed[0]["reason"],
        format!("line of {len} bytes, longer than 4 MiB: skipped")
    );
    // The rest of the dump is still read: every line is counted, and the kube-proxy mode
    // comes from the rules after the long line.
    assert_eq!(unparsed[0]["lines"], lines, "{}", unparsed[0]);
    assert_eq!(
        v["bundles"][0]["proxy_mode"], "iptables",
        "{}",
        v["bundles"]
    );
    // And the extraction directory is gone.
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
}

#[test]
fn a_300_mib_line_is_skipped_with_bounded_memory() {
    check(300 << 20);
}

#[test]
#[ignore = "2 GiB through the extraction directory: run with --ignored (see the module doc)"]
fn a_2_gib_line_is_skipped_with_bounded_memory() {
    check(2 << 30);
}

//! Every kind of bad or hostile input gets its own typed, one-line error, and
//! nothing is ever written outside the reader's temp dir.

mod common;

use std::path::Path;

use netsnap_bundle::{Bundle, ReadError, ReaderOptions};

fn opts(temp_parent: &Path) -> ReaderOptions {
    ReaderOptions {
        temp_parent: Some(temp_parent.to_path_buf()),
        ..ReaderOptions::default()
    }
}

/// Opens `bytes` as a bundle file; asserts the temp parent is left empty.
fn open_bytes(bytes: &[u8], options: Option<ReaderOptions>) -> Result<Opened, ReadError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).expect("mkdir");
    let path = dir.path().join("in.bin");
    std::fs::write(&path, bytes).expect("write");
    let mut o = options.unwrap_or_else(|| opts(&scratch));
    o.temp_parent = Some(scratch.clone());
    let result = Bundle::open(&path, &o);
    if result.is_err() {
        let left: Vec<_> = std::fs::read_dir(&scratch).expect("ls").collect();
        assert!(
            left.is_empty(),
            "failed open must clean its temp dir: {left:?}"
        );
        let top: Vec<String> = std::fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("e").file_name().to_string_lossy().into_owned())
            .collect();
        let mut top_sorted = top.clone();
        top_sorted.sort();
        assert_eq!(
            top_sorted,
            vec!["in.bin", "scratch"],
            "nothing written beside the scratch dir"
        );
    }
    result.map(|bundle| Opened { bundle, _dir: dir })
}

/// A bundle plus the temp dir its extraction lives in.
#[derive(Debug)]
struct Opened {
    bundle: Bundle,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Opened {
    type Target = Bundle;
    fn deref(&self) -> &Bundle {
        &self.bundle
    }
}

fn good_bundle() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("b.tar.zst");
    common::write_sample(&path);
    std::fs::read(path).expect("read")
}

fn one_line(e: &ReadError) -> String {
    let s = e.to_string();
    assert!(!s.contains('\n'), "error must be one line: {s}");
    s
}

#[test]
fn truncated_zstd() {
    let b = good_bundle();
    let err = open_bytes(&b[..b.len() - 40], None).expect_err("truncated");
    assert!(
        matches!(
            err,
            ReadError::Compression { .. } | ReadError::Archive { .. }
        ),
        "{err}"
    );
    one_line(&err);
    // Cut in the middle of the artifact frame.
    let err = open_bytes(&b[..b.len() / 2], None).expect_err("truncated");
    assert!(matches!(err, ReadError::Compression { .. }), "{err}");
}

#[test]
fn corrupt_zstd() {
    let mut b = good_bundle();
    let mid = b.len() / 2;
    for byte in &mut b[mid..mid + 16] {
        *byte ^= 0x5a;
    }
    let err = open_bytes(&b, None).expect_err("corrupt");
    assert!(matches!(err, ReadError::Compression { .. }), "{err}");
    one_line(&err);
}

#[test]
fn not_a_tar() {
    let err = open_bytes(
        &common::zstd(b"hello, this is not a tar archive at all"),
        None,
    )
    .expect_err("not tar");
    assert!(
        matches!(err, ReadError::Archive { .. } | ReadError::MissingManifest),
        "{err}"
    );
    let err = open_bytes(&common::zstd(&[7u8; 2048]), None).expect_err("not tar");
    assert!(matches!(err, ReadError::Archive { .. }), "{err}");
    one_line(&err);
}

#[test]
fn not_a_bundle_at_all() {
    let err = open_bytes(b"PK\x03\x04 a zip file", None).expect_err("zip");
    assert!(matches!(err, ReadError::NotABundle { .. }), "{err}");
    assert!(one_line(&err).contains("not a netsnap bundle"));
    let err = open_bytes(b"", None).expect_err("empty");
    assert!(matches!(err, ReadError::NotABundle { .. }), "{err}");
}

#[test]
fn missing_file_is_an_open_error() {
    let err = Bundle::open("/nonexistent/netsnap.tar.zst", &ReaderOptions::default())
        .expect_err("missing");
    assert!(matches!(err, ReadError::Open { .. }), "{err}");
}

#[test]
fn no_manifest() {
    let tar = common::tar_of(&[common::file_entry("node/uname.txt", b"Linux")]);
    let err = open_bytes(&common::zstd(&tar), None).expect_err("no manifest");
    assert!(matches!(err, ReadError::MissingManifest), "{err}");
}

#[test]
fn malformed_manifest_json() {
    let tar = common::tar_of(&[common::file_entry(
        "manifest.json",
        b"{\"format_version\": \"1.0\", ",
    )]);
    let err = open_bytes(&common::zstd(&tar), None).expect_err("malformed");
    assert!(matches!(err, ReadError::MalformedManifest { .. }), "{err}");
    one_line(&err);
    let tar = common::tar_of(&[common::file_entry(
        "manifest.json",
        br#"{"format_version": "1.0"}"#,
    )]);
    let err = open_bytes(&common::zstd(&tar), None).expect_err("incomplete");
    assert!(matches!(err, ReadError::MalformedManifest { .. }), "{err}");
    let tar = common::tar_of(&[common::file_entry(
        "manifest.json",
        br#"{"format_version": "one"}"#,
    )]);
    let err = open_bytes(&common::zstd(&tar), None).expect_err("bad version");
    assert!(matches!(err, ReadError::MalformedManifest { .. }), "{err}");
}

#[test]
fn manifest_with_escaping_artifact_path_is_malformed() {
    let m = common::manifest_json("1.0", &[("../../etc/passwd", b"x")]);
    let tar = common::tar_of(&[common::file_entry("manifest.json", &m)]);
    let err = open_bytes(&common::zstd(&tar), None).expect_err("escape");
    assert!(matches!(err, ReadError::MalformedManifest { .. }), "{err}");
}

#[test]
fn newer_major_version_is_refused_with_the_needed_version() {
    let m = common::manifest_json("2.0", &[]);
    let tar = common::tar_of(&[common::file_entry("manifest.json", &m)]);
    let err = open_bytes(&common::zstd(&tar), None).expect_err("v2");
    assert!(
        matches!(err, ReadError::UnsupportedVersion { ref found, .. } if found == "2.0"),
        "{err}"
    );
    assert!(one_line(&err).contains("format 2.0"));
}

#[test]
fn newer_minor_version_and_unknown_entries_are_accepted() {
    let data = b"new thing";
    let m = common::manifest_json("1.7", &[("node/uname.txt", b"Linux")]);
    let tar = common::tar_of(&[
        common::file_entry("manifest.json", &m),
        common::file_entry("node/uname.txt", b"Linux"),
        common::file_entry("future/feature.json", data),
    ]);
    let bundle = open_bytes(&common::zstd(&tar), None).expect("forward compatible");
    assert_eq!(bundle.unknown_entries(), ["future/feature.json"]);
}

#[test]
fn duplicate_paths() {
    let m = common::manifest_json("1.0", &[("node/uname.txt", b"Linux")]);
    let tar = common::tar_of(&[
        common::file_entry("manifest.json", &m),
        common::file_entry("node/uname.txt", b"Linux"),
        common::file_entry("node/uname.txt", b"Evil"),
    ]);
    let err = open_bytes(&common::zstd(&tar), None).expect_err("dup");
    assert!(
        matches!(err, ReadError::DuplicateEntry { ref path } if path == "node/uname.txt"),
        "{err}"
    );
    // `./a` and `a` are the same path.
    let tar = common::tar_of(&[
        common::file_entry("manifest.json", &m),
        common::file_entry("node/uname.txt", b"Linux"),
        common::file_entry("./node/uname.txt", b"Linux"),
    ]);
    let err = open_bytes(&common::zstd(&tar), None).expect_err("dup");
    assert!(matches!(err, ReadError::DuplicateEntry { .. }), "{err}");
}

#[test]
fn checksum_mismatch_and_no_verify() {
    let m = common::manifest_json("1.0", &[("node/uname.txt", b"Linux")]);
    let tar = common::tar_of(&[
        common::file_entry("manifest.json", &m),
        common::file_entry("node/uname.txt", b"Linuz"),
    ]);
    let bytes = common::zstd(&tar);
    let err = open_bytes(&bytes, None).expect_err("mismatch");
    assert!(
        matches!(err, ReadError::ChecksumMismatch { ref path, .. } if path == "node/uname.txt"),
        "{err}"
    );
    assert!(one_line(&err).contains("node/uname.txt"));
    let dir = tempfile::tempdir().expect("tempdir");
    let o = ReaderOptions {
        verify: false,
        ..opts(dir.path())
    };
    let b = open_bytes(&bytes, Some(o)).expect("--no-verify skips the check");
    assert_eq!(
        b.read_text("node/uname.txt")
            .expect("present")
            .expect("read"),
        "Linuz"
    );
}

#[test]
fn listed_artifact_missing_from_archive() {
    let m = common::manifest_json("1.0", &[("node/uname.txt", b"Linux")]);
    let tar = common::tar_of(&[common::file_entry("manifest.json", &m)]);
    let err = open_bytes(&common::zstd(&tar), None).expect_err("missing");
    assert!(
        matches!(err, ReadError::MissingArtifact { ref path } if path == "node/uname.txt"),
        "{err}"
    );
}

#[test]
fn decompression_bomb_is_refused() {
    // 64 MiB of zeros compresses to a few KiB.
    let zeros = vec![0u8; 64 << 20];
    let m = common::manifest_json("1.0", &[("bomb.bin", &zeros)]);
    let tar = common::tar_of(&[
        common::file_entry("manifest.json", &m),
        common::file_entry("bomb.bin", &zeros),
    ]);
    let bytes = common::zstd(&tar);
    assert!(bytes.len() < 64 * 1024);
    let dir = tempfile::tempdir().expect("tempdir");
    let o = ReaderOptions {
        max_unpacked_bytes: 16 << 20,
        ..opts(dir.path())
    };
    let err = open_bytes(&bytes, Some(o)).expect_err("bomb");
    assert!(
        matches!(err, ReadError::TooLarge { limit } if limit == 16 << 20),
        "{err}"
    );
    assert!(one_line(&err).contains("decompression bomb"));
}

#[test]
fn too_many_entries_is_refused() {
    let mut entries = vec![common::file_entry(
        "manifest.json",
        &common::manifest_json("1.0", &[]),
    )];
    for i in 0..50 {
        entries.push(common::file_entry(&format!("x/{i}"), b""));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let o = ReaderOptions {
        max_entries: 20,
        ..opts(dir.path())
    };
    let err = open_bytes(&common::zstd(&common::tar_of(&entries)), Some(o)).expect_err("many");
    assert!(
        matches!(err, ReadError::TooManyEntries { limit: 20 }),
        "{err}"
    );
}

#[test]
fn hostile_entries_are_rejected_and_nothing_escapes() {
    let unique = format!("netsnap-escape-{}", std::process::id());
    let m = common::manifest_json("1.0", &[]);
    let cases: Vec<(&str, common::Entry)> = vec![
        (
            "dotdot",
            common::file_entry(&format!("../../{unique}"), b"pwned"),
        ),
        (
            "dotdot-inner",
            common::file_entry(&format!("a/../../{unique}"), b"pwned"),
        ),
        (
            "absolute",
            common::file_entry(&format!("/tmp/{unique}"), b"pwned"),
        ),
        (
            "symlink",
            (
                common::raw_header(b"etc-passwd", 0, b'2', b"/etc/passwd"),
                vec![],
            ),
        ),
        (
            "hardlink",
            (common::raw_header(b"hard", 0, b'1', b"/etc/passwd"), vec![]),
        ),
        (
            "chardev",
            (common::raw_header(b"null", 0, b'3', b""), vec![]),
        ),
        ("fifo", (common::raw_header(b"fifo", 0, b'6', b""), vec![])),
    ];
    for (name, entry) in cases {
        for order in [0, 1] {
            let entries = if order == 0 {
                vec![common::file_entry("manifest.json", &m), entry.clone()]
            } else {
                vec![entry.clone(), common::file_entry("manifest.json", &m)]
            };
            let tar = common::tar_of(&entries);
            for bytes in [common::zstd(&tar), tar.clone()] {
                let err = open_bytes(&bytes, None).expect_err(name);
                assert!(
                    matches!(err, ReadError::UnsafeEntry { .. }),
                    "{name}: {err}"
                );
                one_line(&err);
            }
        }
    }
    assert!(!Path::new("/tmp").join(&unique).exists());
    assert!(!std::env::temp_dir().join(&unique).exists());
}

#[test]
fn symlink_inside_directory_bundle_is_not_followed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = common::manifest_json("1.0", &[("node/uname.txt", b"root:x:0:0")]);
    std::fs::write(dir.path().join("manifest.json"), m).expect("write");
    std::fs::create_dir(dir.path().join("node")).expect("mkdir");
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("node/uname.txt")).expect("symlink");
    let err = Bundle::open(dir.path(), &ReaderOptions::default()).expect_err("symlink");
    assert!(matches!(err, ReadError::UnsafeEntry { .. }), "{err}");
}

#[test]
fn bundle_nested_in_one_directory_opens() {
    let m = common::manifest_json("1.0", &[("node/uname.txt", b"Linux")]);
    let tar = common::tar_of(&[
        common::file_entry("netsnap-x/manifest.json", &m),
        common::file_entry("netsnap-x/node/uname.txt", b"Linux"),
    ]);
    let b = open_bytes(&tar, None).expect("nested");
    assert_eq!(
        b.read_text("node/uname.txt")
            .expect("present")
            .expect("read"),
        "Linux"
    );
}

/// The sample bundle with one byte of `victim`'s content changed (same size, so the tar
/// stays well-formed and only the manifest's sha256 can tell).
fn tampered_bundle(victim: &str) -> Vec<u8> {
    let tar_bytes = zstd::stream::decode_all(&good_bundle()[..]).expect("decode");
    let mut archive = tar::Archive::new(&tar_bytes[..]);
    let mut out = tar::Builder::new(Vec::new());
    let mut changed = false;
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let mut header = entry.header().clone();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).expect("read");
        if entry.path().expect("path").ends_with(victim) && !data.is_empty() {
            data[0] ^= 0x01;
            changed = true;
        }
        header.set_cksum();
        out.append(&header, &data[..]).expect("append");
    }
    assert!(changed, "{victim} not in the sample bundle");
    common::zstd(&out.into_inner().expect("tar"))
}

#[test]
fn tampered_artifact_fails_verification_and_opens_without_it() {
    let victim = netsnap_bundle::layout::iptables::SAVE;
    let b = tampered_bundle(victim);
    let err = open_bytes(&b, None).expect_err("tampered");
    assert!(
        matches!(&err, ReadError::ChecksumMismatch { path, .. } if path == victim),
        "{err}"
    );
    assert!(one_line(&err).contains("--no-verify"), "{err}");
    // The other artifacts were hashed too, each on its own: only the victim is named.
    let dir = tempfile::tempdir().expect("tempdir");
    let opened = open_bytes(
        &b,
        Some(ReaderOptions {
            verify: false,
            ..opts(dir.path())
        }),
    )
    .expect("opens without verification");
    assert!(opened.read_text(victim).is_some());
    // And an untouched bundle verifies.
    open_bytes(&good_bundle(), None).expect("good bundle verifies");
}

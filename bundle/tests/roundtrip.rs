//! Writer -> reader round trips and the writer's guarantees.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use netsnap_bundle::writer::WriteError;
use netsnap_bundle::{
    ArtifactSpec, ArtifactStatus, Bundle, BundleWriter, Completion, ReaderOptions,
    TruncationReason, WriterOptions, layout,
};

#[test]
fn round_trip_keeps_bytes_records_and_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("b.tar.zst");
    let written = common::write_sample(&path);

    // The manifest is the first tar entry, readable with a plain zstd + tar pipeline.
    let decoded = zstd::decode_all(std::fs::File::open(&path).expect("open")).expect("zstd");
    let mut archive = tar::Archive::new(&decoded[..]);
    let names: Vec<String> = archive
        .entries()
        .expect("entries")
        .map(|e| {
            e.expect("entry")
                .path()
                .expect("path")
                .display()
                .to_string()
        })
        .collect();
    assert_eq!(names[0], "manifest.json");
    assert_eq!(
        names.len(),
        4,
        "manifest + 3 artifacts with content: {names:?}"
    );

    let bundle = Bundle::open(&path, &ReaderOptions::default()).expect("open bundle");
    assert_eq!(bundle.manifest(), &written);
    assert_eq!(
        bundle
            .read_text(layout::iptables::SAVE)
            .expect("present")
            .expect("read"),
        common::IPTABLES
    );
    // "Collected, empty" is distinct from "not collected".
    let ct = bundle.record(layout::conntrack::TABLE).expect("record");
    assert_eq!((ct.status, ct.size), (ArtifactStatus::Ok, 0));
    assert_eq!(
        bundle
            .read_text(layout::conntrack::TABLE)
            .expect("present")
            .expect("read"),
        ""
    );
    let ipvs = bundle.record(layout::ipvs::LIST).expect("record");
    assert_eq!(ipvs.status, ArtifactStatus::Unavailable);
    assert!(bundle.artifact_file(layout::ipvs::LIST).is_none());
    let pods = bundle.record(layout::k8s::PODS).expect("record");
    assert_eq!(pods.status, ArtifactStatus::Failed);
    assert_eq!(
        pods.error.as_deref(),
        Some("GET /api/v1/pods: 403 Forbidden")
    );
    // Records are sorted by path.
    let paths: Vec<&str> = written.artifacts.iter().map(|a| a.path.as_str()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted);
    assert!(bundle.unknown_entries().is_empty());
}

#[test]
fn manifest_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = common::write_sample(&dir.path().join("b.tar.zst"));
    insta::assert_json_snapshot!(manifest, {".tool.version" => "[version]"});
}

#[test]
fn plain_tar_and_directory_bundles_open_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("b.tar.zst");
    common::write_sample(&path);
    let tar_bytes = zstd::decode_all(std::fs::File::open(&path).expect("open")).expect("zstd");
    let tar_path = dir.path().join("b.tar");
    std::fs::write(&tar_path, &tar_bytes).expect("write tar");
    let from_tar = Bundle::open(&tar_path, &ReaderOptions::default()).expect("tar opens");
    assert!(from_tar.record(layout::iptables::SAVE).is_some());

    let extracted = dir.path().join("x");
    std::fs::create_dir(&extracted).expect("mkdir");
    tar::Archive::new(&tar_bytes[..])
        .unpack(&extracted)
        .expect("unpack");
    let from_dir = Bundle::open(&extracted, &ReaderOptions::default()).expect("dir opens");
    assert_eq!(from_dir.root(), extracted.as_path());
    assert_eq!(
        from_dir
            .read_text(layout::iptables::SAVE)
            .expect("present")
            .expect("read"),
        common::IPTABLES
    );
    // A modified file in a directory bundle is caught by verification.
    std::fs::write(extracted.join(layout::iptables::SAVE), "tampered").expect("write");
    let err = Bundle::open(&extracted, &ReaderOptions::default()).expect_err("tampered");
    assert!(
        matches!(err, netsnap_bundle::ReadError::ChecksumMismatch { ref path, .. } if path == layout::iptables::SAVE),
        "{err}"
    );
}

#[test]
fn caps_truncate_and_are_recorded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("b.tar.zst");
    let w = BundleWriter::create(
        &path,
        WriterOptions {
            max_artifact_bytes: Some(1000),
            max_total_bytes: Some(1500),
            compression_level: 3,
            ..WriterOptions::default()
        },
    )
    .expect("create");
    let a = w
        .add_bytes(
            ArtifactSpec::raw_file("a.txt", "file"),
            &[b'a'; 4000],
            Completion::default(),
        )
        .expect("a");
    assert_eq!(a.size, 1000);
    assert_eq!(a.status, ArtifactStatus::Partial);
    assert_eq!(
        a.truncated.as_ref().map(|t| t.reason),
        Some(TruncationReason::ArtifactCap)
    );
    let b = w
        .add_bytes(
            ArtifactSpec::raw_file("b.txt", "file"),
            &[b'b'; 800],
            Completion::default(),
        )
        .expect("b");
    assert_eq!(b.size, 500, "only 500 bytes of the total budget were left");
    assert_eq!(
        b.truncated.as_ref().map(|t| t.reason),
        Some(TruncationReason::TotalCap)
    );
    let c = w
        .add_bytes(
            ArtifactSpec::raw_file("c.txt", "file"),
            b"ccc",
            Completion::default(),
        )
        .expect("c");
    assert_eq!(c.size, 0);
    w.finish(common::tool(), common::node(), common::collection())
        .expect("finish");
    let bundle = Bundle::open(&path, &ReaderOptions::default()).expect("open");
    assert_eq!(
        bundle.read_text("a.txt").expect("a").expect("read").len(),
        1000
    );
    assert_eq!(
        bundle.read_text("b.txt").expect("b").expect("read"),
        "b".repeat(500)
    );
}

#[test]
fn writer_rejects_bad_and_duplicate_paths() {
    let dir = tempfile::tempdir().expect("tempdir");
    let w = BundleWriter::create(dir.path().join("b.tar.zst"), WriterOptions::default())
        .expect("create");
    for bad in ["../x", "/abs", "a//b", ""] {
        let err = w
            .artifact(ArtifactSpec::raw_file(bad, "file"))
            .err()
            .expect("must fail");
        assert!(
            matches!(err, WriteError::InvalidPath { .. }),
            "{bad}: {err}"
        );
    }
    w.add_bytes(
        ArtifactSpec::raw_file("a.txt", "file"),
        b"1",
        Completion::default(),
    )
    .expect("first");
    let err = w
        .artifact(ArtifactSpec::raw_file("a.txt", "file"))
        .err()
        .expect("dup");
    assert!(matches!(err, WriteError::DuplicatePath { .. }), "{err}");
}

#[test]
fn interrupted_writer_leaves_no_bundle_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("b.tar.zst");
    {
        let w = BundleWriter::create(&path, WriterOptions::default()).expect("create");
        let mut sink = w
            .artifact(ArtifactSpec::raw_file("a.txt", "file"))
            .expect("sink");
        sink.write_all(b"half written").expect("write");
        // Dropped without finish(), as when the process is killed mid-run.
        assert!(
            std::fs::read_dir(dir.path()).expect("ls").any(|e| {
                e.expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".partial")
            }),
            "work in progress lives under a .partial name"
        );
    }
    assert!(!path.exists());
    let left: Vec<_> = std::fs::read_dir(dir.path()).expect("ls").collect();
    assert!(left.is_empty(), "temp files must be cleaned up: {left:?}");
}

#[cfg(unix)]
#[test]
fn spool_is_private_and_named_after_the_process() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("b.tar.zst");
    let w = BundleWriter::create(&path, WriterOptions::default()).expect("create");
    let spools: Vec<_> = std::fs::read_dir(dir.path())
        .expect("ls")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(spools.len(), 1, "{spools:?}");
    let name = spools[0]
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert_eq!(
        netsnap_bundle::spool_owner_pid(&name),
        Some(std::process::id())
    );
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&spools[0]), 0o700, "spool directory");
    for e in std::fs::read_dir(&spools[0]).expect("ls spool") {
        let p = e.expect("entry").path();
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
    w.finish(common::tool(), common::node(), common::collection())
        .expect("finish");
    assert_eq!(mode(&path), 0o600, "the bundle itself");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("b.tar.zst")]);
}

#[test]
fn spool_names_parse_only_when_they_are_spools() {
    use netsnap_bundle::spool_owner_pid;
    assert_eq!(spool_owner_pid(".netsnap-4242-Ab3xYz.partial"), Some(4242));
    assert_eq!(spool_owner_pid(".netsnap-Ab3xYz.partial"), None);
    assert_eq!(spool_owner_pid(".netsnap-4242-x.tar.zst.partial"), None);
    assert_eq!(spool_owner_pid("netsnap-4242-Ab3xYz.partial"), None);
    assert_eq!(spool_owner_pid(".netsnap-4242-Ab3xYz"), None);
}

#[test]
fn existing_bundle_is_kept_unless_replacing_is_allowed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("b.tar.zst");
    std::fs::write(&path, b"precious").expect("write");
    let w = BundleWriter::create(
        &path,
        WriterOptions {
            replace_existing: false,
            ..WriterOptions::default()
        },
    )
    .expect("create");
    let err = w
        .finish(common::tool(), common::node(), common::collection())
        .expect_err("must not replace");
    assert!(
        matches!(&err, WriteError::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).expect("read"), b"precious");
    let left: Vec<_> = std::fs::read_dir(dir.path()).expect("ls").collect();
    assert_eq!(left.len(), 1, "no spool left after the refusal: {left:?}");
}

#[test]
fn concurrent_producers_each_stream_their_artifact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("b.tar.zst");
    let w = BundleWriter::create(&path, WriterOptions::default()).expect("create");
    std::thread::scope(|s| {
        for i in 0..8 {
            let w = w.clone();
            s.spawn(move || {
                let mut sink = w
                    .artifact(ArtifactSpec::raw_file(format!("t/{i}.txt"), "file"))
                    .expect("sink");
                for _ in 0..1000 {
                    writeln!(sink, "line from producer {i}").expect("write");
                }
                sink.finish(Completion {
                    duration: Duration::from_millis(i),
                    ..Completion::default()
                })
                .expect("finish");
            });
        }
    });
    w.finish(common::tool(), common::node(), common::collection())
        .expect("finish");
    let bundle = Bundle::open(&path, &ReaderOptions::default()).expect("open");
    for i in 0..8 {
        let mut text = String::new();
        bundle
            .open_artifact(&format!("t/{i}.txt"))
            .expect("present")
            .expect("open")
            .read_to_string(&mut text)
            .expect("read");
        assert_eq!(text.lines().count(), 1000);
        assert!(text.lines().all(|l| l == format!("line from producer {i}")));
    }
}

#[test]
fn format_1_0_bundle_without_resource_usage_still_opens() {
    // A real bundle written by the collector before format 1.1 added `resource_usage`.
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/compat/format-1.0-healthy-flannel.tar.zst"
    );
    let b = Bundle::open(std::path::Path::new(path), &ReaderOptions::default()).expect("open");
    assert_eq!(b.manifest().format_version, "1.0");
    assert_eq!(b.manifest().collection.resource_usage, None);
}

#[test]
fn resource_usage_round_trips_through_the_manifest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("b.tar.zst");
    common::write_sample(&path);
    let b = Bundle::open(&path, &ReaderOptions::default()).expect("open");
    assert_eq!(b.manifest().format_version, netsnap_bundle::FORMAT_VERSION);
    assert_eq!(
        b.manifest().collection.resource_usage,
        common::collection().resource_usage
    );
    assert!(b.manifest().collection.resource_usage.is_some());
}

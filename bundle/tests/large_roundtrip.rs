//! A 300 MB artifact goes through the writer and the verifying reader with
//! bounded peak memory. Own test binary, so VmHWM measures only this test.

mod common;

use std::io::Write;

use netsnap_bundle::{
    ArtifactSpec, Bundle, BundleWriter, Completion, ReaderOptions, WriterOptions, layout,
};

const TOTAL: u64 = 300 * 1024 * 1024;

#[test]
fn three_hundred_megabytes_with_bounded_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("big.tar.zst");
    let before = common::vm_hwm_kib();
    let w = BundleWriter::create(&path, WriterOptions::default()).expect("create");
    let mut sink = w
        .artifact(ArtifactSpec::raw_command(
            layout::conntrack::TABLE,
            layout::content::CONNTRACK_LIST,
            &["conntrack", "-L"],
        ))
        .expect("sink");
    // Realistic conntrack-like lines with varying numbers, generated on the fly.
    let mut written: u64 = 0;
    let mut i: u64 = 0;
    let mut line = String::with_capacity(256);
    while written < TOTAL {
        line.clear();
        use std::fmt::Write as _;
        let _ = writeln!(
            line,
            "tcp      6 {} ESTABLISHED src=10.244.{}.{} dst=10.96.{}.{} sport={} dport=443 src=10.244.{}.{} dst=10.244.0.{} sport=443 dport={} [ASSURED] mark=0 use=1",
            86400 - (i % 86400),
            (i >> 8) % 256,
            i % 256,
            (i >> 4) % 256,
            i % 200,
            1024 + i % 60000,
            i % 256,
            (i >> 3) % 256,
            i % 250,
            1024 + i % 60000
        );
        sink.write_all(line.as_bytes()).expect("write");
        written += line.len() as u64;
        i += 1;
    }
    let record = sink.finish(Completion::default()).expect("finish artifact");
    assert_eq!(record.size, written);
    w.finish(common::tool(), common::node(), common::collection())
        .expect("finish");
    let after_write = common::vm_hwm_kib();

    let bundle = Bundle::open(&path, &ReaderOptions::default()).expect("open with verification");
    assert_eq!(
        bundle
            .record(layout::conntrack::TABLE)
            .expect("record")
            .size,
        written
    );
    let file = bundle
        .artifact_file(layout::conntrack::TABLE)
        .expect("file");
    assert_eq!(std::fs::metadata(file).expect("meta").len(), written);
    let after_read = common::vm_hwm_kib();
    eprintln!("VmHWM KiB: start {before}, after write {after_write}, after read {after_read}");
    let compressed = std::fs::metadata(&path).expect("meta").len();
    eprintln!("raw {written} bytes -> bundle {compressed} bytes");
    assert!(
        after_write < 64 * 1024,
        "writer peak RSS {after_write} KiB >= 64 MiB"
    );
    assert!(
        after_read < 64 * 1024,
        "reader peak RSS {after_read} KiB >= 64 MiB"
    );
    assert!(
        compressed < written / 4,
        "conntrack text should compress well"
    );
}

//! `remove_live_spools` removes every live spool of the process, so it runs in
//! its own test binary (other tests' writers would lose theirs).

use std::io::Write;

use netsnap_bundle::{ArtifactSpec, BundleWriter, WriterOptions};

#[test]
fn live_spools_can_be_removed_before_a_hard_exit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let w = BundleWriter::create(dir.path().join("b.tar.zst"), WriterOptions::default())
        .expect("create");
    let mut sink = w
        .artifact(ArtifactSpec::raw_file("a.txt", "file"))
        .expect("sink");
    sink.write_all(b"in flight").expect("write");
    assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1);
    // What the collector does before std::process::exit (no destructor runs then).
    netsnap_bundle::remove_live_spools();
    let left: Vec<_> = std::fs::read_dir(dir.path()).expect("ls").collect();
    assert!(left.is_empty(), "{left:?}");
    drop(sink);
    drop(w);
}

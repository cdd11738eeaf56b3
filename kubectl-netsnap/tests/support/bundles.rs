//! Small real bundles made with the bundle crate's writer, as the collector's
//! exec stream would carry them.

#![allow(dead_code)]

use std::time::Duration;

use netsnap_bundle::testing::TestNode;
use netsnap_bundle::{
    ArtifactSource, ArtifactSpec, ArtifactStatus, BundleWriter, CollectionOutcome, Completion,
    WriterOptions, layout,
};

/// A bundle for `node`: a few artifacts and ~100 KiB of conntrack-like text so
/// the stream spans many WebSocket frames. `partial`: one failed artifact and a
/// deadline-exceeded outcome.
pub fn make_bundle(node: &str, partial: bool) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("b.tar.zst");
    let writer = BundleWriter::create(&path, WriterOptions::default()).expect("writer");
    let ok = Completion {
        exit_status: Some(0),
        duration: Duration::from_millis(3),
        ..Default::default()
    };
    writer
        .add_bytes(
            ArtifactSpec::raw_command(layout::node::UNAME, "uname", &["uname", "-a"]),
            format!("Linux {node} 6.1.0-test #1 SMP x86_64 GNU/Linux\n").as_bytes(),
            ok.clone(),
        )
        .expect("uname");
    let mut conntrack = String::new();
    for i in 0..1500u32 {
        conntrack.push_str(&format!(
            "tcp      6 {} ESTABLISHED src=10.244.{}.{} dst=10.96.0.{} sport={} dport=443 src=10.244.9.{} dst=10.244.{}.{} sport=443 dport={} [ASSURED] mark=0 use=1\n",
            86_000 + i % 400,
            i / 250,
            i % 250,
            i % 7,
            30_000 + (i * 7919) % 30_000,
            (i * 31) % 250,
            i / 250,
            i % 250,
            30_000 + (i * 7919) % 30_000,
        ));
    }
    writer
        .add_bytes(
            ArtifactSpec::raw_command(
                layout::conntrack::TABLE,
                "conntrack-entries",
                &["conntrack", "-L"],
            ),
            conntrack.as_bytes(),
            ok.clone(),
        )
        .expect("conntrack");
    if partial {
        writer
            .record_missing(
                ArtifactSpec::new(
                    layout::iptables::SAVE,
                    netsnap_bundle::ArtifactKind::Raw,
                    "iptables-save",
                    ArtifactSource::Command,
                ),
                ArtifactStatus::Failed,
                "iptables-save timed out after 5s",
                Completion {
                    error: Some("timed out".into()),
                    ..Default::default()
                },
            )
            .expect("missing");
    }
    let now = chrono::Utc::now();
    writer
        .finish_as(&TestNode::new(node, now).outcome(if partial {
            CollectionOutcome::DeadlineExceeded
        } else {
            CollectionOutcome::Complete
        }))
        .expect("finish");
    std::fs::read(&path).expect("read bundle")
}

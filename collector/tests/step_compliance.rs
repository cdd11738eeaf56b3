//! Step compliance (modelled on vector's `assert_source_compliance`): every step
//! of the complete list, [`netsnap_collector::steps::all`], keeps the contract of
//! `docs/collector.md` ("Extending: steps") when the run is stopped under it.
//!
//! For each step, on this machine's real kernel (no mock), in its own temporary
//! bundle, after a real discovery:
//! 1. a run that nothing stops gives the artifacts the step records here: what it
//!    declares on this node;
//! 2. the same step started with the cancellation token already tripped
//!    (deadline or Ctrl-C arriving as it starts) MUST return within
//!    [`GRACE`] and MUST leave a manifest record for every one of those
//!    artifacts, or for the tree that holds it when the stop came before the
//!    tree was listed (any status: partial, failed, skipped, with its reason);
//! 3. the same with a deadline already over (`ctx.remaining()` is zero) but the
//!    token not yet tripped: same two rules.
//!
//! A step that returns early on a stop without recording what it had started
//! fails here. Checked by hand: an early `return` on a stop at the top of the
//! ipvs step made it fail with six "no manifest record for ipvs/..." lines, and
//! before its fix the netlink step failed it (no `link-stats.2.json` record
//! when the first dump was cut).

#![cfg(target_os = "linux")]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use netsnap_bundle::{ArtifactStatus, BundleWriter, WriterOptions};
use netsnap_collector::runner::GRACE;
use netsnap_collector::step::{Phase, RunContext};
use netsnap_collector::sys::progress::Progress;
use netsnap_collector::{Cancel, Options, StopReason};

/// How a step is started.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Start {
    /// Nothing stops it.
    Free,
    /// The token is tripped before it starts.
    Cancelled,
    /// The deadline is already over, the token not yet tripped.
    DeadlineOver,
}

fn options(dir: &std::path::Path, start: Start) -> Options {
    let mut o = Options {
        output: Some(dir.join("b.tar.zst")),
        no_api: true,
        timeout: Duration::from_secs(2),
        sample_interval: Duration::from_millis(200),
        deadline: match start {
            Start::DeadlineOver => Duration::from_nanos(1),
            _ => Duration::from_secs(60),
        },
        ..Options::default()
    };
    o.kube.no_api = true;
    o.kube.kubelet_fallback = false;
    o.dns.include_host = false;
    o
}

/// Runs discovery, then `pick`'s step of the complete list, started as `start`;
/// returns the paths recorded by that step (not by discovery) with their
/// statuses, and how long the step took.
async fn run_one(
    pick: usize,
    start: Start,
) -> (
    String,
    Vec<(String, ArtifactStatus, Option<String>)>,
    Duration,
) {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = options(dir.path(), start);
    let steps = netsnap_collector::steps::all(&options);
    let step = steps[pick].clone();
    let name = step.name().to_string();
    let writer = BundleWriter::create(dir.path().join("b.tar.zst"), WriterOptions::default())
        .expect("temp bundle");
    let cancel = Cancel::new();
    let ctx = Arc::new(RunContext::new(
        writer.clone(),
        options,
        cancel.clone(),
        Progress::detect(true),
    ));
    // Capture and Derive steps read what discovery found, as in a real run.
    if step.phase() != Phase::Discover
        && let Some(discover) = steps.iter().find(|s| s.phase() == Phase::Discover)
    {
        discover.clone().run(ctx.clone()).await.expect("discovery");
    }
    let before: BTreeSet<String> = writer.records().into_iter().map(|r| r.path).collect();
    if start == Start::Cancelled {
        cancel.stop(StopReason::Deadline);
    }
    let t = Instant::now();
    let run = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::spawn(step.clone().run(ctx.clone())),
    )
    .await;
    let took = t.elapsed();
    assert!(run.is_ok(), "{name} ({start:?}) still running after 60s");
    let records = writer
        .records()
        .into_iter()
        .filter(|r| !before.contains(&r.path))
        .map(|r| (r.path, r.status, r.error))
        .collect();
    (name, records, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_records_every_artifact_and_returns_within_grace_when_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let count = netsnap_collector::steps::all(&options(dir.path(), Start::Free)).len();
    assert!(count >= 10, "the complete list has {count} steps");
    let mut problems = Vec::new();
    for i in 0..count {
        let (name, free, _) = run_one(i, Start::Free).await;
        let declared: BTreeSet<&str> = free.iter().map(|(p, _, _)| p.as_str()).collect();
        if declared.is_empty() && name != "netns-discover" {
            problems.push(format!(
                "{name}: records nothing even when nothing stops it"
            ));
        }
        for start in [Start::Cancelled, Start::DeadlineOver] {
            let (_, stopped, took) = run_one(i, start).await;
            if took > GRACE {
                problems.push(format!(
                    "{name} ({start:?}): took {took:?}, more than the {GRACE:?} grace period"
                ));
            }
            let got: BTreeSet<&str> = stopped.iter().map(|(p, _, _)| p.as_str()).collect();
            // A stop before a tree was listed leaves one record for the tree
            // (`cni/net.d`, failed, with the reason) instead of one per file.
            let covered = |p: &str| {
                got.contains(p)
                    || got
                        .iter()
                        .any(|g| p.strip_prefix(g).is_some_and(|r| r.starts_with('/')))
            };
            for missing in declared.iter().filter(|p| !covered(p)) {
                problems.push(format!(
                    "{name} ({start:?}): no manifest record for {missing}"
                ));
            }
            for (path, status, error) in &stopped {
                if !matches!(status, ArtifactStatus::Ok)
                    && error.as_deref().unwrap_or("").is_empty()
                {
                    problems.push(format!(
                        "{name} ({start:?}): {path} is {status:?} without a reason"
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

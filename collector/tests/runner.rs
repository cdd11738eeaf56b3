//! The runner with plugged-in steps (the way the Kubernetes/DNS/correlation
//! steps join): a panicking step, a step that ignores cancellation, and a
//! well-behaved one, against the deadline. No root needed.
#![allow(clippy::disallowed_methods, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use netsnap_bundle::{
    ArtifactSource, ArtifactSpec, ArtifactStatus, Bundle, CollectionOutcome, ReaderOptions,
};
use netsnap_collector::step::{BoxFuture, Phase, RunContext, Step, StepError, Tally};
use netsnap_collector::sys::progress::Progress;
use netsnap_collector::{Cancel, Options, collect};

struct Good;
impl Step for Good {
    fn name(&self) -> &'static str {
        "good"
    }
    fn run(self: Arc<Self>, ctx: Arc<RunContext>) -> BoxFuture<Result<Tally, StepError>> {
        Box::pin(async move {
            let mut t = Tally::default();
            let spec = ArtifactSpec::native("test/good.json", ArtifactSource::Derived);
            t.add_result(ctx.writer.add_json(spec, &vec![1, 2, 3], Duration::ZERO));
            Ok(t)
        })
    }
}

struct Panics;
impl Step for Panics {
    fn name(&self) -> &'static str {
        "panics"
    }
    fn run(self: Arc<Self>, _ctx: Arc<RunContext>) -> BoxFuture<Result<Tally, StepError>> {
        Box::pin(async move { panic!("step bug") })
    }
}

/// Ignores the token: must be abandoned after the grace period.
struct Stubborn;
impl Step for Stubborn {
    fn name(&self) -> &'static str {
        "stubborn"
    }
    fn run(self: Arc<Self>, _ctx: Arc<RunContext>) -> BoxFuture<Result<Tally, StepError>> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(Tally::default())
        })
    }
}

/// A Derive step sees what Capture steps stored.
struct Derived;
impl Step for Derived {
    fn name(&self) -> &'static str {
        "derived"
    }
    fn phase(&self) -> Phase {
        Phase::Derive
    }
    fn runs_when_stopped(&self) -> bool {
        true
    }
    fn run(self: Arc<Self>, ctx: Arc<RunContext>) -> BoxFuture<Result<Tally, StepError>> {
        Box::pin(async move {
            let mut t = Tally::default();
            let seen = ctx.writer.has_path("test/good.json");
            t.add_result(ctx.writer.add_json(
                ArtifactSpec::native("test/derived.json", ArtifactSource::Derived),
                &seen,
                Duration::ZERO,
            ));
            Ok(t)
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_and_hanging_steps_do_not_stop_the_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.tar.zst");
    let options = Options {
        output: Some(out.clone()),
        deadline: Duration::from_secs(1),
        ..Options::default()
    };
    let steps: Vec<Arc<dyn Step>> = vec![
        Arc::new(Good),
        Arc::new(Panics),
        Arc::new(Stubborn),
        Arc::new(Derived),
    ];
    let start = Instant::now();
    let outcome = collect(options, steps, Cancel::new(), Progress::Quiet)
        .await
        .unwrap();
    // Deadline (1 s) + grace (3 s), not the stubborn step's hour.
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "{:?}",
        start.elapsed()
    );
    let names: Vec<&str> = outcome
        .step_failures
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    assert!(names.contains(&"panics"), "{names:?}");
    assert!(names.contains(&"stubborn"), "{names:?}");
    assert!(!names.contains(&"good"));

    let b = Bundle::open(&out, &ReaderOptions::default()).unwrap();
    let m = b.manifest();
    assert_eq!(m.collection.outcome, CollectionOutcome::DeadlineExceeded);
    assert!(
        m.collection
            .notes
            .iter()
            .any(|n| n.contains("step panics: panicked"))
    );
    assert!(m.collection.notes.iter().any(|n| n.contains("stubborn")));
    assert_eq!(
        b.record("test/good.json").unwrap().status,
        ArtifactStatus::Ok
    );
    // The derive step ran although the run was stopped, and saw the capture.
    assert_eq!(
        b.read_text("test/derived.json").unwrap().unwrap().trim(),
        "true"
    );
    // No discovery step: like the API-only cluster pass, the run reads nothing of the
    // node, so it does not report the node's privileges either.
    assert!(b.record(netsnap_bundle::layout::node::PRIVILEGES).is_none());
}

//! The scheduler: runs the [`Step`]s it is given concurrently in phases against
//! one shared [`RunContext`], and always writes a manifest.
//!
//! Guarantees:
//! - every step runs in its own tokio task; one failing, hanging or panicking
//!   step never stops the others; its failure becomes a manifest note and its
//!   artifacts are recorded with the reason;
//! - the global deadline and Ctrl-C/SIGTERM trip one [`Cancel`] token; steps
//!   then get [`GRACE`] to finish their records (commands are killed and their
//!   output kept as partial) before the bundle is finished regardless;
//! - phases order the few real dependencies: `Discover` (namespace list) runs
//!   before `Capture` (everything independent, concurrently), which runs before
//!   `Derive` (correlations over what was captured, e.g. the pod matcher).
//!
//! The contract steps implement is [`crate::step`]; this module names no data
//! source: the list it runs comes from [`crate::steps`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use netsnap_bundle::{
    ArtifactRecord, ArtifactSource, ArtifactSpec, ArtifactStatus, BundleWriter, CollectionInfo,
    CollectionOutcome, Manifest, ToolInfo, WriteError, WriterOptions, layout,
};

use crate::options::Options;
use crate::step::{Phase, RunContext, Step};
use crate::sys::cancel::{Cancel, StopReason};
use crate::sys::host::{node_info, resource_usage};
use crate::sys::progress::Progress;

/// Time steps get to record what they have once the run is stopped.
pub const GRACE: Duration = Duration::from_secs(3);

/// What a run produced.
#[derive(Debug)]
pub struct Outcome {
    /// The bundle's path.
    pub path: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    /// Its size in bytes.
    pub size: u64,
    /// Step failures (name, reason).
    pub step_failures: Vec<(String, String)>,
}

/// Why no bundle could be written at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// Creating or finishing the bundle failed.
    #[error("cannot write the bundle: {0}")]
    Bundle(#[from] WriteError),
}

/// What a run is given: synchronous checks made once before any step, then the
/// steps. Built by [`crate::steps::plan`]; a bare list of steps converts into a
/// plan without checks.
#[derive(Default)]
pub struct Plan {
    /// Called in order with the context before the first phase (e.g. the
    /// privileges check, which records `node/privileges.json` and a note).
    pub preflight: Vec<fn(&RunContext)>,
    /// The steps, in no particular order.
    pub steps: Vec<Arc<dyn Step>>,
}

impl From<Vec<Arc<dyn Step>>> for Plan {
    fn from(steps: Vec<Arc<dyn Step>>) -> Self {
        Plan {
            preflight: Vec::new(),
            steps,
        }
    }
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("preflight", &self.preflight.len())
            .field(
                "steps",
                &self.steps.iter().map(|s| s.name()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Runs a plan (or a bare list of steps) and writes the bundle. Fails only when no
/// bundle can be written.
pub async fn collect(
    options: Options,
    plan: impl Into<Plan>,
    cancel: Cancel,
    progress: Progress,
) -> Result<Outcome, RunError> {
    let Plan { preflight, steps } = plan.into();
    let started_at = Utc::now();
    let node = node_info(&options);
    let output = options.output.clone().unwrap_or_else(|| {
        PathBuf::from(layout::default_bundle_name(
            node.name.as_deref().unwrap_or(&node.hostname),
            started_at,
        ))
    });
    let stale = crate::spool::remove_stale(match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    });
    let writer = BundleWriter::create(
        &output,
        WriterOptions {
            max_artifact_bytes: options.max_artifact_size,
            max_total_bytes: options.max_bundle_size,
            replace_existing: options.force,
            ..WriterOptions::default()
        },
    )?;
    let options_json = serde_json::to_value(&options).unwrap_or(serde_json::Value::Null);
    let ctx = Arc::new(RunContext::new(
        writer.clone(),
        options,
        cancel.clone(),
        progress.clone(),
    ));

    // The deadline is one more way to trip the token.
    let deadline_task = {
        let cancel = cancel.clone();
        let at = ctx.deadline;
        tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            cancel.stop(StopReason::Deadline);
        })
    };

    // The API-only cluster pass (no discovery step) reads nothing of the node.
    let node_local = steps.iter().any(|s| s.phase() == Phase::Discover);
    for check in preflight {
        check(&ctx);
    }
    for p in stale {
        ctx.note(format!(
            "removed the spool of an earlier run that was killed: {}",
            p.display()
        ));
    }

    let mut step_failures = Vec::new();
    for phase in [Phase::Discover, Phase::Capture, Phase::Derive] {
        let in_phase: Vec<_> = steps
            .iter()
            .filter(|s| s.phase() == phase)
            .cloned()
            .collect();
        step_failures.extend(run_phase(&ctx, in_phase).await);
        if phase == Phase::Capture && node_local {
            write_netns_index(&ctx);
        }
    }
    deadline_task.abort();

    let records = ctx.writer.records();
    let missing_core = netsnap_bundle::incomplete_core(&records);
    let outcome = match cancel.reason() {
        None if missing_core.is_empty() => CollectionOutcome::Complete,
        None => CollectionOutcome::Partial,
        Some(StopReason::Deadline) => CollectionOutcome::DeadlineExceeded,
        Some(StopReason::Interrupted) => CollectionOutcome::Interrupted,
    };
    let mut notes: Vec<String> = missing_core
        .iter()
        .map(|r| format!("incomplete: {}", core_advice(r, &ctx.options)))
        .collect();
    notes.extend(ctx.notes());
    let mut node = node;
    if node.name.is_none() {
        // A name found later (matched against the API's Node objects) still belongs in the manifest.
        node.name = ctx.found_node_name();
    }
    for (name, why) in &step_failures {
        notes.push(format!("step {name}: {why}"));
    }
    if let Some(r) = cancel.reason() {
        notes.push(format!("run stopped early: {}", r.as_str()));
    }
    let collection = CollectionInfo {
        started_at,
        finished_at: Utc::now(),
        outcome,
        options: options_json,
        notes,
        resource_usage: resource_usage(),
    };
    let tool = ToolInfo {
        name: "netsnap-collect".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    };
    drop(ctx);
    let (path, manifest) =
        tokio::task::spawn_blocking(move || writer.finish(tool, node, collection))
            .await
            .map_err(|_| WriteError::Poisoned)??;
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    Ok(Outcome {
        path,
        manifest,
        size,
        step_failures,
    })
}

fn fmt_secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if (s - s.round()).abs() < 1e-9 {
        format!("{}s", s.round() as u64)
    } else {
        format!("{s:.1}s")
    }
}

/// One line saying what is missing from a core artifact, why, and the option that
/// would get it, e.g. `iptables/iptables-save.txt (iptables-save -c) timed out after
/// 20s (no output for 20s): rerun with --timeout 10s`.
pub fn core_advice(rec: &ArtifactRecord, options: &Options) -> String {
    let what = match rec.command.as_ref().and_then(|c| c.first()) {
        Some(_) => format!(
            "{} ({})",
            rec.path,
            rec.command.as_deref().unwrap_or_default().join(" ")
        ),
        None => rec.path.clone(),
    };
    let status = match rec.status {
        ArtifactStatus::Failed => "failed",
        _ => "is incomplete",
    };
    if let Some(t) = &rec.truncated {
        use netsnap_bundle::TruncationReason as R;
        let fix = match t.reason {
            R::ArtifactCap => "rerun with --max-artifact-size 0 (no cap)",
            R::TotalCap => "rerun with --max-bundle-size 0 (no cap)",
            R::EntryCap => "rerun without --conntrack-max-entries",
        };
        return format!(
            "{what} was cut at {} bytes ({:?}): {fix}",
            t.kept_bytes, t.reason
        );
    }
    let error = rec.error.as_deref().unwrap_or("no reason recorded");
    let fix = if error.starts_with("timed out after") && rec.source == ArtifactSource::Command {
        format!(
            ": rerun with --timeout {}",
            fmt_secs(options.timeout.saturating_mul(2))
        )
    } else if error == StopReason::Deadline.as_str() {
        format!(
            ": rerun with --deadline {}",
            fmt_secs(options.deadline.saturating_mul(2))
        )
    } else {
        String::new()
    };
    format!("{what} {status}: {error}{fix}")
}

async fn run_phase(ctx: &Arc<RunContext>, steps: Vec<Arc<dyn Step>>) -> Vec<(String, String)> {
    let mut failures = Vec::new();
    if let Some(r) = ctx.cancel.reason() {
        let (run_anyway, skipped): (Vec<_>, Vec<_>) =
            steps.into_iter().partition(|s| s.runs_when_stopped());
        for s in skipped {
            ctx.progress
                .start(s.name())
                .finish("skipped", r.as_str(), Duration::ZERO);
            failures.push((s.name().to_string(), format!("not started: {}", r.as_str())));
        }
        for s in run_anyway {
            let bar = ctx.progress.start(s.name());
            let start = Instant::now();
            let res = tokio::time::timeout(GRACE, tokio::spawn(s.clone().run(ctx.clone()))).await;
            match res {
                Ok(Ok(Ok(t))) => bar.finish(t.status_word(), &t.detail(), start.elapsed()),
                _ => {
                    bar.finish("FAILED", "did not finish", start.elapsed());
                    failures.push((s.name().to_string(), "did not finish after stop".into()));
                }
            }
        }
        return failures;
    }
    let mut running = FuturesUnordered::new();
    let mut aborts: Vec<(&'static str, tokio::task::AbortHandle)> = Vec::new();
    for step in steps {
        let name = step.name();
        let bar = ctx.progress.start(name);
        let start = Instant::now();
        let handle = tokio::spawn(step.run(ctx.clone()));
        aborts.push((name, handle.abort_handle()));
        running.push(async move { (name, bar, start, handle.await) });
    }
    let mut stopped_at: Option<Instant> = None;
    let mut abandoned = false;
    loop {
        let grace_over = async {
            match stopped_at {
                Some(t) if !abandoned => tokio::time::sleep_until((t + GRACE).into()).await,
                _ => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            next = running.next() => {
                let Some((name, bar, start, res)) = next else { break };
                aborts.retain(|(n, _)| *n != name);
                let took = start.elapsed();
                match res {
                    Ok(Ok(tally)) => bar.finish(tally.status_word(), &tally.detail(), took),
                    Ok(Err(e)) => {
                        bar.finish("FAILED", &e.to_string(), took);
                        failures.push((name.to_string(), e.to_string()));
                    }
                    Err(join) => {
                        let why = if join.is_panic() {
                            "panicked".to_string()
                        } else {
                            format!(
                                "abandoned after the {}s grace period ({})",
                                GRACE.as_secs(),
                                ctx.cancel.reason().map(|r| r.as_str()).unwrap_or("stopped")
                            )
                        };
                        bar.finish("FAILED", &why, took);
                        failures.push((name.to_string(), why));
                    }
                }
            }
            r = ctx.cancel.stopped(), if stopped_at.is_none() => {
                tracing::info!(reason = r.as_str(), "stopping; steps get {}s to record what they have", GRACE.as_secs());
                stopped_at = Some(Instant::now());
            }
            _ = grace_over => {
                // Steps that ignore the token are aborted; an artifact they had
                // started streaming has no record (the note says so).
                abandoned = true;
                for (name, a) in &aborts {
                    tracing::warn!(step = name, "abandoning step");
                    a.abort();
                }
                if !aborts.is_empty() {
                    ctx.note(format!(
                        "steps abandoned after the grace period: {}",
                        aborts.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                    ));
                }
            }
        }
    }
    failures
}

fn write_netns_index(ctx: &RunContext) {
    let index = ctx.netns_index();
    let spec = ArtifactSpec::native(layout::NETNS_INDEX, ArtifactSource::File);
    if ctx.writer.has_path(layout::NETNS_INDEX) {
        return;
    }
    if let Err(e) = ctx.writer.add_json(spec, &index, Duration::ZERO) {
        ctx.note(format!("netns/index.json: {e}"));
    }
}

//! conntrack's [`Step`]s: the table (`conntrack -L` or `/proc/net/nf_conntrack`)
//! and the statistics, skipped when `nf_conntrack` is not loaded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use netsnap_bundle::{ArtifactSource, ArtifactSpec, ArtifactStatus, Completion, layout};

use crate::step::{BoxFuture, RunContext, Step, StepError, Tally};
use crate::sys::exec::Limits;
use crate::sys::fileio::copy_file;

use super::{TABLE_TIMEOUT_FACTOR, proc_table_spec, read_conntrack_sysctls, table_spec};

fn loaded(ctx: &RunContext) -> bool {
    ctx.host
        .path("/proc/sys/net/netfilter/nf_conntrack_max")
        .exists()
}

const NOT_LOADED: &str =
    "nf_conntrack is not loaded (no /proc/sys/net/netfilter/nf_conntrack_max); not queried";

fn unavailable(ctx: &RunContext, tally: &mut Tally, specs: Vec<ArtifactSpec>, why: &str) {
    for s in specs {
        tally.add_result(ctx.writer.record_missing(
            s,
            ArtifactStatus::Unavailable,
            why,
            Completion::default(),
        ));
    }
}

/// `conntrack -L -o extended`, or `/proc/net/nf_conntrack` when the program is missing.
#[derive(Debug, Clone, Copy)]
pub struct ConntrackTableStep;

impl Step for ConntrackTableStep {
    fn name(&self) -> &'static str {
        "conntrack-table"
    }

    fn run(self: Arc<Self>, ctx: Arc<RunContext>) -> BoxFuture<Result<Tally, StepError>> {
        Box::pin(async move {
            let mut tally = Tally::default();
            if !loaded(&ctx) {
                unavailable(
                    &ctx,
                    &mut tally,
                    vec![table_spec(), proc_table_spec()],
                    NOT_LOADED,
                );
                return Ok(tally);
            }
            let limits = Limits {
                max_lines: ctx.options.conntrack_max_entries,
                ..Limits::dump()
            };
            let ran = ctx
                .exec
                .to_artifact(
                    &ctx.writer,
                    table_spec(),
                    &["conntrack", "-L", "-o", "extended"],
                    limits,
                )
                .await?;
            tally.add(ran.record());
            let need_fallback = ran.is_missing() || ran.record().status == ArtifactStatus::Failed;
            if need_fallback {
                tally
                    .notes
                    .push("fell back to /proc/net/nf_conntrack".into());
                let rec = copy_file(
                    &ctx.writer,
                    proc_table_spec(),
                    &ctx.host,
                    "/proc/net/nf_conntrack",
                    ctx.options.conntrack_max_entries,
                    ctx.options.timeout * TABLE_TIMEOUT_FACTOR,
                    &ctx.cancel,
                )
                .await?;
                tally.add(&rec);
            } else {
                tally.add_result(ctx.writer.record_missing(
                    proc_table_spec(),
                    ArtifactStatus::Skipped,
                    "not needed: conntrack -L ran",
                    Completion::default(),
                ));
            }
            Ok(tally)
        })
    }
}

/// `conntrack -S`, `conntrack -C`, two samples of `/proc/net/stat/nf_conntrack`, sysctls.
#[derive(Debug, Clone, Copy)]
pub struct ConntrackStatsStep;

impl Step for ConntrackStatsStep {
    fn name(&self) -> &'static str {
        "conntrack-stats"
    }

    fn run(self: Arc<Self>, ctx: Arc<RunContext>) -> BoxFuture<Result<Tally, StepError>> {
        Box::pin(async move {
            let mut tally = Tally::default();
            let stat =
                |path: &str| ArtifactSpec::raw_file(path, layout::content::PROC_STAT_NF_CONNTRACK);
            let specs_s = ArtifactSpec::raw_command(
                layout::conntrack::STATS,
                layout::content::CONNTRACK_STATS,
                &[],
            );
            let specs_c = ArtifactSpec::raw_command(
                layout::conntrack::COUNT,
                layout::content::CONNTRACK_COUNT,
                &[],
            );
            let sys_spec = ArtifactSpec::native(layout::conntrack::SYSCTLS, ArtifactSource::File);
            if !loaded(&ctx) {
                unavailable(
                    &ctx,
                    &mut tally,
                    vec![
                        specs_s,
                        specs_c,
                        stat(layout::conntrack::PROC_STAT),
                        stat(layout::conntrack::PROC_STAT_2),
                        sys_spec,
                    ],
                    NOT_LOADED,
                );
                return Ok(tally);
            }
            let proc_stat = "/proc/net/stat/nf_conntrack";
            let t1 = Instant::now();
            let first = copy_file(
                &ctx.writer,
                stat(layout::conntrack::PROC_STAT).with_attribute("sample", "1"),
                &ctx.host,
                proc_stat,
                None,
                ctx.options.timeout,
                &ctx.cancel,
            )
            .await?;
            tally.add(&first);
            let (s, c) = tokio::join!(
                ctx.exec.to_artifact(
                    &ctx.writer,
                    specs_s,
                    &["conntrack", "-S"],
                    Limits::default()
                ),
                ctx.exec.to_artifact(
                    &ctx.writer,
                    specs_c,
                    &["conntrack", "-C"],
                    Limits::default()
                ),
            );
            tally.add(s?.record());
            tally.add(c?.record());

            let host = ctx.host.clone();
            // A few small files: bounded by the timeout only, so a stop that arrives
            // meanwhile does not lose them (an empty map would read as "all absent").
            let read = crate::sys::fileio::run_bounded_async(
                "conntrack sysctls",
                ctx.options.timeout,
                None,
                move || {
                    let root = crate::sys::fileio::RootDir::host(&host)?;
                    Ok(read_conntrack_sysctls(&root))
                },
            )
            .await;
            tally.add_result(match read {
                Ok(map) => ctx.writer.add_json(sys_spec, &map, Duration::ZERO),
                Err(e) => {
                    crate::sys::fileio::record_read_error(&ctx.writer, sys_spec, &e, Duration::ZERO)
                }
            });

            // Second sample, so rates (drops, insert_failed) can be told from old totals.
            let second = stat(layout::conntrack::PROC_STAT_2);
            let wait = ctx.options.sample_interval.saturating_sub(t1.elapsed());
            if !first.status.has_content() {
                tally.add_result(ctx.writer.record_missing(
                    second,
                    first.status,
                    "no first sample",
                    Completion::default(),
                ));
            } else if ctx.remaining() < wait + ctx.options.timeout {
                tally.add_result(ctx.writer.record_missing(
                    second,
                    ArtifactStatus::Skipped,
                    "no time left before the deadline for a second sample",
                    Completion::default(),
                ));
            } else {
                let stopped = tokio::select! {
                    _ = tokio::time::sleep(wait) => None,
                    r = ctx.cancel.stopped() => Some(r),
                };
                if let Some(r) = stopped {
                    tally.add_result(ctx.writer.record_missing(
                        second,
                        ArtifactStatus::Failed,
                        format!("second sample not taken: {}", r.as_str()),
                        Completion::default(),
                    ));
                    return Ok(tally);
                }
                let interval = t1.elapsed();
                let rec = copy_file(
                    &ctx.writer,
                    second
                        .with_attribute("sample", "2")
                        .with_attribute("interval_ms", interval.as_millis().to_string()),
                    &ctx.host,
                    proc_stat,
                    None,
                    ctx.options.timeout,
                    &ctx.cancel,
                )
                .await?;
                tally.add(&rec);
            }
            Ok(tally)
        })
    }
}

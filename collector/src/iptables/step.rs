//! The ruleset [`Step`]: `iptables-save` / `ip6tables-save` per backend, then the
//! nftables tables no `iptables-save` covered.

use std::collections::BTreeSet;
use std::sync::Arc;

use netsnap_bundle::{
    ArtifactRecord, ArtifactSpec, ArtifactStatus, Completion, SAME_AS_ATTRIBUTE, WriteError, layout,
};

use crate::step::{BoxFuture, RunContext, Step, StepError, Tally};
use crate::sys::exec::{Limits, Ran};

use super::{SaveScan, list_nft_tables, plain_backend, same_program};

/// One iptables dump to run, or to record as the same as another.
struct SaveRun {
    path: &'static str,
    program: &'static str,
    backend: Option<&'static str>,
    /// Set when this dump would repeat another: that dump's path and program.
    same_as: Option<(&'static str, &'static str)>,
    family: &'static str,
}

/// iptables/ip6tables of every distinct backend, `iptables -V`, `ipset list`, then
/// nftables tables that no iptables dump holds.
#[derive(Debug, Clone, Copy)]
pub struct IptablesStep;

impl Step for IptablesStep {
    fn name(&self) -> &'static str {
        "iptables"
    }

    fn run(self: Arc<Self>, ctx: Arc<RunContext>) -> BoxFuture<Result<Tally, StepError>> {
        Box::pin(async move {
            let exec = &ctx.exec;
            let (b4, b6) = tokio::join!(
                plain_backend(exec, "iptables", "iptables-save"),
                plain_backend(exec, "ip6tables", "ip6tables-save"),
            );
            let mut runs = Vec::new();
            for (family, plain_path, plain, versioned, plain_b, variants) in [
                (
                    "ip",
                    layout::iptables::SAVE,
                    "iptables-save",
                    "iptables",
                    b4,
                    [
                        (
                            layout::iptables::LEGACY_SAVE,
                            "iptables-legacy-save",
                            "legacy",
                        ),
                        (layout::iptables::NFT_SAVE, "iptables-nft-save", "nft"),
                    ],
                ),
                (
                    "ip6",
                    layout::iptables::SAVE6,
                    "ip6tables-save",
                    "ip6tables",
                    b6,
                    [
                        (
                            layout::iptables::LEGACY_SAVE6,
                            "ip6tables-legacy-save",
                            "legacy",
                        ),
                        (layout::iptables::NFT_SAVE6, "ip6tables-nft-save", "nft"),
                    ],
                ),
            ] {
                runs.push(SaveRun {
                    path: plain_path,
                    program: plain,
                    backend: plain_b,
                    same_as: None,
                    family,
                });
                for (path, program, backend) in variants {
                    let same = same_program(exec, plain, versioned, plain_b, program, backend);
                    runs.push(SaveRun {
                        path,
                        program,
                        backend: Some(backend),
                        same_as: same.then_some((plain_path, plain)),
                        family,
                    });
                }
            }
            let futs = runs.iter().map(|run| {
                let ctx = ctx.clone();
                async move {
                    let mut spec =
                        ArtifactSpec::raw_command(run.path, layout::content::IPTABLES_SAVE, &[]);
                    if let Some(b) = run.backend {
                        spec = spec.with_attribute("backend", b);
                    }
                    let mut scan = SaveScan::default();
                    if let Some((path, program)) = run.same_as {
                        spec.command = Some(vec![run.program.to_string(), "-c".into()]);
                        let rec = ctx.writer.record_missing(
                            spec.with_attribute(SAME_AS_ATTRIBUTE, path),
                            ArtifactStatus::Skipped,
                            format!("same as {path}: {program} is {} here", run.program),
                            Completion::default(),
                        )?;
                        return Ok::<_, WriteError>((rec, scan));
                    }
                    let ran = ctx
                        .exec
                        .to_artifact_seq(
                            &ctx.writer,
                            spec,
                            &[&[run.program, "-c"]],
                            Limits::dump(),
                            &mut |chunk| scan.feed(chunk),
                        )
                        .await?;
                    Ok((ran.record().clone(), scan))
                }
            });
            let version = ctx.exec.to_artifact(
                &ctx.writer,
                ArtifactSpec::raw_command(
                    layout::iptables::VERSION,
                    layout::content::VERSION_TEXT,
                    &[],
                ),
                &["iptables", "-V"],
                Limits::default(),
            );
            let ipset = ctx.exec.to_artifact(
                &ctx.writer,
                ArtifactSpec::raw_command(
                    layout::iptables::IPSET,
                    layout::content::IPSET_LIST,
                    &[],
                ),
                &["ipset", "list"],
                Limits::dump(),
            );
            let (saves, v, s) = tokio::join!(futures::future::join_all(futs), version, ipset);
            let mut tally = Tally::default();
            // Which iptables-nft tables a complete nft-backend dump holds, per family.
            let mut covered: Vec<(&str, String, &str)> = Vec::new();
            let mut done: Vec<(ArtifactRecord, SaveScan)> = Vec::new();
            for r in saves {
                done.push(r?);
            }
            for (run, (rec, scan)) in runs.iter().zip(&done) {
                tally.add(rec);
                if run.backend == Some("nft")
                    && run.same_as.is_none()
                    && rec.status == ArtifactStatus::Ok
                {
                    for t in scan.covered() {
                        if !covered.iter().any(|(f, n, _)| *f == run.family && *n == t) {
                            covered.push((run.family, t, run.path));
                        }
                    }
                }
            }
            tally.add(v?.record());
            tally.add(s?.record());
            let nft = nft_tables(&ctx, &covered).await?;
            tally.add(nft.record());
            Ok(tally)
        })
    }
}

/// Writes `nft/ruleset.txt`: `nft list table` of every table no iptables-nft dump
/// in `covered` (`(family, table, dump path)`) holds; the whole `nft list ruleset`
/// when the tables cannot be listed over netlink.
async fn nft_tables(ctx: &RunContext, covered: &[(&str, String, &str)]) -> Result<Ran, WriteError> {
    let spec = ArtifactSpec::raw_command(layout::nft::RULESET, layout::content::NFT_RULESET, &[]);
    if ctx.exec.resolve("nft").is_none() {
        return ctx
            .exec
            .to_artifact(
                &ctx.writer,
                spec,
                &["nft", "list", "ruleset"],
                Limits::dump(),
            )
            .await;
    }
    let listed = tokio::task::spawn_blocking(list_nft_tables)
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
    let tables = match listed {
        Ok(t) => t,
        Err(e) => {
            tracing::info!(
                "listing nf_tables tables over netlink failed ({e}); running nft list ruleset"
            );
            return ctx
                .exec
                .to_artifact(
                    &ctx.writer,
                    spec.with_attribute("table_listing_error", e.to_string()),
                    &["nft", "list", "ruleset"],
                    Limits::dump(),
                )
                .await;
        }
    };
    let (skip, list): (Vec<_>, Vec<_>) = tables
        .into_iter()
        .partition(|(f, n)| covered.iter().any(|(cf, cn, _)| cf == f && cn == n));
    let mut spec = spec.with_attribute(
        "tables",
        list.iter()
            .map(|(f, n)| format!("{f} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    if !skip.is_empty() {
        spec = spec
            .with_attribute(
                "iptables_nft_tables",
                skip.iter()
                    .map(|(f, n)| format!("{f} {n}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            )
            .with_attribute(
                "iptables_nft_dumps",
                covered
                    .iter()
                    .map(|(_, _, p)| *p)
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect::<Vec<_>>()
                    .join(", "),
            );
    }
    if list.is_empty() {
        let rec = ctx.writer.add_bytes(spec, &[], Completion::default())?;
        return Ok(Ran::Ran(
            rec,
            crate::sys::exec::Report {
                end: crate::sys::exec::End::Exited,
                exit_status: Some(0),
                signal: None,
                duration: std::time::Duration::ZERO,
                stderr: Vec::new(),
            },
        ));
    }
    let argvs: Vec<Vec<&str>> = list
        .iter()
        .map(|(f, n)| vec!["nft", "list", "table", f.as_str(), n.as_str()])
        .collect();
    let refs: Vec<&[&str]> = argvs.iter().map(Vec::as_slice).collect();
    ctx.exec
        .to_artifact_seq(&ctx.writer, spec, &refs, Limits::dump(), &mut |_| {})
        .await
}

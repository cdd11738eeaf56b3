//! The IPVS [`Step`]: `ipvsadm` tables and the `/proc/net/ip_vs*` copies, skipped
//! when the kernel has no IPVS.

use std::sync::Arc;

use netsnap_bundle::{ArtifactSpec, ArtifactStatus, Completion, layout};

use crate::step::{BoxFuture, RunContext, Step, StepError, Tally};
use crate::sys::exec::Limits;
use crate::sys::fileio::copy_file;

use super::NO_IPVS;

/// All IPVS artifacts.
#[derive(Debug, Clone, Copy)]
pub struct IpvsStep;

impl Step for IpvsStep {
    fn name(&self) -> &'static str {
        "ipvs"
    }

    fn run(self: Arc<Self>, ctx: Arc<RunContext>) -> BoxFuture<Result<Tally, StepError>> {
        Box::pin(async move {
            use layout::content as c;
            use layout::ipvs as p;
            let mut tally = Tally::default();
            let cmds: [(&str, &str, &[&str]); 4] = [
                (p::LIST, c::IPVSADM_LIST, &["ipvsadm", "-Ln"]),
                (p::STATS, c::IPVSADM_LIST, &["ipvsadm", "-Ln", "--stats"]),
                (p::RATE, c::IPVSADM_LIST, &["ipvsadm", "-Ln", "--rate"]),
                (p::CONNECTIONS, c::IPVSADM_CONNECTIONS, &["ipvsadm", "-Lnc"]),
            ];
            let files = [
                (p::PROC, c::PROC_IP_VS, "/proc/net/ip_vs", None),
                (
                    p::PROC_CONN,
                    c::PROC_IP_VS_CONN,
                    "/proc/net/ip_vs_conn",
                    Some(ctx.options.ipvs_conn_max_lines),
                ),
            ];
            if !ctx.host.path("/proc/net/ip_vs").exists() {
                let specs = cmds
                    .iter()
                    .map(|(path, content, argv)| ArtifactSpec::raw_command(*path, content, argv))
                    .chain(
                        files
                            .iter()
                            .map(|(path, content, _, _)| ArtifactSpec::raw_file(*path, content)),
                    );
                for s in specs {
                    tally.add_result(ctx.writer.record_missing(
                        s,
                        ArtifactStatus::Unavailable,
                        NO_IPVS,
                        Completion::default(),
                    ));
                }
                return Ok(tally);
            }
            let runs = cmds.iter().map(|(path, content, argv)| {
                let ctx = ctx.clone();
                let limits = Limits {
                    max_lines: (*path == p::CONNECTIONS).then_some(ctx.options.ipvs_conn_max_lines),
                    ..Limits::default()
                };
                async move {
                    ctx.exec
                        .to_artifact(
                            &ctx.writer,
                            ArtifactSpec::raw_command(*path, content, &[]),
                            argv,
                            limits,
                        )
                        .await
                }
            });
            for r in futures::future::join_all(runs).await {
                tally.add(r?.record());
            }
            for (path, content, src, cap) in files {
                let rec = copy_file(
                    &ctx.writer,
                    ArtifactSpec::raw_file(path, content),
                    &ctx.host,
                    src,
                    cap,
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

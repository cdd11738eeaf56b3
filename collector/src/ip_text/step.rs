//! The raw-text [`Step`]: `ip -d addr show` and `ip route show table all` per
//! namespace (through `nsenter --net=<file>`), for at most `--max-ip-text-netns`
//! non-host namespaces; `netlink.json` holds the same facts natively.

use std::sync::Arc;

use futures::StreamExt;
use netsnap_bundle::{ArtifactSpec, ArtifactStatus, Completion, layout};

use crate::step::{BoxFuture, RunContext, Step, StepError, Tally};
use crate::sys::exec::Ran;

/// Raw `ip -d addr show` and `ip route show table all` per namespace, for humans.
///
/// Host: run directly. Named namespaces: `ip -n NAME`. Others: `nsenter
/// --net=/proc/<pid>/ns/net ip …` when nsenter exists, else recorded
/// unavailable (the native `netlink.json` has the same facts).
#[derive(Debug, Clone, Copy)]
pub struct IpTextStep;

impl Step for IpTextStep {
    fn name(&self) -> &'static str {
        "netns-ip-text"
    }

    fn run(self: Arc<Self>, ctx: Arc<RunContext>) -> BoxFuture<Result<Tally, StepError>> {
        Box::pin(async move {
            let list = ctx.netns();
            let have_ip = ctx.exec.resolve("ip").is_some();
            let have_nsenter = ctx.exec.resolve("nsenter").is_some();
            let mut jobs = Vec::new();
            let mut non_host = 0usize;
            let cap = ctx.options.max_ip_text_netns;
            for ns in list.iter() {
                if !ns.info.is_host {
                    non_host += 1;
                }
                let over_cap = !ns.info.is_host && non_host > cap;
                for (file, content, args) in [
                    (
                        layout::netns::IP_ADDR,
                        layout::content::IP_ADDR,
                        &["-d", "addr", "show"][..],
                    ),
                    (
                        layout::netns::IP_ROUTE,
                        layout::content::IP_ROUTE,
                        &["route", "show", "table", "all"][..],
                    ),
                ] {
                    let spec =
                        ArtifactSpec::raw_command(layout::netns_path(ns.id(), file), content, &[])
                            .in_netns(ns.id());
                    let mut argv: Vec<String> = Vec::new();
                    if over_cap {
                        jobs.push((spec, Err((ArtifactStatus::Skipped, format!(
                            "raw ip text is limited to {cap} namespaces (--max-ip-text-netns); netlink.json has the same facts"
                        )))));
                        continue;
                    }
                    // nsenter with the namespace file works for named and unnamed
                    // namespaces alike and under --host-root; `ip -n NAME` needs
                    // /run/netns of our own mount namespace.
                    if ns.info.is_host {
                        argv.push("ip".into());
                    } else if let (true, Some(p)) = (have_nsenter, ns.paths.first()) {
                        argv.extend([
                            "nsenter".into(),
                            format!("--net={}", p.display()),
                            "ip".into(),
                        ]);
                    } else if let (Some(name), None) = (ns.info.names.first(), ctx.host.root()) {
                        argv.extend(["ip".into(), "-n".into(), name.clone()]);
                    } else {
                        jobs.push((
                            spec,
                            Err((
                                ArtifactStatus::Unavailable,
                                "nsenter not installed and the namespace has no usable name (see netlink.json)"
                                    .to_string(),
                            )),
                        ));
                        continue;
                    }
                    argv.extend(args.iter().map(|s| s.to_string()));
                    jobs.push((spec, Ok(argv)));
                }
            }
            let results: Vec<Result<crate::sys::exec::Ran, netsnap_bundle::WriteError>> =
                futures::stream::iter(jobs)
                    .map(|(spec, argv)| {
                        let ctx = ctx.clone();
                        async move {
                            match argv {
                                Ok(argv) if have_ip => {
                                    let refs: Vec<&str> = argv.iter().map(|s| s.as_str()).collect();
                                    ctx.exec
                                        .to_artifact(&ctx.writer, spec, &refs, Default::default())
                                        .await
                                }
                                Ok(_) => ctx
                                    .writer
                                    .record_missing(
                                        spec,
                                        ArtifactStatus::Unavailable,
                                        "program not installed: ip",
                                        Completion::default(),
                                    )
                                    .map(Ran::Missing),
                                Err((status, why)) => ctx
                                    .writer
                                    .record_missing(spec, status, why, Completion::default())
                                    .map(Ran::Missing),
                            }
                        }
                    })
                    .buffer_unordered(ctx.options.command_concurrency.max(1))
                    .collect()
                    .await;
            let mut tally = Tally::default();
            for r in results {
                tally.add_result(r.map(|ran| ran.record().clone()));
            }
            Ok(tally)
        })
    }
}

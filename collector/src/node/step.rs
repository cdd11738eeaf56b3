//! The node's [`Step`]s: `node` (uname, `ip rule`/`ip neigh`, bridge ports),
//! `node-sysctls` (runs even after a stop), `tool-versions` and `kernel-log`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use netsnap_bundle::native::ToolVersions;
use netsnap_bundle::{ArtifactSource, ArtifactSpec, ArtifactStatus, Completion, layout};

use crate::step::{BoxFuture, RunContext, Step, StepError, Tally};
use crate::sys::exec::{Captured, Limits};
use crate::sys::fileio::{RootDir, record_read_error, run_bounded_async};

use super::{KERNEL_LOG_TAIL, LogFilter, bridge_ports, node_sysctls, read_kmsg};

/// The node sysctls (`node/sysctls.json`), in phase `Derive`: `/proc/sys/net`
/// dentries are per namespace, so reading them while namespace threads read
/// theirs would thrash the dentry cache; afterwards it costs milliseconds. It
/// runs even when the run was stopped (no commands, bounded work).
#[derive(Debug, Clone, Copy)]
pub struct NodeSysctlsStep;

impl Step for NodeSysctlsStep {
    fn name(&self) -> &'static str {
        "node-sysctls"
    }

    fn phase(&self) -> crate::step::Phase {
        crate::step::Phase::Derive
    }

    fn runs_when_stopped(&self) -> bool {
        true
    }

    fn run(self: Arc<Self>, ctx: Arc<RunContext>) -> BoxFuture<Result<Tally, StepError>> {
        Box::pin(async move {
            let mut tally = Tally::default();
            let start = Instant::now();
            let host = ctx.host.clone();
            // Its own thread, abandoned at the timeout: a hung read never holds the run.
            // Not abandoned on a stop: this step runs after one, on purpose.
            let (map, absent) =
                run_bounded_async("node sysctls", ctx.options.timeout, None, move || {
                    Ok(node_sysctls(&RootDir::host(&host)?))
                })
                .await
                .map_err(|e| StepError::Other(e.to_string()))?;
            let mut spec = ArtifactSpec::native(layout::node::SYSCTLS, ArtifactSource::File);
            if !absent.is_empty() {
                spec = spec.with_attribute("absent", absent.join(","));
            }
            tally.add_result(ctx.writer.add_json(spec, &map, start.elapsed()));
            Ok(tally)
        })
    }
}

/// uname, `ip rule`, `ip -6 rule`, `ip neigh`, bridge ports.
#[derive(Debug, Clone, Copy)]
pub struct NodeStep;

impl Step for NodeStep {
    fn name(&self) -> &'static str {
        "node"
    }

    fn run(self: Arc<Self>, ctx: Arc<RunContext>) -> BoxFuture<Result<Tally, StepError>> {
        Box::pin(async move {
            let mut tally = Tally::default();
            let w = &ctx.writer;
            let host = ctx.host.clone();
            let spec = ArtifactSpec::native(layout::node::BRIDGE_PORTS, ArtifactSource::File);
            match run_bounded_async(
                "/sys/class/net",
                ctx.options.timeout,
                &ctx.cancel,
                move || Ok(bridge_ports(&RootDir::host(&host)?)),
            )
            .await
            {
                Ok(ports) => tally.add_result(w.add_json(spec, &ports, Duration::ZERO)),
                Err(e) => tally.add_result(record_read_error(w, spec, &e, Duration::ZERO)),
            }

            let c = layout::content::IP_RULE;
            let runs: [(&str, &str, &[&str]); 3] = [
                (layout::node::IP_RULE, c, &["ip", "rule", "show"]),
                (layout::node::IP6_RULE, c, &["ip", "-6", "rule", "show"]),
                (
                    layout::node::IP_NEIGH,
                    layout::content::IP_NEIGH,
                    &["ip", "neigh", "show"],
                ),
            ];
            let futs = runs.iter().map(|(path, content, argv)| {
                ctx.exec.to_artifact(
                    w,
                    ArtifactSpec::raw_command(*path, content, &[]),
                    argv,
                    Limits::default(),
                )
            });
            for r in futures::future::join_all(futs).await {
                tally.add(r?.record());
            }
            let uname_spec =
                ArtifactSpec::raw_command(layout::node::UNAME, layout::content::FILE, &[]);
            if ctx.exec.resolve("uname").is_some() {
                let r = ctx
                    .exec
                    .to_artifact(w, uname_spec, &["uname", "-a"], Limits::default())
                    .await?;
                tally.add(r.record());
            } else {
                // Same fields `uname -a` prints, from uname(2).
                let text = nix::sys::utsname::uname()
                    .map(|u| {
                        format!(
                            "{} {} {} {} {}\n",
                            u.sysname().to_string_lossy(),
                            u.nodename().to_string_lossy(),
                            u.release().to_string_lossy(),
                            u.version().to_string_lossy(),
                            u.machine().to_string_lossy()
                        )
                    })
                    .unwrap_or_default();
                let mut spec = uname_spec.with_attribute("source", "uname(2)");
                spec.command = None;
                tally.add_result(w.add_bytes(spec, text.as_bytes(), Completion::default()));
            }
            Ok(tally)
        })
    }
}

/// Tool versions, first line each (`node/tool-versions.json`).
#[derive(Debug, Clone, Copy)]
pub struct ToolVersionsStep;

impl Step for ToolVersionsStep {
    fn name(&self) -> &'static str {
        "tool-versions"
    }

    fn run(self: Arc<Self>, ctx: Arc<RunContext>) -> BoxFuture<Result<Tally, StepError>> {
        Box::pin(async move {
            let start = Instant::now();
            let ipvs = ctx.host.path("/proc/net/ip_vs").exists();
            let tools: [(&str, &[&str]); 9] = [
                ("iptables", &["iptables", "-V"]),
                ("ip6tables", &["ip6tables", "-V"]),
                ("iptables-legacy", &["iptables-legacy", "-V"]),
                ("iptables-nft", &["iptables-nft", "-V"]),
                ("nft", &["nft", "-v"]),
                ("ipvsadm", &["ipvsadm", "--version"]),
                ("conntrack", &["conntrack", "--version"]),
                ("ip", &["ip", "-V"]),
                ("ipset", &["ipset", "version"]),
            ];
            let futs = tools.iter().map(|(name, argv)| {
                let ctx = ctx.clone();
                async move {
                    // ipvsadm loads ip_vs on start when IPVS is absent: do not run it then.
                    if *name == "ipvsadm" && !ipvs {
                        let v = ctx
                            .exec
                            .resolve("ipvsadm")
                            .map(|_| "installed (not run: kernel has no IPVS)".to_string());
                        return (name.to_string(), v);
                    }
                    let v = match ctx.exec.capture(argv, 4096).await {
                        Captured::Missing => None,
                        Captured::Output(out, report) => {
                            let text = if out.is_empty() {
                                report.stderr.clone()
                            } else {
                                out
                            };
                            let line = String::from_utf8_lossy(&text)
                                .lines()
                                .find(|l| !l.trim().is_empty())
                                .unwrap_or("")
                                .trim()
                                .to_string();
                            Some(match report.error() {
                                Some(e) if line.is_empty() => format!("(no version: {e})"),
                                _ => line,
                            })
                        }
                    };
                    (name.to_string(), v)
                }
            });
            let versions = ToolVersions {
                tools: futures::future::join_all(futs).await.into_iter().collect(),
            };
            let mut tally = Tally::default();
            tally.add_result(ctx.writer.add_json(
                ArtifactSpec::native(layout::node::TOOL_VERSIONS, ArtifactSource::Command),
                &versions,
                start.elapsed(),
            ));
            Ok(tally)
        })
    }
}

/// Kernel log: `/dev/kmsg` (non-blocking), else `dmesg`.
#[derive(Debug, Clone, Copy)]
pub struct KernelLogStep;

impl Step for KernelLogStep {
    fn name(&self) -> &'static str {
        "kernel-log"
    }

    fn run(self: Arc<Self>, ctx: Arc<RunContext>) -> BoxFuture<Result<Tally, StepError>> {
        Box::pin(async move {
            let start = Instant::now();
            let mut tally = Tally::default();
            // Its own thread, abandoned at the timeout (then `dmesg` is tried).
            let kmsg = run_bounded_async("/dev/kmsg", ctx.options.timeout, &ctx.cancel, || {
                let mut f = LogFilter::new(KERNEL_LOG_TAIL);
                read_kmsg(Path::new("/dev/kmsg"), &mut f)
                    .map(|_| f)
                    .map_err(|e| crate::sys::fileio::ReadError::Io {
                        path: "/dev/kmsg".into(),
                        err: e.to_string(),
                    })
            })
            .await;
            let spec =
                ArtifactSpec::raw_file(layout::node::KERNEL_LOG, layout::content::KERNEL_LOG);
            let (filter, spec) = match kmsg {
                Ok(f) => (f, spec.with_attribute("source", "/dev/kmsg")),
                Err(kerr) => {
                    let mut spec = ArtifactSpec::raw_command(
                        layout::node::KERNEL_LOG,
                        layout::content::KERNEL_LOG,
                        &["dmesg"],
                    )
                    .with_attribute("source", "dmesg")
                    .with_attribute("kmsg_error", kerr.to_string());
                    // Streamed line by line through the filter: the ring buffer can be large.
                    let mut f = LogFilter::new(KERNEL_LOG_TAIL);
                    let mut pending: Vec<u8> = Vec::new();
                    let report = ctx
                        .exec
                        .stream(&["dmesg"], |chunk| {
                            pending.extend_from_slice(chunk);
                            while let Some(pos) = memchr::memchr(b'\n', &pending) {
                                let line: Vec<u8> = pending.drain(..=pos).collect();
                                f.push(String::from_utf8_lossy(&line[..pos]).into_owned());
                            }
                        })
                        .await;
                    if !pending.is_empty() {
                        f.push(String::from_utf8_lossy(&pending).into_owned());
                    }
                    match report {
                        Some(r) if r.error().is_none() => {
                            spec.source = ArtifactSource::Command;
                            (f, spec)
                        }
                        other => {
                            let why = match other {
                                None => "dmesg not installed".to_string(),
                                Some(r) => r.error().unwrap_or_default(),
                            };
                            tally.add_result(ctx.writer.record_missing(
                                spec,
                                ArtifactStatus::Failed,
                                format!("/dev/kmsg: {kerr}; dmesg: {why}"),
                                Completion::default(),
                            ));
                            return Ok(tally);
                        }
                    }
                }
            };
            let spec = spec
                .with_attribute("total_lines", filter.total.to_string())
                .with_attribute(
                    "kept",
                    format!("last {KERNEL_LOG_TAIL} lines and every networking line before them"),
                );
            let text = filter.render();
            tally.add_result(ctx.writer.add_bytes(
                spec,
                text.as_bytes(),
                Completion {
                    duration: start.elapsed(),
                    ..Completion::default()
                },
            ));
            Ok(tally)
        })
    }
}

//! The netlink [`Step`]: every namespace read through the [`super::pool`] (links,
//! addresses, routes, neighbours, net sysctls), a second sample of the link
//! counters after `--sample-interval`, the host's nsid for each namespace, and
//! the veth pairs matched by namespace identity.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use netsnap_bundle::native::LinkStatsSample;
use netsnap_bundle::{ArtifactSource, ArtifactSpec, ArtifactStatus, Completion, layout};

use crate::step::{BoxFuture, NetnsExtra, RunContext, Step, StepError, Tally};

use super::pool::{Job, JobResult, Pool, Target};
use netsnap_bundle::derive::veth::veth_pairs;

/// Native per-namespace capture: netlink dumps, sysctls, host nsids, veth
/// pairs, and the second sample of link counters.
#[derive(Debug, Clone, Copy)]
pub struct NetlinkStep;

impl Step for NetlinkStep {
    fn name(&self) -> &'static str {
        "netlink"
    }

    fn run(self: Arc<Self>, ctx: Arc<RunContext>) -> BoxFuture<Result<Tally, StepError>> {
        Box::pin(async move { run_netlink(ctx).await })
    }
}

async fn run_netlink(ctx: Arc<RunContext>) -> Result<Tally, StepError> {
    let mut tally = Tally::default();
    let targets: Vec<Target> = ctx.netns().iter().map(Target::from).collect();
    let timeout = ctx.options.timeout;
    let workers = ctx.options.netns_workers;
    let w = &ctx.writer;

    // Pass 1: full dumps.
    let mut pool = Pool::start(
        targets.iter().cloned().map(Job::Full).collect(),
        workers,
        timeout,
    )
    .map_err(StepError::Other)?;
    let mut first_at: BTreeMap<String, Instant> = BTreeMap::new();
    let mut done = 0;
    while done < targets.len() {
        let res = tokio::select! {
            r = pool.rx.recv() => r,
            _ = ctx.cancel.stopped() => None,
        };
        let Some(JobResult::Full(cap)) = res else {
            break;
        };
        done += 1;
        let spec = ArtifactSpec::native(
            layout::netns_path(&cap.id, layout::netns::NETLINK),
            ArtifactSource::Netlink,
        )
        .in_netns(&cap.id);
        match cap.snapshot {
            Ok(snap) => {
                tally.add_result(w.add_json(spec, &snap, cap.took));
                first_at.insert(cap.id.clone(), cap.at);
                ctx.put_snapshot(snap);
            }
            Err(e) => {
                ctx.set_netns_extra(
                    &cap.id,
                    NetnsExtra {
                        host_nsid: None,
                        error: Some(e.clone()),
                    },
                );
                tally.add_result(w.record_missing(
                    spec,
                    ArtifactStatus::Failed,
                    e,
                    Completion {
                        duration: cap.took,
                        ..Completion::default()
                    },
                ));
            }
        }
        let spec = ArtifactSpec::native(
            layout::netns_path(&cap.id, layout::netns::SYSCTLS),
            ArtifactSource::File,
        )
        .in_netns(&cap.id);
        match cap.sysctls {
            Ok(map) => tally.add_result(w.add_json(spec, &map, Duration::ZERO)),
            Err(e) => tally.add_result(w.record_missing(
                spec,
                ArtifactStatus::Failed,
                e,
                Completion::default(),
            )),
        }
    }
    if done < targets.len() {
        let reason = ctx
            .cancel
            .reason()
            .map(|r| r.as_str())
            .unwrap_or("namespace threads ended early");
        let _ = pool.drain_pending();
        let captured = ctx.snapshots();
        for t in &targets {
            for file in [layout::netns::NETLINK, layout::netns::SYSCTLS] {
                let path = layout::netns_path(&t.id, file);
                if captured.contains_key(&t.id) || w.has_path(&path) {
                    continue;
                }
                let spec = ArtifactSpec::native(path, ArtifactSource::Netlink).in_netns(&t.id);
                tally.add_result(w.record_missing(
                    spec,
                    ArtifactStatus::Failed,
                    format!("not read: {reason}"),
                    Completion::default(),
                ));
            }
            // No first dump, so no second sample either: say so (the pass below
            // only records namespaces that have a first sample).
            let path = layout::netns_path(&t.id, layout::netns::LINK_STATS_2);
            if !captured.contains_key(&t.id) && !w.has_path(&path) {
                let spec = ArtifactSpec::native(path, ArtifactSource::Netlink).in_netns(&t.id);
                tally.add_result(w.record_missing(
                    spec,
                    ArtifactStatus::Skipped,
                    format!("no first sample: not read: {reason}"),
                    Completion::default(),
                ));
            }
        }
    }
    drop(pool);

    // Host nsids, asked after the dumps (dumping veths makes the kernel assign them).
    let snaps = ctx.snapshots();
    let non_host: Vec<Target> = targets
        .iter()
        .filter(|t| t.id != layout::HOST_NETNS && snaps.contains_key(&t.id))
        .cloned()
        .collect();
    let mut host_ids = BTreeMap::new();
    if !non_host.is_empty() && !ctx.cancel.is_stopped() {
        let mut pool =
            Pool::start(vec![Job::HostNsids(non_host)], 1, timeout).map_err(StepError::Other)?;
        let res = tokio::select! {
            r = pool.rx.recv() => r,
            _ = ctx.cancel.stopped() => None,
        };
        if let Some(JobResult::HostNsids(ids, errs)) = res {
            for (id, e) in errs {
                tracing::debug!(netns = %id, "host nsid: {e}");
            }
            host_ids = ids;
        }
    }
    for t in &targets {
        if let Some(nsid) = host_ids.get(&t.id) {
            ctx.set_netns_extra(
                &t.id,
                NetnsExtra {
                    host_nsid: Some(*nsid),
                    error: None,
                },
            );
        }
    }
    let (pairs, unresolved) = veth_pairs(&snaps, &host_ids);
    let spec = ArtifactSpec::native(layout::correlation::VETH_PAIRS, ArtifactSource::Derived)
        .with_attribute("unresolved_veths", unresolved.to_string());
    tally.add_result(w.add_json(spec, &pairs, Duration::ZERO));
    tally.notes.push(format!(
        "{} namespaces, {} veth pairs",
        snaps.len(),
        pairs.len()
    ));

    // Pass 2: link counters again, `--sample-interval` after each first sample.
    let interval = ctx.options.sample_interval;
    let earliest = first_at.values().min().copied();
    let sampled: Vec<Target> = targets
        .iter()
        .filter(|t| first_at.contains_key(&t.id))
        .cloned()
        .collect();
    if let Some(earliest) = earliest {
        let wait_until = earliest + interval;
        // The second pass must fit before the deadline: the wait plus one timeout.
        let enough_time =
            ctx.remaining() >= wait_until.saturating_duration_since(Instant::now()) + timeout;
        if !enough_time || ctx.cancel.is_stopped() {
            for t in &sampled {
                let spec = ArtifactSpec::native(
                    layout::netns_path(&t.id, layout::netns::LINK_STATS_2),
                    ArtifactSource::Netlink,
                )
                .in_netns(&t.id);
                tally.add_result(w.record_missing(
                    spec,
                    ArtifactStatus::Skipped,
                    "no time left before the deadline for a second sample",
                    Completion::default(),
                ));
            }
            return Ok(tally);
        }
        tokio::select! {
            _ = tokio::time::sleep_until(wait_until.into()) => {}
            _ = ctx.cancel.stopped() => {}
        }
        let mut pool = Pool::start(
            sampled.iter().cloned().map(Job::Stats).collect(),
            workers,
            timeout,
        )
        .map_err(StepError::Other)?;
        let mut got = 0;
        while got < sampled.len() {
            let res = tokio::select! {
                r = pool.rx.recv() => r,
                _ = ctx.cancel.stopped() => None,
            };
            let Some(JobResult::Stats(s)) = res else {
                break;
            };
            got += 1;
            let spec = ArtifactSpec::native(
                layout::netns_path(&s.id, layout::netns::LINK_STATS_2),
                ArtifactSource::Netlink,
            )
            .in_netns(&s.id);
            let t1 = first_at.get(&s.id).copied().unwrap_or(earliest);
            match s.links {
                Ok(links) => {
                    let sample = LinkStatsSample {
                        interval_ms: s.at.saturating_duration_since(t1).as_millis() as u64,
                        links,
                    };
                    tally.add_result(w.add_json(spec, &sample, Duration::ZERO));
                }
                Err(e) => tally.add_result(w.record_missing(
                    spec,
                    ArtifactStatus::Failed,
                    e,
                    Completion::default(),
                )),
            }
        }
        let _ = pool.drain_pending();
        for t in &sampled {
            let path = layout::netns_path(&t.id, layout::netns::LINK_STATS_2);
            if !w.has_path(&path) {
                let spec = ArtifactSpec::native(path, ArtifactSource::Netlink).in_netns(&t.id);
                let why = ctx
                    .cancel
                    .reason()
                    .map(|r| r.as_str())
                    .unwrap_or("not sampled");
                tally.add_result(w.record_missing(
                    spec,
                    ArtifactStatus::Failed,
                    format!("second sample not taken: {why}"),
                    Completion::default(),
                ));
            }
        }
    }
    Ok(tally)
}

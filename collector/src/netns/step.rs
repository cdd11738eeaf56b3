//! The discovery [`Step`] (phase `Discover`): finds the namespaces every other
//! step reads.

use std::path::Path;
use std::sync::Arc;

pub use crate::step::Netns;
use crate::step::{BoxFuture, Phase, RunContext, Step, StepError, Tally};

use super::discover;

/// Phase `Discover`: fills [`RunContext::netns`].
#[derive(Debug, Clone, Copy)]
pub struct DiscoverStep;

impl Step for DiscoverStep {
    fn name(&self) -> &'static str {
        "netns-discover"
    }

    fn phase(&self) -> Phase {
        Phase::Discover
    }

    fn run(self: Arc<Self>, ctx: Arc<RunContext>) -> BoxFuture<Result<Tally, StepError>> {
        Box::pin(async move {
            let host = ctx.host.clone();
            let max = ctx.options.max_processes_per_netns;
            let list = tokio::task::spawn_blocking(move || {
                discover(&host, Path::new("/proc/self/ns/net"), max)
            })
            .await
            .map_err(|e| StepError::Other(format!("discovery thread failed: {e}")))?;
            let mut tally = Tally::default();
            let pods = list.iter().filter(|n| n.info.pod_uid.is_some()).count();
            tally
                .notes
                .push(format!("{} namespaces, {pods} with a pod UID", list.len()));
            tally.ok = 1;
            ctx.set_netns(list);
            Ok(tally)
        })
    }
}

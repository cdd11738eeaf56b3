//! iptables (every backend present), nftables and ipset.
//!
//! `iptables-save -c` is run for whatever `iptables-save` points to and again
//! through `iptables-legacy-save` / `iptables-nft-save` when those exist, so a
//! node with rules split across backends (a classic kube-proxy failure) shows
//! both. Each record's `backend` attribute says `legacy` or `nft`: for the
//! explicit variants from the name, for the plain one from `iptables -V`
//! (`iptables v1.8.10 (nf_tables)`) or, without it, from the binary the name
//! resolves to (`xtables-nft-multi`).

use std::sync::Arc;

use netsnap_bundle::{ArtifactSpec, layout};

use crate::exec::{Captured, Exec, Limits};
use crate::runner::{BoxFuture, RunContext, Step, StepError, Tally};

/// Backend named in a `-V` line or a binary name: `nft`, `legacy`, or None.
pub fn backend_of(text: &str) -> Option<&'static str> {
    if text.contains("nf_tables") || text.contains("-nft") {
        Some("nft")
    } else if text.contains("legacy") {
        Some("legacy")
    } else {
        None
    }
}

async fn plain_backend(exec: &Exec, versioned: &str, save: &str) -> Option<&'static str> {
    if let Captured::Output(out, _) = exec.capture(&[versioned, "-V"], 4096).await
        && let Some(b) = backend_of(&String::from_utf8_lossy(&out))
    {
        return Some(b);
    }
    let resolved = exec.resolve(save)?;
    let real = std::fs::canonicalize(&resolved).unwrap_or(resolved);
    backend_of(&real.file_name()?.to_string_lossy())
}

/// iptables/ip6tables of every backend, `iptables -V` and `ipset list`.
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
            let runs: Vec<(&str, &str, Option<&str>)> = vec![
                (layout::iptables::SAVE, "iptables-save", b4),
                (layout::iptables::SAVE6, "ip6tables-save", b6),
                (
                    layout::iptables::LEGACY_SAVE,
                    "iptables-legacy-save",
                    Some("legacy"),
                ),
                (
                    layout::iptables::LEGACY_SAVE6,
                    "ip6tables-legacy-save",
                    Some("legacy"),
                ),
                (layout::iptables::NFT_SAVE, "iptables-nft-save", Some("nft")),
                (
                    layout::iptables::NFT_SAVE6,
                    "ip6tables-nft-save",
                    Some("nft"),
                ),
            ];
            let futs = runs.into_iter().map(|(path, prog, backend)| {
                let mut spec = ArtifactSpec::raw_command(path, layout::content::IPTABLES_SAVE, &[]);
                if let Some(b) = backend {
                    spec = spec.with_attribute("backend", b);
                }
                let ctx = ctx.clone();
                async move {
                    ctx.exec
                        .to_artifact(&ctx.writer, spec, &[prog, "-c"], Limits::default())
                        .await
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
                Limits::default(),
            );
            let (saves, v, s) = tokio::join!(futures::future::join_all(futs), version, ipset);
            let mut tally = Tally::default();
            for r in saves {
                tally.add(r?.record());
            }
            tally.add(v?.record());
            tally.add(s?.record());
            Ok(tally)
        })
    }
}

/// `nft list ruleset`.
#[derive(Debug, Clone, Copy)]
pub struct NftStep;

impl Step for NftStep {
    fn name(&self) -> &'static str {
        "nft"
    }

    fn run(self: Arc<Self>, ctx: Arc<RunContext>) -> BoxFuture<Result<Tally, StepError>> {
        Box::pin(async move {
            let mut tally = Tally::default();
            let r = ctx
                .exec
                .to_artifact(
                    &ctx.writer,
                    ArtifactSpec::raw_command(
                        layout::nft::RULESET,
                        layout::content::NFT_RULESET,
                        &[],
                    ),
                    &["nft", "list", "ruleset"],
                    Limits::default(),
                )
                .await?;
            tally.add(r.record());
            Ok(tally)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::backend_of;

    #[test]
    fn backends() {
        assert_eq!(backend_of("iptables v1.8.10 (nf_tables)"), Some("nft"));
        assert_eq!(backend_of("iptables v1.8.7 (legacy)"), Some("legacy"));
        assert_eq!(backend_of("xtables-nft-multi"), Some("nft"));
        assert_eq!(backend_of("xtables-legacy-multi"), Some("legacy"));
        assert_eq!(backend_of("iptables v1.4.21"), None);
    }
}

//! iptables (every backend present), nftables and ipset, each distinct dump once.
//!
//! Backends are detected once. `iptables-save -c` is run for whatever
//! `iptables-save` points to; the explicit `iptables-legacy-save` /
//! `iptables-nft-save` run too when they are a *different* program, so a node with
//! rules split across backends (a classic kube-proxy failure) shows both. When the
//! explicit variant is the same program (`iptables-save` is `xtables-nft-multi`, as
//! `iptables-nft-save` is), it would print the same bytes again: its record is
//! `skipped` with the attribute `same_as` naming the dump that holds them. Each
//! record's `backend` attribute says `legacy` or `nft`: for the explicit variants
//! from the name, for the plain one from `iptables -V` (`iptables v1.8.10
//! (nf_tables)`) or, without it, from the binary the name resolves to.
//!
//! nftables: `nft list ruleset` would print the tables iptables-nft manages again
//! (slowly: 55,000 kube-proxy rules take it as long as `iptables-save`). The tables
//! are listed over netlink (`NFT_MSG_GETTABLE`, microseconds), and `nft list table`
//! runs for every table except the iptables-nft ones (`ip`/`ip6` `filter`, `nat`,
//! `mangle`, `raw`, `security`) whose content a complete iptables-nft dump printed:
//! kube-proxy's own `ip`/`ip6 kube-proxy` tables, CNI tables and anything else
//! land in `nft/ruleset.txt` in `nft list ruleset` syntax. (`nft list tables`
//! cannot be used to learn the names: nft 1.0.6 fetches the whole ruleset for it.)
//! A table iptables-nft-save calls incompatible, or any table when the netlink
//! listing or the iptables-nft dump failed, is listed by `nft` like the rest.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use netsnap_bundle::{
    ArtifactRecord, ArtifactSpec, ArtifactStatus, Completion, SAME_AS_ATTRIBUTE, WriteError, layout,
};

use crate::step::{BoxFuture, RunContext, Step, StepError, Tally};
use crate::sys::exec::{Captured, Exec, Limits, Ran};

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

fn canonical(exec: &Exec, program: &str) -> Option<PathBuf> {
    let p = exec.resolve(program)?;
    Some(std::fs::canonicalize(&p).unwrap_or(p))
}

/// True when `explicit` (`iptables-nft-save`, of backend `backend`) would print what
/// `plain` (`iptables-save`) printed: the same multi-call binary under both names,
/// or one wrapper (kube's `iptables-wrapper`) behind both `iptables` and
/// `iptables-save` whose `iptables -V` names that backend.
fn same_program(
    exec: &Exec,
    plain: &str,
    versioned: &str,
    plain_backend: Option<&str>,
    explicit: &str,
    backend: &str,
) -> bool {
    let (Some(p), Some(e)) = (canonical(exec, plain), canonical(exec, explicit)) else {
        return false;
    };
    p == e || (plain_backend == Some(backend) && canonical(exec, versioned).as_ref() == Some(&p))
}

/// The tables iptables-nft creates in the `ip` and `ip6` families.
pub const IPTABLES_NFT_TABLES: &[&str] = &["filter", "nat", "mangle", "raw", "security"];

/// What an `iptables-save` dump printed: its `*table` headers and the tables it
/// called incompatible (`# Table `filter' is incompatible, use 'nft' tool.`).
#[derive(Debug, Default, Clone)]
pub struct SaveScan {
    carry: Vec<u8>,
    /// Tables with a `*name` header.
    pub tables: BTreeSet<String>,
    /// Tables iptables-nft-save refused to print.
    pub incompatible: BTreeSet<String>,
}

impl SaveScan {
    /// Feeds a chunk of the dump (lines may span chunks).
    pub fn feed(&mut self, chunk: &[u8]) {
        let mut rest = chunk;
        while let Some(pos) = memchr::memchr(b'\n', rest) {
            if self.carry.is_empty() {
                self.line(&rest[..pos]);
            } else {
                self.carry.extend_from_slice(&rest[..pos]);
                let line = std::mem::take(&mut self.carry);
                self.line(&line);
            }
            rest = &rest[pos + 1..];
        }
        // Only short lines matter (headers, comments): a long rule line is dropped.
        if self.carry.len() + rest.len() <= 512 {
            self.carry.extend_from_slice(rest);
        } else {
            self.carry.clear();
            self.carry.push(b'-');
        }
    }

    fn line(&mut self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        if let Some(name) = line.strip_prefix('*') {
            self.tables.insert(name.trim().to_string());
        } else if line.starts_with('#')
            && line.contains("incompatible")
            && let Some((_, after)) = line.split_once('`')
            && let Some((name, _)) = after.split_once('\'')
        {
            self.incompatible.insert(name.to_string());
        }
    }

    /// The iptables-nft tables this dump holds completely.
    pub fn covered(&self) -> BTreeSet<String> {
        self.tables
            .iter()
            .filter(|t| {
                IPTABLES_NFT_TABLES.contains(&t.as_str()) && !self.incompatible.contains(*t)
            })
            .cloned()
            .collect()
    }
}

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

/// Tables in the kernel's nf_tables, as `(family, name)` (`ip`, `ip6`, `inet`,
/// `arp`, `bridge`, `netdev`), in the kernel's order, over one netlink dump.
pub fn list_nft_tables() -> std::io::Result<Vec<(String, String)>> {
    use netlink_packet_core::{
        NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
    };
    use netlink_packet_netfilter::nftables::{NfTablesMessage, TableAttribute, TableMessage};
    use netlink_packet_netfilter::{
        NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
    };
    use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

    let bad = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    let mut sock = Socket::new(NETLINK_NETFILTER)?;
    sock.bind_auto()?;
    sock.connect(&SocketAddr::new(0, 0))?;
    let mut msg = NetlinkMessage::new(
        NetlinkHeader::default(),
        NetlinkPayload::from(NetfilterMessage::new(
            NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, 0),
            NfTablesMessage::GetTable(TableMessage { attributes: vec![] }),
        )),
    );
    msg.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    msg.header.sequence_number = 1;
    msg.finalize();
    let mut buf = vec![0u8; msg.buffer_len()];
    msg.serialize(&mut buf);
    sock.send(&buf, 0)?;
    let family = |f: NetfilterProtoFamily| match f {
        NetfilterProtoFamily::IPv4 => "ip".to_string(),
        NetfilterProtoFamily::IPv6 => "ip6".into(),
        NetfilterProtoFamily::Inet => "inet".into(),
        NetfilterProtoFamily::ARP => "arp".into(),
        NetfilterProtoFamily::Bridge => "bridge".into(),
        NetfilterProtoFamily::NetDev => "netdev".into(),
        other => format!("{}", u8::from(other)),
    };
    let mut tables = Vec::new();
    loop {
        let (data, _) = sock.recv_from_full()?;
        if data.is_empty() {
            return Err(bad("netlink socket closed".into()));
        }
        let mut off = 0;
        while off < data.len() {
            let reply = NetlinkMessage::<NetfilterMessage>::deserialize(&data[off..])
                .map_err(|e| bad(format!("nf_tables table dump: {e}")))?;
            let len = reply.header.length as usize;
            match reply.payload {
                NetlinkPayload::Done(_) => return Ok(tables),
                NetlinkPayload::Error(e) => {
                    return Err(match e.code {
                        Some(code) => std::io::Error::from_raw_os_error(-code.get()),
                        None => bad("netlink error without a code".into()),
                    });
                }
                NetlinkPayload::InnerMessage(m) => {
                    if let NetfilterMessageInner::NfTables(NfTablesMessage::NewTable(t)) = m.inner
                        && let Some(name) = t.attributes.iter().find_map(|a| match a {
                            TableAttribute::Name(n) => Some(n.clone()),
                            _ => None,
                        })
                    {
                        tables.push((family(m.header.family), name));
                    }
                }
                _ => {}
            }
            if len == 0 {
                break;
            }
            off += (len + 3) & !3;
        }
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

#[cfg(test)]
mod tests {
    use super::{SaveScan, backend_of};

    #[test]
    fn backends() {
        assert_eq!(backend_of("iptables v1.8.10 (nf_tables)"), Some("nft"));
        assert_eq!(backend_of("iptables v1.8.7 (legacy)"), Some("legacy"));
        assert_eq!(backend_of("xtables-nft-multi"), Some("nft"));
        assert_eq!(backend_of("xtables-legacy-multi"), Some("legacy"));
        assert_eq!(backend_of("iptables v1.4.21"), None);
    }

    #[test]
    fn save_scan_finds_headers_across_chunks_and_incompatible_tables() {
        let text = "# Generated by iptables-nft-save v1.8.9 (nf_tables) on Thu Dec  3 14:00:00 2026\n\
                    *nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j KUBE-SERVICES\nCOMMIT\n\
                    # Table `filter' is incompatible, use 'nft' tool.\n\
                    *mangle\nCOMMIT\n";
        let long = format!("-A X {}\n", "y".repeat(2000));
        let mut whole = SaveScan::default();
        whole.feed(text.as_bytes());
        let mut split = SaveScan::default();
        for chunk in format!("{long}{text}").as_bytes().chunks(7) {
            split.feed(chunk);
        }
        for s in [&whole, &split] {
            assert_eq!(
                s.tables.iter().map(String::as_str).collect::<Vec<_>>(),
                ["mangle", "nat"]
            );
            assert_eq!(
                s.incompatible
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>(),
                ["filter"]
            );
            assert_eq!(
                s.covered().iter().map(String::as_str).collect::<Vec<_>>(),
                ["mangle", "nat"]
            );
        }
    }
}

//! `conntrack`: the connection tracking table like `conntrack -L` with the
//! tutorial's filters (`-d`, `-s`, `-p`, `--state`), a `--summary` built while
//! streaming (count vs max, per protocol and state, top destinations), and the
//! per-CPU `--stats` (`conntrack -S`).
//!
//! The table is streamed ([`conntrack::for_each_entry`]): only rows that pass the
//! filters are kept, and `--summary` keeps only counters, so a 1,000,000-entry
//! table never sits in memory.

use std::collections::{BTreeMap, HashMap};
use std::io::BufReader;
use std::net::IpAddr;

use netsnap_bundle::{Bundle, layout};
use serde::Serialize;

use super::load::{self, no_data};
use super::table::{Table, opt};
use super::{InspectArgs, InspectError, Outcome, emit};
use crate::facts::keys::{CONNTRACK_DEST_CAP, destination_key};
use crate::parse::conntrack::{self, ConntrackEntry, ConntrackTally, Protocol, Tuple};

/// One entry of the `conntrack` view.
#[derive(Debug, Serialize)]
pub struct ConntrackRow {
    /// Line in the artifact.
    pub line: usize,
    /// Protocol name.
    pub protocol: String,
    /// Seconds left.
    pub timeout: Option<u64>,
    /// State (tcp, sctp, dccp).
    pub state: Option<String>,
    /// Original direction `src:sport -> dst:dport`.
    pub original: String,
    /// Reply direction.
    pub reply: String,
    /// `[UNREPLIED]`, `[ASSURED]`, `[OFFLOAD]`.
    pub flags: Vec<String>,
    /// `mark=`.
    pub mark: Option<u32>,
    /// `zone=`.
    pub zone: Option<u16>,
    /// Where the connection was DNATed to, when it was.
    pub dnat: Option<String>,
}

fn endpoint(addr: std::net::IpAddr, port: Option<u16>) -> String {
    match (addr, port) {
        (std::net::IpAddr::V6(a), Some(p)) => format!("[{a}]:{p}"),
        (a, Some(p)) => format!("{a}:{p}"),
        (a, None) => a.to_string(),
    }
}

fn tuple_text(t: &Tuple) -> String {
    format!(
        "{} -> {}",
        endpoint(t.src, t.sport),
        endpoint(t.dst, t.dport)
    )
}

fn flags(e: &ConntrackEntry) -> Vec<String> {
    let mut f = Vec::new();
    if e.flags.unreplied {
        f.push("UNREPLIED".to_string());
    }
    if e.flags.assured {
        f.push("ASSURED".to_string());
    }
    if e.flags.offload {
        f.push("OFFLOAD".to_string());
    }
    if e.flags.hw_offload {
        f.push("HW_OFFLOAD".to_string());
    }
    f
}

fn matches(e: &ConntrackEntry, a: &InspectArgs) -> bool {
    a.dst.is_none_or(|d| e.original.dst == d)
        && a.src.is_none_or(|s| e.original.src == s)
        && a.proto
            .as_deref()
            .is_none_or(|p| e.protocol.as_str().eq_ignore_ascii_case(p))
        && a.state.as_deref().is_none_or(|s| {
            e.state
                .as_ref()
                .is_some_and(|st| st.as_str().eq_ignore_ascii_case(s))
        })
}

/// The table artifact: `conntrack -L`, else `/proc/net/nf_conntrack`.
fn table_path(bundle: &Bundle) -> Option<&'static str> {
    [layout::conntrack::TABLE, layout::conntrack::PROC_TABLE]
        .into_iter()
        .find(|p| bundle.artifact_file(p).is_some())
}

fn stream(
    bundle: &Bundle,
    path: &str,
    mut f: impl FnMut(ConntrackEntry),
) -> Result<(), InspectError> {
    let read_err = |source| InspectError::Read {
        path: path.to_string(),
        source,
    };
    let file = bundle
        .open_artifact(path)
        .ok_or_else(|| read_err(std::io::Error::from(std::io::ErrorKind::NotFound)))?
        .map_err(read_err)?;
    conntrack::for_each_entry(BufReader::new(file), |item| {
        if let Ok(e) = item {
            f(e);
        }
    })
    .map_err(read_err)?;
    Ok(())
}

/// `inspect conntrack`.
pub fn conntrack(bundle: &Bundle, args: &InspectArgs) -> Result<Outcome, InspectError> {
    if args.stats {
        return stats(bundle, args);
    }
    let Some(path) = table_path(bundle) else {
        return Ok(Outcome::NoData(no_data(
            "conntrack",
            bundle,
            layout::conntrack::TABLE,
        )));
    };
    if args.summary {
        return summary(bundle, args, path);
    }
    let mut rows = Vec::new();
    stream(bundle, path, |e| {
        if matches(&e, args) {
            rows.push(ConntrackRow {
                line: e.line,
                protocol: e.protocol.as_str().to_string(),
                timeout: e.timeout,
                state: e.state.as_ref().map(|s| s.as_str().to_string()),
                original: tuple_text(&e.original),
                reply: tuple_text(&e.reply),
                flags: flags(&e),
                mark: e.mark,
                zone: e.zone,
                dnat: e.dnat_destination().map(|(a, p)| endpoint(a, p)),
            });
        }
    })?;
    emit(args, &rows, |rows| {
        let mut t = Table::new(&["PROTO", "TIMEOUT", "STATE", "ORIGINAL", "REPLY", "FLAGS"]);
        t.drop_first(&["FLAGS", "TIMEOUT"]);
        for r in rows {
            t.row(vec![
                r.protocol.clone(),
                opt(r.timeout),
                opt(r.state.as_deref()),
                r.original.clone(),
                r.reply.clone(),
                if r.flags.is_empty() {
                    "-".into()
                } else {
                    r.flags.join(",")
                },
            ]);
        }
        format!(
            "{}{} flow entries have been shown.\n",
            t.render(),
            rows.len()
        )
    })
}

/// One line of `conntrack --summary`.
#[derive(Debug, Serialize)]
pub struct SummaryRow {
    /// `table`, `protocol`, `state`, `flag`, `top-destination`.
    pub section: String,
    /// What is counted.
    pub key: String,
    /// The count.
    pub value: u64,
}

fn summary(bundle: &Bundle, args: &InspectArgs, path: &str) -> Result<Outcome, InspectError> {
    let mut tally = ConntrackTally::default();
    // The destination tally of the facts (`facts::keys::destination_key`, the same cap), so
    // the summary names destinations exactly as the findings do.
    let mut dests: HashMap<(Protocol, IpAddr, u16), u64> = HashMap::new();
    let mut uncounted = 0u64;
    stream(bundle, path, |e| {
        if matches(&e, args) {
            tally.add(&e);
            let dest = (e.protocol, e.original.dst, e.original.dport.unwrap_or(0));
            if let Some(c) = dests.get_mut(&dest) {
                *c += 1;
            } else if dests.len() < CONNTRACK_DEST_CAP {
                dests.insert(dest, 1);
            } else {
                uncounted += 1;
            }
        }
    })?;
    let mut rows = vec![SummaryRow {
        section: "table".into(),
        key: "entries".into(),
        value: tally.total,
    }];
    let sysctls: BTreeMap<String, String> =
        load::json(bundle, layout::conntrack::SYSCTLS, "conntrack sysctl map")?.unwrap_or_default();
    for key in [
        "nf_conntrack_count",
        "nf_conntrack_max",
        "nf_conntrack_buckets",
    ] {
        let v = sysctls
            .iter()
            .find(|(k, _)| k.rsplit(['.', '/']).next() == Some(key))
            .and_then(|(_, v)| v.trim().parse().ok());
        if let Some(value) = v {
            rows.push(SummaryRow {
                section: "table".into(),
                key: key.into(),
                value,
            });
        }
    }
    for (k, v) in &tally.by_protocol {
        rows.push(SummaryRow {
            section: "protocol".into(),
            key: k.clone(),
            value: *v,
        });
    }
    for (k, v) in &tally.by_state {
        rows.push(SummaryRow {
            section: "state".into(),
            key: k.clone(),
            value: *v,
        });
    }
    for (k, v) in [
        ("unreplied", tally.unreplied),
        ("assured", tally.assured),
        ("dnat", tally.dnat),
    ] {
        rows.push(SummaryRow {
            section: "flag".into(),
            key: k.into(),
            value: v,
        });
    }
    if uncounted > 0 {
        rows.push(SummaryRow {
            section: "table".into(),
            key: format!(
                "entries to destinations past the first {CONNTRACK_DEST_CAP} (not tallied)"
            ),
            value: uncounted,
        });
    }
    let mut top: Vec<(String, u64)> = dests
        .into_iter()
        .map(|((proto, ip, port), n)| (destination_key(proto, ip, port), n))
        .collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    for (k, v) in top.into_iter().take(10) {
        rows.push(SummaryRow {
            section: "top-destination".into(),
            key: k,
            value: v,
        });
    }
    emit(args, &rows, |rows| {
        let mut t = Table::new(&["SECTION", "KEY", "COUNT"]);
        for r in rows {
            t.row(vec![r.section.clone(), r.key.clone(), r.value.to_string()]);
        }
        t.render()
    })
}

/// One CPU of `conntrack -S` (or the `total` row).
#[derive(Debug, Serialize)]
pub struct StatsRow {
    /// CPU number, or `total`.
    pub cpu: String,
    /// Counters by name.
    pub counters: BTreeMap<String, u64>,
}

const STAT_COLUMNS: &[&str] = &[
    "found",
    "invalid",
    "insert",
    "insert_failed",
    "drop",
    "early_drop",
    "error",
    "search_restart",
];

fn stats(bundle: &Bundle, args: &InspectArgs) -> Result<Outcome, InspectError> {
    let parsed = if let Some(t) = load::text(bundle, layout::conntrack::STATS)? {
        conntrack::parse_conntrack_stats(&t)
    } else if let Some(t) = load::text(bundle, layout::conntrack::PROC_STAT)? {
        conntrack::parse_proc_stat(&t)
    } else {
        return Ok(Outcome::NoData(no_data(
            "conntrack --stats",
            bundle,
            layout::conntrack::STATS,
        )));
    };
    let mut rows: Vec<StatsRow> = parsed
        .cpus
        .iter()
        .map(|c| StatsRow {
            cpu: c.cpu.to_string(),
            counters: c.counters.clone(),
        })
        .collect();
    rows.push(StatsRow {
        cpu: "total".into(),
        counters: parsed.totals(),
    });
    emit(args, &rows, |rows| {
        let mut h = vec!["CPU"];
        h.extend(STAT_COLUMNS.iter().copied());
        let upper: Vec<String> = h.iter().map(|c| c.to_uppercase()).collect();
        let refs: Vec<&str> = upper.iter().map(String::as_str).collect();
        let mut t = Table::new(&refs);
        for r in rows {
            let mut cells = vec![r.cpu.clone()];
            cells.extend(STAT_COLUMNS.iter().map(|c| opt(r.counters.get(*c))));
            t.row(cells);
        }
        t.render()
    })
}

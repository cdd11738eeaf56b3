//! Kernel log parser: `dmesg` (`[12345.678901] msg`), `dmesg -r` (`<6>[...] msg`),
//! `dmesg -x` (`kern  :info  : [...] msg`), `dmesg -T` (`[Sat Nov 28 09:35:12 2026] msg`),
//! `journalctl -k` short form (`Nov 28 09:35:12 node kernel: msg`) and `/dev/kmsg` records
//! (`6,1234,5678901,-;msg` with ` KEY=value` continuation lines).
//!
//! Each record keeps its level (when the form carries one), timestamp and message, and is
//! classified into a [`KernelEventKind`] — the networking messages that matter for node
//! diagnosis (conntrack table full, neighbour table overflow, martian packets, SYN flooding,
//! socket memory, IPVS, br_netfilter, promiscuous mode, veth renames, link readiness), with
//! [`KernelEventKind::Other`] for the rest. [`KernelLog::counts`] counts per kind.
//!
//! Guarantees: no input panics; every non-blank line is a record, a continuation attached
//! to the previous record (`/dev/kmsg` ` KEY=value`), or an [`Unparsed`] record.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Unparsed;

/// What a kernel message is about (networking-relevant classes; everything else is `Other`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum KernelEventKind {
    /// `nf_conntrack: table full, dropping packet`.
    ConntrackTableFull,
    /// `nf_conntrack: expectation table full`.
    ConntrackExpectationTableFull,
    /// `nf_conntrack: falling back to vmalloc`.
    ConntrackVmallocFallback,
    /// `neighbour: arp_cache: neighbor table overflow!` / `Neighbour table overflow.`.
    NeighbourTableOverflow,
    /// `IPv4: martian source ...`.
    MartianSource,
    /// `IPv4: martian destination ...`.
    MartianDestination,
    /// `ll header: ...` hex dump that follows a martian message.
    MartianLlHeader,
    /// `TCP: request_sock_TCP: Possible SYN flooding on port ...`.
    SynFlooding,
    /// `Out of socket memory` / `TCP: out of memory -- consider tuning tcp_mem`.
    OutOfSocketMemory,
    /// `TCP: too many orphaned sockets`.
    TooManyOrphanedSockets,
    /// `IPVS: ... no destination available`.
    IpvsNoDestination,
    /// Any other `IPVS:` message.
    Ipvs,
    /// br_netfilter / bridge firewalling messages.
    BrNetfilter,
    /// `device X entered promiscuous mode` / `X: entered promiscuous mode`.
    PromiscuousEntered,
    /// `left promiscuous mode`.
    PromiscuousLeft,
    /// `eth0: renamed from veth...`.
    InterfaceRenamed,
    /// `link is not ready`.
    LinkNotReady,
    /// `link becomes ready`.
    LinkBecomesReady,
    /// `br0: port 1(vethX) entered forwarding state` and other bridge port state changes.
    BridgePortState,
    /// `net_ratelimit: N callbacks suppressed` (messages were dropped from the log).
    RateLimited,
    /// Anything else.
    Other,
}

impl KernelEventKind {
    /// Every kind, in declaration order.
    pub const ALL: [KernelEventKind; 21] = [
        KernelEventKind::ConntrackTableFull,
        KernelEventKind::ConntrackExpectationTableFull,
        KernelEventKind::ConntrackVmallocFallback,
        KernelEventKind::NeighbourTableOverflow,
        KernelEventKind::MartianSource,
        KernelEventKind::MartianDestination,
        KernelEventKind::MartianLlHeader,
        KernelEventKind::SynFlooding,
        KernelEventKind::OutOfSocketMemory,
        KernelEventKind::TooManyOrphanedSockets,
        KernelEventKind::IpvsNoDestination,
        KernelEventKind::Ipvs,
        KernelEventKind::BrNetfilter,
        KernelEventKind::PromiscuousEntered,
        KernelEventKind::PromiscuousLeft,
        KernelEventKind::InterfaceRenamed,
        KernelEventKind::LinkNotReady,
        KernelEventKind::LinkBecomesReady,
        KernelEventKind::BridgePortState,
        KernelEventKind::RateLimited,
        KernelEventKind::Other,
    ];

    /// The stable kebab-case name (as serialized), for rules and tables.
    pub fn as_str(self) -> &'static str {
        use KernelEventKind as K;
        match self {
            K::ConntrackTableFull => "conntrack-table-full",
            K::ConntrackExpectationTableFull => "conntrack-expectation-table-full",
            K::ConntrackVmallocFallback => "conntrack-vmalloc-fallback",
            K::NeighbourTableOverflow => "neighbour-table-overflow",
            K::MartianSource => "martian-source",
            K::MartianDestination => "martian-destination",
            K::MartianLlHeader => "martian-ll-header",
            K::SynFlooding => "syn-flooding",
            K::OutOfSocketMemory => "out-of-socket-memory",
            K::TooManyOrphanedSockets => "too-many-orphaned-sockets",
            K::IpvsNoDestination => "ipvs-no-destination",
            K::Ipvs => "ipvs",
            K::BrNetfilter => "br-netfilter",
            K::PromiscuousEntered => "promiscuous-entered",
            K::PromiscuousLeft => "promiscuous-left",
            K::InterfaceRenamed => "interface-renamed",
            K::LinkNotReady => "link-not-ready",
            K::LinkBecomesReady => "link-becomes-ready",
            K::BridgePortState => "bridge-port-state",
            K::RateLimited => "rate-limited",
            K::Other => "other",
        }
    }
}

/// Classifies a message text.
pub fn classify(msg: &str) -> KernelEventKind {
    use KernelEventKind as K;
    if msg.contains("nf_conntrack") {
        if msg.contains("table full, dropping packet") {
            return K::ConntrackTableFull;
        }
        if msg.contains("expectation table full") {
            return K::ConntrackExpectationTableFull;
        }
        if msg.contains("falling back to vmalloc") {
            return K::ConntrackVmallocFallback;
        }
    }
    if msg.contains("neighbor table overflow") || msg.contains("Neighbour table overflow") {
        return K::NeighbourTableOverflow;
    }
    if msg.contains("martian source") {
        return K::MartianSource;
    }
    if msg.contains("martian destination") {
        return K::MartianDestination;
    }
    if msg.starts_with("ll header: ") {
        return K::MartianLlHeader;
    }
    if msg.contains("Possible SYN flooding") {
        return K::SynFlooding;
    }
    if msg.contains("Out of socket memory")
        || msg.contains("out of memory -- consider tuning tcp_mem")
    {
        return K::OutOfSocketMemory;
    }
    if msg.contains("too many orphaned sockets") {
        return K::TooManyOrphanedSockets;
    }
    if msg.starts_with("IPVS:") {
        if msg.contains("no destination available") {
            return K::IpvsNoDestination;
        }
        return K::Ipvs;
    }
    if msg.contains("br_netfilter") || msg.contains("Bridge firewalling registered") {
        return K::BrNetfilter;
    }
    if msg.contains("entered promiscuous mode") {
        return K::PromiscuousEntered;
    }
    if msg.contains("left promiscuous mode") {
        return K::PromiscuousLeft;
    }
    if msg.contains(": renamed from ") {
        return K::InterfaceRenamed;
    }
    if msg.contains("link is not ready") {
        return K::LinkNotReady;
    }
    if msg.contains("link becomes ready") {
        return K::LinkBecomesReady;
    }
    if msg.contains(": port ") && msg.contains(") entered ") && msg.contains(" state") {
        return K::BridgePortState;
    }
    if msg.contains("callbacks suppressed") {
        return K::RateLimited;
    }
    K::Other
}

/// One kernel log record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct KernelLogRecord {
    /// 1-based line number.
    pub line: usize,
    /// Syslog level 0 (emerg) .. 7 (debug), when the form carries it.
    pub level: Option<u8>,
    /// Syslog facility (0 = kern, 1 = user, ...), when the form carries it.
    pub facility: Option<u8>,
    /// `/dev/kmsg` sequence number.
    pub sequence: Option<u64>,
    /// Microseconds since boot (`[12345.678901]` or the kmsg timestamp).
    pub monotonic_us: Option<u64>,
    /// Wall-clock text (`dmesg -T`, `journalctl -k`), verbatim.
    pub wall_time: Option<String>,
    /// The message text.
    pub message: String,
    /// Classification of the message.
    pub kind: KernelEventKind,
    /// `/dev/kmsg` continuation properties (` SUBSYSTEM=net`), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<(String, String)>,
}

/// A parsed kernel log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct KernelLog {
    /// Records in order.
    pub records: Vec<KernelLogRecord>,
    /// Lines not understood.
    pub unparsed: Vec<Unparsed>,
}

impl KernelLog {
    /// Number of records per kind.
    pub fn counts(&self) -> BTreeMap<KernelEventKind, u64> {
        let mut m = BTreeMap::new();
        for r in &self.records {
            *m.entry(r.kind).or_insert(0) += 1;
        }
        m
    }

    /// Records of one kind.
    pub fn of_kind(&self, kind: KernelEventKind) -> impl Iterator<Item = &KernelLogRecord> {
        self.records.iter().filter(move |r| r.kind == kind)
    }
}

/// Parses a kernel log in any supported form (forms may even be mixed).
pub fn parse_kernel_log(text: &str) -> KernelLog {
    let mut out = KernelLog::default();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        // /dev/kmsg dictionary continuation: " KEY=value" after a record.
        if let Some(prop) = line.strip_prefix(' ')
            && let Some((k, v)) = prop.split_once('=')
            && !k.is_empty()
            && k.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
            && let Some(last) = out.records.last_mut()
            && last.sequence.is_some()
        {
            last.properties.push((k.to_string(), v.to_string()));
            continue;
        }
        match parse_record(line_no, line) {
            Ok(r) => out.records.push(r),
            Err(reason) => out.unparsed.push(Unparsed::new(line_no, line, reason)),
        }
    }
    out
}

fn record(line: usize, msg: &str) -> KernelLogRecord {
    KernelLogRecord {
        line,
        level: None,
        facility: None,
        sequence: None,
        monotonic_us: None,
        wall_time: None,
        message: msg.to_string(),
        kind: classify(msg),
        properties: Vec::new(),
    }
}

/// `12345.678901` → microseconds.
fn parse_secs_us(s: &str) -> Option<u64> {
    let s = s.trim();
    let (sec, frac) = s.split_once('.').unwrap_or((s, "0"));
    let sec: u64 = sec.parse().ok()?;
    if frac.is_empty() || frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut us: u64 = frac.parse().ok()?;
    for _ in frac.len()..6 {
        us *= 10;
    }
    sec.checked_mul(1_000_000)?.checked_add(us)
}

/// Strips one leading space, which dmesg prints between the prefix and the message.
fn msg_after(rest: &str) -> &str {
    rest.strip_prefix(' ').unwrap_or(rest)
}

/// `[...] msg`: a monotonic `[  12.3]` or a `-T` wall-clock `[Sat Nov 28 09:35:12 2026]`.
fn parse_bracketed(line_no: usize, s: &str) -> Result<KernelLogRecord, &'static str> {
    let inner_rest = s.strip_prefix('[').ok_or("expected [timestamp]")?;
    let (inner, rest) = inner_rest
        .split_once(']')
        .ok_or("unterminated [timestamp]")?;
    let mut r = record(line_no, msg_after(rest));
    if let Some(us) = parse_secs_us(inner) {
        r.monotonic_us = Some(us);
    } else if inner.len() >= 20 && inner.split_ascii_whitespace().count() == 5 {
        r.wall_time = Some(inner.to_string());
    } else {
        return Err("timestamp is neither seconds since boot nor a -T date");
    }
    Ok(r)
}

const LEVELS: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warn", "notice", "info", "debug",
];
const FACILITIES: [&str; 12] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp",
];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn parse_record(line_no: usize, line: &str) -> Result<KernelLogRecord, &'static str> {
    // dmesg -r: <prio>[ts] msg
    if let Some(rest) = line.strip_prefix('<') {
        let (prio, rest) = rest.split_once('>').ok_or("unterminated <priority>")?;
        let prio: u16 = prio.parse().map_err(|_| "bad <priority>")?;
        let mut r = parse_bracketed(line_no, rest)?;
        r.level = Some((prio & 7) as u8);
        r.facility = u8::try_from(prio >> 3).ok();
        return Ok(r);
    }
    if line.starts_with('[') {
        return parse_bracketed(line_no, line);
    }
    // dmesg -x: "kern  :info  : [ts] msg"
    if let Some((fac, rest)) = line.split_once(':')
        && let Some(f) = FACILITIES.iter().position(|n| *n == fac.trim())
    {
        let (lvl, rest) = rest.split_once(':').ok_or("expected facility:level:")?;
        let l = LEVELS
            .iter()
            .position(|n| *n == lvl.trim())
            .ok_or("unknown level name")?;
        let mut r = parse_bracketed(line_no, rest.trim_start())?;
        r.level = u8::try_from(l).ok();
        r.facility = u8::try_from(f).ok();
        return Ok(r);
    }
    // /dev/kmsg: "prio,seq,usec,flags[,...];msg"
    if let Some((head, msg)) = line.split_once(';')
        && head.bytes().next().is_some_and(|b| b.is_ascii_digit())
    {
        let mut f = head.split(',');
        let prio: u16 = f
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or("bad kmsg priority")?;
        let seq: u64 = f
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or("bad kmsg sequence")?;
        let us: u64 = f
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or("bad kmsg timestamp")?;
        f.next().ok_or("missing kmsg flags")?;
        let mut r = record(line_no, msg);
        r.level = Some((prio & 7) as u8);
        r.facility = u8::try_from(prio >> 3).ok();
        r.sequence = Some(seq);
        r.monotonic_us = Some(us);
        return Ok(r);
    }
    // journalctl -k: "Nov 28 09:35:12 node kernel: msg"
    let mut parts = line.splitn(5, ' ').filter(|p| !p.is_empty());
    if let Some(mon) = parts.next()
        && MONTHS.contains(&mon)
        && let Some(idx) = line.find(" kernel: ")
    {
        let mut r = record(line_no, &line[idx + " kernel: ".len()..]);
        let stamp: Vec<&str> = line[..idx].split_ascii_whitespace().collect();
        if stamp.len() >= 3 {
            r.wall_time = Some(stamp[..3].join(" "));
        }
        return Ok(r);
    }
    Err("no kernel log prefix ([time], <prio>, facility:level:, kmsg or journal)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_serde() {
        for k in KernelEventKind::ALL {
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
        }
    }

    #[test]
    fn micros() {
        assert_eq!(parse_secs_us("    0.458550"), Some(458_550));
        assert_eq!(parse_secs_us("12.5"), Some(12_500_000));
        assert_eq!(parse_secs_us("x"), None);
    }

    #[test]
    fn forms() {
        let log = parse_kernel_log(
            "<4>[ 1.000000] nf_conntrack: nf_conntrack: table full, dropping packet\n\
             kern  :warn  : [    2.000000] Neighbour table overflow.\n\
             4,9,3000000,-;TCP: request_sock_TCP: Possible SYN flooding on port 80. Sending cookies.\n \
             SUBSYSTEM=net\n\
             Nov 28 09:35:12 node kernel: IPVS: ipvs loaded.\n",
        );
        assert!(log.unparsed.is_empty(), "{:?}", log.unparsed);
        let kinds: Vec<_> = log.records.iter().map(|r| r.kind).collect();
        assert_eq!(
            kinds,
            [
                KernelEventKind::ConntrackTableFull,
                KernelEventKind::NeighbourTableOverflow,
                KernelEventKind::SynFlooding,
                KernelEventKind::Ipvs
            ]
        );
        assert_eq!(log.records[0].level, Some(4));
        assert_eq!(log.records[1].level, Some(4));
        assert_eq!(log.records[2].properties.len(), 1);
        assert_eq!(log.records[2].monotonic_us, Some(3_000_000));
    }
}

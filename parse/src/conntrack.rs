//! conntrack parsers: `conntrack -L` (plain and `-o extended`), `/proc/net/nf_conntrack`,
//! `conntrack -S`, `/proc/net/stat/nf_conntrack` and `conntrack -C`.
//!
//! # Table listings
//! [`parse_conntrack_line`] parses one line of any listing form into a [`ConntrackEntry`]:
//! every protocol the kernel tracks (tcp, udp, udplite, icmp, icmpv6, sctp, dccp, gre and
//! `unknown` protocol numbers), the `[UNREPLIED]`/`[ASSURED]`/`[OFFLOAD]`/`[HW_OFFLOAD]`
//! flags, `mark=`, `zone=`, `use=`, `id=`, `secctx=`, `delta-time=`, accounting counters
//! (`packets=`/`bytes=`), and both tuples. The reply tuple's source is where the kernel
//! really sends the connection: when it differs from the original destination the
//! connection was DNATed ([`ConntrackEntry::dnat_destination`]).
//!
//! Large tables stream: [`for_each_entry`] reads any [`BufRead`] line by line with one
//! reused buffer and hands each entry to a callback, so a 1,000,000-line table is
//! aggregated in constant memory. A common entry allocates nothing on the heap (states are
//! an enum, addresses are [`IpAddr`]). [`parse_conntrack_list`] is the collect-everything
//! convenience over the same code.
//!
//! The summary line conntrack prints on stderr (`conntrack v1.4.7 (conntrack-tools): 28 flow
//! entries have been shown.`) is recognised wherever it appears (captures that merge stdout
//! and stderr) and reported as [`ConntrackStreamStats::reported_count`], not as unparsed.
//!
//! # Statistics
//! [`parse_conntrack_stats`] reads `conntrack -S` (`cpu=N key=value ...`, keys vary by kernel
//! and are all kept), [`parse_proc_stat`] reads the kernel's hex table with its header row,
//! [`CpuStats::totals`] sums them over CPUs, and [`parse_conntrack_count`] reads `conntrack -C`.
//!
//! Guarantees: no input panics; every non-blank line is an entry, the summary line, or an
//! [`Unparsed`] record with its 1-based line number.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::Unparsed;

/// Layer-3 family of an entry (from the `ipv4 2`/`ipv6 10` prefix, or the addresses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum L3Family {
    /// IPv4 (`ipv4 2`).
    Ipv4,
    /// IPv6 (`ipv6 10`).
    Ipv6,
}

/// Layer-4 protocol of an entry, named as conntrack prints it.
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
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// `tcp 6`.
    Tcp,
    /// `udp 17`.
    Udp,
    /// `udplite 136`.
    Udplite,
    /// `icmp 1`.
    Icmp,
    /// `icmpv6 58`.
    Icmpv6,
    /// `sctp 132`.
    Sctp,
    /// `dccp 33`.
    Dccp,
    /// `gre 47`.
    Gre,
    /// `unknown N`: a protocol conntrack has no tracker for; see [`ConntrackEntry::protocol_number`].
    Unknown,
}

impl Protocol {
    /// The name conntrack prints (`tcp`, `unknown`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Udplite => "udplite",
            Protocol::Icmp => "icmp",
            Protocol::Icmpv6 => "icmpv6",
            Protocol::Sctp => "sctp",
            Protocol::Dccp => "dccp",
            Protocol::Gre => "gre",
            Protocol::Unknown => "unknown",
        }
    }

    /// Parses a conntrack protocol name.
    pub fn from_name(name: &str) -> Option<Protocol> {
        Some(match name {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "udplite" => Protocol::Udplite,
            "icmp" => Protocol::Icmp,
            "icmpv6" => Protocol::Icmpv6,
            "sctp" => Protocol::Sctp,
            "dccp" => Protocol::Dccp,
            "gre" => Protocol::Gre,
            "unknown" => Protocol::Unknown,
            _ => return None,
        })
    }
}

/// Connection state printed after the timeout (tcp, sctp and dccp only).
///
/// Known kernel state names are variants so that the streaming path never allocates;
/// anything else is kept verbatim in [`ConntrackState::Other`].
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConntrackState {
    /// tcp `NONE`.
    None,
    /// tcp `SYN_SENT`.
    SynSent,
    /// tcp `SYN_RECV`.
    SynRecv,
    /// tcp/sctp `ESTABLISHED`.
    Established,
    /// tcp `FIN_WAIT`.
    FinWait,
    /// tcp `CLOSE_WAIT`.
    CloseWait,
    /// tcp `LAST_ACK`.
    LastAck,
    /// tcp `TIME_WAIT`.
    TimeWait,
    /// tcp `CLOSE`.
    Close,
    /// tcp `LISTEN`.
    Listen,
    /// tcp `SYN_SENT2` (simultaneous open).
    SynSent2,
    /// sctp `CLOSED`.
    Closed,
    /// sctp `COOKIE_WAIT`.
    CookieWait,
    /// sctp `COOKIE_ECHOED`.
    CookieEchoed,
    /// sctp `SHUTDOWN_SENT`.
    ShutdownSent,
    /// sctp `SHUTDOWN_RECD`.
    ShutdownRecd,
    /// sctp `SHUTDOWN_ACK_SENT`.
    ShutdownAckSent,
    /// sctp `HEARTBEAT_SENT`.
    HeartbeatSent,
    /// sctp `HEARTBEAT_ACKED` (older kernels).
    HeartbeatAcked,
    /// dccp `REQUEST`.
    Request,
    /// dccp `RESPOND`.
    Respond,
    /// dccp `PARTOPEN`.
    Partopen,
    /// dccp `OPEN`.
    Open,
    /// dccp `CLOSEREQ`.
    Closereq,
    /// dccp `CLOSING`.
    Closing,
    /// dccp `TIMEWAIT`.
    Timewait,
    /// dccp `IGNORE`.
    Ignore,
    /// dccp `INVALID`.
    Invalid,
    /// Any other state name, verbatim.
    Other(String),
}

impl ConntrackState {
    /// Parses a state name as printed by conntrack (`ESTABLISHED`, `TIME_WAIT`, ...).
    pub fn from_name(name: &str) -> ConntrackState {
        match name {
            "NONE" => ConntrackState::None,
            "SYN_SENT" => ConntrackState::SynSent,
            "SYN_RECV" => ConntrackState::SynRecv,
            "ESTABLISHED" => ConntrackState::Established,
            "FIN_WAIT" => ConntrackState::FinWait,
            "CLOSE_WAIT" => ConntrackState::CloseWait,
            "LAST_ACK" => ConntrackState::LastAck,
            "TIME_WAIT" => ConntrackState::TimeWait,
            "CLOSE" => ConntrackState::Close,
            "LISTEN" => ConntrackState::Listen,
            "SYN_SENT2" => ConntrackState::SynSent2,
            "CLOSED" => ConntrackState::Closed,
            "COOKIE_WAIT" => ConntrackState::CookieWait,
            "COOKIE_ECHOED" => ConntrackState::CookieEchoed,
            "SHUTDOWN_SENT" => ConntrackState::ShutdownSent,
            "SHUTDOWN_RECD" => ConntrackState::ShutdownRecd,
            "SHUTDOWN_ACK_SENT" => ConntrackState::ShutdownAckSent,
            "HEARTBEAT_SENT" => ConntrackState::HeartbeatSent,
            "HEARTBEAT_ACKED" => ConntrackState::HeartbeatAcked,
            "REQUEST" => ConntrackState::Request,
            "RESPOND" => ConntrackState::Respond,
            "PARTOPEN" => ConntrackState::Partopen,
            "OPEN" => ConntrackState::Open,
            "CLOSEREQ" => ConntrackState::Closereq,
            "CLOSING" => ConntrackState::Closing,
            "TIMEWAIT" => ConntrackState::Timewait,
            "IGNORE" => ConntrackState::Ignore,
            "INVALID" => ConntrackState::Invalid,
            other => ConntrackState::Other(other.to_string()),
        }
    }

    /// The name as conntrack prints it.
    pub fn as_str(&self) -> &str {
        match self {
            ConntrackState::None => "NONE",
            ConntrackState::SynSent => "SYN_SENT",
            ConntrackState::SynRecv => "SYN_RECV",
            ConntrackState::Established => "ESTABLISHED",
            ConntrackState::FinWait => "FIN_WAIT",
            ConntrackState::CloseWait => "CLOSE_WAIT",
            ConntrackState::LastAck => "LAST_ACK",
            ConntrackState::TimeWait => "TIME_WAIT",
            ConntrackState::Close => "CLOSE",
            ConntrackState::Listen => "LISTEN",
            ConntrackState::SynSent2 => "SYN_SENT2",
            ConntrackState::Closed => "CLOSED",
            ConntrackState::CookieWait => "COOKIE_WAIT",
            ConntrackState::CookieEchoed => "COOKIE_ECHOED",
            ConntrackState::ShutdownSent => "SHUTDOWN_SENT",
            ConntrackState::ShutdownRecd => "SHUTDOWN_RECD",
            ConntrackState::ShutdownAckSent => "SHUTDOWN_ACK_SENT",
            ConntrackState::HeartbeatSent => "HEARTBEAT_SENT",
            ConntrackState::HeartbeatAcked => "HEARTBEAT_ACKED",
            ConntrackState::Request => "REQUEST",
            ConntrackState::Respond => "RESPOND",
            ConntrackState::Partopen => "PARTOPEN",
            ConntrackState::Open => "OPEN",
            ConntrackState::Closereq => "CLOSEREQ",
            ConntrackState::Closing => "CLOSING",
            ConntrackState::Timewait => "TIMEWAIT",
            ConntrackState::Ignore => "IGNORE",
            ConntrackState::Invalid => "INVALID",
            ConntrackState::Other(s) => s,
        }
    }
}

/// ICMP/ICMPv6 tuple fields (`type=8 code=0 id=777`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct IcmpFields {
    /// `type=`.
    pub icmp_type: Option<u8>,
    /// `code=`.
    pub code: Option<u8>,
    /// `id=` (the echo identifier).
    pub id: Option<u16>,
}

/// One direction of a connection (`src= dst= sport= dport=` and friends).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Tuple {
    /// `src=`.
    pub src: IpAddr,
    /// `dst=`.
    pub dst: IpAddr,
    /// `sport=` (tcp, udp, udplite, sctp, dccp).
    pub sport: Option<u16>,
    /// `dport=`.
    pub dport: Option<u16>,
    /// ICMP fields (icmp, icmpv6).
    pub icmp: Option<IcmpFields>,
    /// GRE `srckey=` (hex as printed, e.g. 0x10).
    pub src_key: Option<u32>,
    /// GRE `dstkey=`.
    pub dst_key: Option<u32>,
    /// `packets=` (with `nf_conntrack_acct=1`).
    pub packets: Option<u64>,
    /// `bytes=` (with `nf_conntrack_acct=1`).
    pub bytes: Option<u64>,
}

impl Tuple {
    fn new(src: IpAddr) -> Tuple {
        Tuple {
            src,
            dst: src,
            sport: None,
            dport: None,
            icmp: None,
            src_key: None,
            dst_key: None,
            packets: None,
            bytes: None,
        }
    }
}

/// The bracketed status flags of an entry.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct ConntrackFlags {
    /// `[UNREPLIED]`: no packet seen in the reply direction.
    pub unreplied: bool,
    /// `[ASSURED]`: the entry will not be early-dropped.
    pub assured: bool,
    /// `[OFFLOAD]`: software flowtable offload.
    pub offload: bool,
    /// `[HW_OFFLOAD]`: hardware flowtable offload.
    pub hw_offload: bool,
}

/// One conntrack table entry, with its line number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ConntrackEntry {
    /// 1-based line number in the artifact.
    pub line: usize,
    /// Layer-3 family (from the extended prefix, else from the original source address).
    pub family: L3Family,
    /// Protocol name class.
    pub protocol: Protocol,
    /// IP protocol number as printed (6 for tcp, 112 for an `unknown` VRRP entry, ...).
    pub protocol_number: u8,
    /// Seconds until the entry expires.
    pub timeout: Option<u64>,
    /// State (tcp, sctp, dccp); `None` for stateless protocols.
    pub state: Option<ConntrackState>,
    /// Original direction tuple (as the first packet was seen).
    pub original: Tuple,
    /// Reply direction tuple (what the kernel expects back; `src` is the real endpoint after DNAT).
    pub reply: Tuple,
    /// Bracketed flags.
    pub flags: ConntrackFlags,
    /// `mark=`.
    pub mark: Option<u32>,
    /// `zone=`.
    pub zone: Option<u16>,
    /// `use=` (reference count).
    pub use_count: Option<u32>,
    /// `id=` (the conntrack id, with `-o id` or `-o extended,id`).
    pub id: Option<u32>,
    /// `secctx=` (SELinux context).
    pub secctx: Option<String>,
    /// `delta-time=` (seconds since creation, with `nf_conntrack_timestamp=1`).
    pub delta_time: Option<u64>,
    /// Bracketed flags this parser has no field for (e.g. `SEEN_REPLY`), verbatim.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_flags: Vec<String>,
    /// `key=value` fields this parser has no field for (e.g. `labels=`), verbatim and in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_fields: Vec<(String, String)>,
    /// The event kind, when the line comes from `conntrack -E` (`[NEW]`, `[UPDATE]`, `[DESTROY]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<ConntrackEvent>,
    /// `conntrack -E -o timestamp`'s `[seconds.micros]` prefix, verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_time: Option<String>,
}

/// A `conntrack -E` event kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConntrackEvent {
    /// `[NEW]`: the entry was created.
    New,
    /// `[UPDATE]`: state, timeout or flags changed.
    Update,
    /// `[DESTROY]`: the entry was removed (timed out, closed, or deleted).
    Destroy,
}

impl ConntrackEntry {
    /// Where the connection really goes when it was DNATed: the reply source, if it
    /// differs from the original destination (address or port).
    pub fn dnat_destination(&self) -> Option<(IpAddr, Option<u16>)> {
        if self.reply.src != self.original.dst || self.reply.sport != self.original.dport {
            Some((self.reply.src, self.reply.sport))
        } else {
            None
        }
    }

    /// The address the connection was SNATed/masqueraded to: the reply destination, if it
    /// differs from the original source (address or port).
    pub fn snat_source(&self) -> Option<(IpAddr, Option<u16>)> {
        if self.reply.dst != self.original.src || self.reply.dport != self.original.sport {
            Some((self.reply.dst, self.reply.dport))
        } else {
            None
        }
    }
}

/// What one line of a listing turned out to be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
// Boxing the entry would cost a heap allocation per line on the streaming hot path.
#[allow(clippy::large_enum_variant)]
pub enum ConntrackLine {
    /// A table entry.
    Entry(ConntrackEntry),
    /// conntrack's stderr summary, with the count it reports.
    Summary(u64),
    /// An empty or whitespace-only line.
    Blank,
    /// A line that is not understood.
    Unparsed(Unparsed),
}

/// Counts gathered while streaming a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ConntrackStreamStats {
    /// Lines read.
    pub lines: usize,
    /// Entries parsed.
    pub entries: usize,
    /// Lines kept as unparsed.
    pub unparsed: usize,
    /// The count conntrack's summary line reported (`N flow entries have been shown.`), if present.
    pub reported_count: Option<u64>,
}

/// A whole listing, collected in memory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ConntrackList {
    /// Entries in file order.
    pub entries: Vec<ConntrackEntry>,
    /// Lines not understood.
    pub unparsed: Vec<Unparsed>,
    /// The count conntrack's summary line reported, if present.
    pub reported_count: Option<u64>,
}

/// Parses a whole listing held in memory (`conntrack -L`, `-o extended`, `/proc/net/nf_conntrack`).
pub fn parse_conntrack_list(text: &str) -> ConntrackList {
    let mut list = ConntrackList::default();
    let mut splicer = Splicer::default();
    for (i, line) in text.lines().enumerate() {
        splicer.push(i + 1, line, &mut |item| match item {
            ConntrackLine::Entry(e) => list.entries.push(e),
            ConntrackLine::Summary(n) => list.reported_count = Some(n),
            ConntrackLine::Blank => {}
            ConntrackLine::Unparsed(u) => list.unparsed.push(u),
        });
    }
    splicer.finish(&mut |item| {
        if let ConntrackLine::Unparsed(u) = item {
            list.unparsed.push(u);
        }
    });
    list
}

/// Streams a listing from any reader, calling `f` with each entry or unparsed line.
///
/// Memory stays constant: one line buffer is reused and nothing is retained. Invalid UTF-8
/// lines become [`Unparsed`] (lossily decoded). Only I/O errors are returned as errors.
pub fn for_each_entry<R: BufRead>(
    mut reader: R,
    mut f: impl FnMut(Result<ConntrackEntry, Unparsed>),
) -> std::io::Result<ConntrackStreamStats> {
    let mut stats = ConntrackStreamStats::default();
    let mut buf = Vec::with_capacity(512);
    let mut splicer = Splicer::default();
    let mut emit = |item: ConntrackLine, stats: &mut ConntrackStreamStats| match item {
        ConntrackLine::Entry(e) => {
            stats.entries += 1;
            f(Ok(e));
        }
        ConntrackLine::Summary(n) => stats.reported_count = Some(n),
        ConntrackLine::Blank => {}
        ConntrackLine::Unparsed(u) => {
            stats.unparsed += 1;
            f(Err(u));
        }
    };
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        stats.lines += 1;
        let line_no = stats.lines;
        match std::str::from_utf8(&buf) {
            Ok(s) => splicer.push(line_no, s.trim_end_matches(['\n', '\r']), &mut |item| {
                emit(item, &mut stats)
            }),
            Err(_) => {
                let lossy = String::from_utf8_lossy(&buf);
                emit(
                    ConntrackLine::Unparsed(Unparsed::new(
                        line_no,
                        lossy.trim_end_matches(['\n', '\r']),
                        "line is not valid UTF-8",
                    )),
                    &mut stats,
                );
            }
        }
    }
    splicer.finish(&mut |item| emit(item, &mut stats));
    Ok(stats)
}

/// Re-joins a line that conntrack's unbuffered stderr summary cut in two.
///
/// When stdout and stderr share one capture file, the summary is written while stdout's
/// buffer is only partly flushed, so it lands in the middle of an entry:
/// `... sport=42076 dporconntrack v1.4.7 (conntrack-tools): 28 flow entries have been shown.`
/// followed by `t=8080 ...` on the next line. The summary is taken out and the two halves
/// are parsed as one entry, numbered by the line it started on.
#[derive(Default)]
struct Splicer {
    pending: Option<(usize, String)>,
}

impl Splicer {
    fn push(&mut self, line_no: usize, line: &str, f: &mut impl FnMut(ConntrackLine)) {
        if let Some((start, mut head)) = self.pending.take() {
            head.push_str(line);
            f(parse_conntrack_line(start, &head));
            return;
        }
        let parsed = parse_conntrack_line(line_no, line);
        // Only a line that failed can hold a cut-in summary (its words never parse as an
        // entry), so the substring search stays off the hot path.
        if matches!(parsed, ConntrackLine::Unparsed(_))
            && let Some(pos) = line.find("conntrack v")
            && pos > 0
            && let Some(n) = parse_summary(line[pos..].trim())
        {
            f(ConntrackLine::Summary(n));
            let head = &line[..pos];
            if !head.trim().is_empty() {
                self.pending = Some((line_no, head.to_string()));
            }
            return;
        }
        f(parsed);
    }

    fn finish(&mut self, f: &mut impl FnMut(ConntrackLine)) {
        if let Some((start, head)) = self.pending.take() {
            f(parse_conntrack_line(start, &head));
        }
    }
}

/// Recognises `conntrack v1.4.7 (conntrack-tools): 28 flow entries have been shown.`.
fn parse_summary(line: &str) -> Option<u64> {
    let rest = line.strip_prefix("conntrack v")?;
    let (_, after) = rest.split_once("): ")?;
    let (n, tail) = after.split_once(' ')?;
    if tail.starts_with("flow entries have been shown") {
        n.parse().ok()
    } else {
        None
    }
}

/// Parses one line of a listing (any form). `line_no` is 1-based.
pub fn parse_conntrack_line(line_no: usize, line: &str) -> ConntrackLine {
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return ConntrackLine::Blank;
    }
    if let Some(n) = parse_summary(trimmed) {
        return ConntrackLine::Summary(n);
    }
    let (time, event, body) = if trimmed.starts_with('[') {
        split_event(trimmed)
    } else {
        (None, None, trimmed)
    };
    if time.is_some() && event.is_none() {
        return ConntrackLine::Unparsed(Unparsed::new(
            line_no,
            line,
            "timestamp without a conntrack -E event",
        ));
    }
    match parse_entry(line_no, body) {
        Ok(mut e) => {
            e.event = event;
            e.event_time = time.map(str::to_string);
            ConntrackLine::Entry(e)
        }
        Err(reason) => ConntrackLine::Unparsed(Unparsed::new(line_no, line, reason)),
    }
}

fn parse_num<T: std::str::FromStr>(v: &str, what: &'static str) -> Result<T, &'static str> {
    v.parse().map_err(|_| what)
}

/// Parses an address; dotted quads take a hand-rolled path (the hot path of large tables),
/// with the same strictness as std (four octets, no leading zeros, each <= 255).
fn parse_ip(v: &str, what: &'static str) -> Result<IpAddr, &'static str> {
    let b = v.as_bytes();
    if b.contains(&b':') {
        return v
            .parse::<std::net::Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| what);
    }
    let mut octets = [0u8; 4];
    let mut n = 0;
    for part in b.split(|&c| c == b'.') {
        if n == 4 || part.is_empty() || part.len() > 3 || (part.len() > 1 && part[0] == b'0') {
            return Err(what);
        }
        let mut x: u16 = 0;
        for &d in part {
            if !d.is_ascii_digit() {
                return Err(what);
            }
            x = x * 10 + u16::from(d - b'0');
        }
        octets[n] = u8::try_from(x).map_err(|_| what)?;
        n += 1;
    }
    if n != 4 {
        return Err(what);
    }
    Ok(IpAddr::V4(std::net::Ipv4Addr::from(octets)))
}

/// `key=value` split on the first `=` (a byte search: tokens are short, and this runs
/// a dozen times per entry).
fn split_eq(tok: &str) -> Option<(&str, &str)> {
    let i = tok.bytes().position(|b| b == b'=')?;
    Some((&tok[..i], &tok[i + 1..]))
}

fn parse_key(v: &str) -> Result<u32, &'static str> {
    let r = match v.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => v.parse(),
    };
    r.map_err(|_| "bad GRE key")
}

fn parse_entry(line_no: usize, line: &str) -> Result<ConntrackEntry, &'static str> {
    let mut toks = line.split_ascii_whitespace().peekable();
    let mut first = toks.next().ok_or("empty line")?;
    let mut family = None;
    if first == "ipv4" || first == "ipv6" {
        family = Some(if first == "ipv4" {
            L3Family::Ipv4
        } else {
            L3Family::Ipv6
        });
        let l3num = toks.next().ok_or("missing layer-3 protocol number")?;
        l3num
            .parse::<u8>()
            .map_err(|_| "bad layer-3 protocol number")?;
        first = toks.next().ok_or("missing protocol")?;
    }
    let protocol = Protocol::from_name(first).ok_or("unknown protocol name")?;
    let protocol_number: u8 = parse_num(
        toks.next().ok_or("missing protocol number")?,
        "bad protocol number",
    )?;
    let mut timeout = None;
    if let Some(t) = toks.peek()
        && t.bytes().all(|b| b.is_ascii_digit())
    {
        timeout = Some(parse_num(t, "bad timeout")?);
        toks.next();
    }
    let mut state = None;
    if let Some(t) = toks.peek()
        && !t.as_bytes().contains(&b'=')
        && !t.starts_with('[')
    {
        state = Some(ConntrackState::from_name(t));
        toks.next();
    }

    let mut original: Option<Tuple> = None;
    let mut reply: Option<Tuple> = None;
    // Which tuple `dst=`/ports/counters apply to; None once entry-level keys start, which
    // is how the trailing conntrack `id=` is told apart from an ICMP tuple's `id=`.
    let mut in_reply = false;
    let mut in_tuple = false;
    let mut flags = ConntrackFlags::default();
    let mut mark = None;
    let mut zone = None;
    let mut use_count = None;
    let mut id = None;
    let mut secctx = None;
    let mut delta_time = None;
    let mut other_flags = Vec::new();
    let mut other_fields = Vec::new();

    for tok in toks {
        if let Some(flag) = tok.strip_prefix('[') {
            let flag = flag.strip_suffix(']').ok_or("unterminated [flag]")?;
            match flag {
                "UNREPLIED" => flags.unreplied = true,
                "ASSURED" => flags.assured = true,
                "OFFLOAD" => flags.offload = true,
                "HW_OFFLOAD" => flags.hw_offload = true,
                other => other_flags.push(other.to_string()),
            }
            continue;
        }
        let (key, val) = split_eq(tok).ok_or("token is neither key=value nor [FLAG]")?;
        if key == "src" {
            let addr = parse_ip(val, "bad src address")?;
            if original.is_none() {
                original = Some(Tuple::new(addr));
            } else if reply.is_none() {
                reply = Some(Tuple::new(addr));
                in_reply = true;
            } else {
                return Err("more than two tuples");
            }
            in_tuple = true;
            continue;
        }
        let tuple_key = matches!(
            key,
            "dst" | "sport" | "dport" | "type" | "code" | "srckey" | "dstkey" | "packets" | "bytes"
        ) || (key == "id"
            && in_tuple
            && matches!(protocol, Protocol::Icmp | Protocol::Icmpv6));
        if tuple_key {
            let t = if in_reply {
                reply.as_mut()
            } else {
                original.as_mut()
            };
            let t = t.ok_or("tuple field before src=")?;
            match key {
                "dst" => t.dst = parse_ip(val, "bad dst address")?,
                "sport" => t.sport = Some(parse_num(val, "bad sport")?),
                "dport" => t.dport = Some(parse_num(val, "bad dport")?),
                "type" => {
                    t.icmp.get_or_insert_default().icmp_type =
                        Some(parse_num(val, "bad icmp type")?)
                }
                "code" => {
                    t.icmp.get_or_insert_default().code = Some(parse_num(val, "bad icmp code")?)
                }
                "id" => {
                    let icmp = t.icmp.get_or_insert_default();
                    if icmp.id.is_some() {
                        // A second id= in the same tuple cannot be the ICMP id.
                        id = Some(parse_num(val, "bad id")?);
                        in_tuple = false;
                    } else {
                        icmp.id = Some(parse_num(val, "bad icmp id")?);
                    }
                }
                "srckey" => t.src_key = Some(parse_key(val)?),
                "dstkey" => t.dst_key = Some(parse_key(val)?),
                "packets" => t.packets = Some(parse_num(val, "bad packets counter")?),
                _ => t.bytes = Some(parse_num(val, "bad bytes counter")?),
            }
            continue;
        }
        in_tuple = false;
        match key {
            "mark" => mark = Some(parse_num(val, "bad mark")?),
            "zone" => zone = Some(parse_num(val, "bad zone")?),
            "use" => use_count = Some(parse_num(val, "bad use")?),
            "id" => id = Some(parse_num(val, "bad id")?),
            "secctx" => secctx = Some(val.to_string()),
            "delta-time" => delta_time = Some(parse_num(val, "bad delta-time")?),
            _ => other_fields.push((key.to_string(), val.to_string())),
        }
    }
    let original = original.ok_or("no src= tuple")?;
    let reply = reply.ok_or("no reply tuple")?;
    let family = family.unwrap_or(match original.src {
        IpAddr::V4(_) => L3Family::Ipv4,
        IpAddr::V6(_) => L3Family::Ipv6,
    });
    Ok(ConntrackEntry {
        line: line_no,
        family,
        protocol,
        protocol_number,
        timeout,
        state,
        original,
        reply,
        flags,
        mark,
        zone,
        use_count,
        id,
        secctx,
        delta_time,
        other_flags,
        other_fields,
        event: None,
        event_time: None,
    })
}

/// Splits `conntrack -E`'s prefixes off: an optional `[1796306105.025051]\t` timestamp
/// (`-o timestamp`) and the right-aligned `[NEW]`/`[UPDATE]`/`[DESTROY]` event.
fn split_event(line: &str) -> (Option<&str>, Option<ConntrackEvent>, &str) {
    let mut rest = line;
    let mut time = None;
    if let Some(r) = rest.strip_prefix('[')
        && let Some((ts, after)) = r.split_once(']')
        && !ts.is_empty()
        && ts.bytes().all(|b| b.is_ascii_digit() || b == b'.')
    {
        time = Some(ts);
        rest = after.trim_start();
    }
    for (tag, ev) in [
        ("[NEW]", ConntrackEvent::New),
        ("[UPDATE]", ConntrackEvent::Update),
        ("[DESTROY]", ConntrackEvent::Destroy),
    ] {
        if let Some(r) = rest.strip_prefix(tag) {
            return (time, Some(ev), r.trim_start());
        }
    }
    (time, None, line)
}

/// Entry counts by protocol, state and destination, built while streaming ([`ConntrackTally::add`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ConntrackTally {
    /// Total entries.
    pub total: u64,
    /// Entries per protocol name (`tcp`, `udp`, ...).
    pub by_protocol: BTreeMap<String, u64>,
    /// Entries per `protocol/STATE` (`tcp/ESTABLISHED`; stateless protocols as `udp/-`).
    pub by_state: BTreeMap<String, u64>,
    /// Entries per original destination address (what clients asked for, e.g. a Service VIP).
    pub by_destination: BTreeMap<IpAddr, u64>,
    /// Entries flagged `[UNREPLIED]`.
    pub unreplied: u64,
    /// Entries flagged `[ASSURED]`.
    pub assured: u64,
    /// Entries whose reply source differs from the original destination (DNAT).
    pub dnat: u64,
}

impl ConntrackTally {
    /// Counts one entry.
    pub fn add(&mut self, e: &ConntrackEntry) {
        self.total += 1;
        let proto = e.protocol.as_str();
        bump(&mut self.by_protocol, proto);
        let state = e.state.as_ref().map_or("-", |s| s.as_str());
        // Reuse the key of an existing bucket; only a new bucket allocates.
        let mut key = [0u8; 64];
        let n = proto.len() + 1 + state.len();
        if n <= key.len() {
            key[..proto.len()].copy_from_slice(proto.as_bytes());
            key[proto.len()] = b'/';
            key[proto.len() + 1..n].copy_from_slice(state.as_bytes());
            bump(
                &mut self.by_state,
                std::str::from_utf8(&key[..n]).unwrap_or("?/?"),
            );
        } else {
            bump(&mut self.by_state, &format!("{proto}/{state}"));
        }
        *self.by_destination.entry(e.original.dst).or_insert(0) += 1;
        self.unreplied += u64::from(e.flags.unreplied);
        self.assured += u64::from(e.flags.assured);
        self.dnat += u64::from(e.dnat_destination().is_some());
    }

    /// The `n` destinations with most entries, most first (ties by address).
    pub fn top_destinations(&self, n: usize) -> Vec<(IpAddr, u64)> {
        let mut v: Vec<(IpAddr, u64)> = self.by_destination.iter().map(|(a, c)| (*a, *c)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(n);
        v
    }
}

/// The selection options of `conntrack -L` (`-s`, `-d`, `-r`, `-q`, `-p`, `--state`, `-m`, `-w`);
/// unset fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ConntrackFilter {
    /// `-s`: original source address.
    pub orig_src: Option<IpAddr>,
    /// `-d`: original destination address.
    pub orig_dst: Option<IpAddr>,
    /// `-r`: reply source address (the real endpoint after DNAT).
    pub reply_src: Option<IpAddr>,
    /// `-q`: reply destination address.
    pub reply_dst: Option<IpAddr>,
    /// `-p`: protocol.
    pub protocol: Option<Protocol>,
    /// `--state`: state name, e.g. `ESTABLISHED`.
    pub state: Option<ConntrackState>,
    /// `--dport`: original destination port.
    pub orig_dport: Option<u16>,
    /// `-m`: mark.
    pub mark: Option<u32>,
    /// `-w`: zone.
    pub zone: Option<u16>,
}

impl ConntrackFilter {
    /// True when the entry passes every set option.
    pub fn matches(&self, e: &ConntrackEntry) -> bool {
        fn ok<T: PartialEq>(want: &Option<T>, have: T) -> bool {
            want.as_ref().is_none_or(|w| *w == have)
        }
        ok(&self.orig_src, e.original.src)
            && ok(&self.orig_dst, e.original.dst)
            && ok(&self.reply_src, e.reply.src)
            && ok(&self.reply_dst, e.reply.dst)
            && ok(&self.protocol, e.protocol)
            && self
                .state
                .as_ref()
                .is_none_or(|s| e.state.as_ref() == Some(s))
            && self.orig_dport.is_none_or(|p| e.original.dport == Some(p))
            && self.mark.is_none_or(|m| e.mark == Some(m))
            && self.zone.is_none_or(|z| e.zone.unwrap_or(0) == z)
    }
}

fn bump(map: &mut BTreeMap<String, u64>, key: &str) {
    if let Some(v) = map.get_mut(key) {
        *v += 1;
    } else {
        map.insert(key.to_string(), 1);
    }
}

/// Per-CPU counters from `conntrack -S` or `/proc/net/stat/nf_conntrack`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CpuStats {
    /// 1-based line number.
    pub line: usize,
    /// CPU index (`cpu=` in `-S`; the row index in the /proc table).
    pub cpu: u32,
    /// Every counter by the kernel's name (`found`, `insert_failed`, `drop`, `early_drop`, ...).
    pub counters: BTreeMap<String, u64>,
}

impl CpuStats {
    /// A counter by name, if this kernel reports it.
    pub fn counter(&self, name: &str) -> Option<u64> {
        self.counters.get(name).copied()
    }

    /// Sums every counter over CPUs. `entries` is a table-wide gauge the kernel repeats on
    /// each row, so it is taken once (the maximum), not summed.
    pub fn totals(cpus: &[CpuStats]) -> BTreeMap<String, u64> {
        let mut out: BTreeMap<String, u64> = BTreeMap::new();
        for c in cpus {
            for (k, v) in &c.counters {
                let slot = out.entry(k.clone()).or_insert(0);
                if k == "entries" {
                    *slot = (*slot).max(*v);
                } else {
                    *slot = slot.saturating_add(*v);
                }
            }
        }
        out
    }
}

/// Parsed per-CPU statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ConntrackStats {
    /// One record per CPU, in file order.
    pub cpus: Vec<CpuStats>,
    /// Lines not understood.
    pub unparsed: Vec<Unparsed>,
}

impl ConntrackStats {
    /// Sums over CPUs (see [`CpuStats::totals`]).
    pub fn totals(&self) -> BTreeMap<String, u64> {
        CpuStats::totals(&self.cpus)
    }
}

/// Parses `conntrack -S` (`cpu=0 found=0 invalid=0 insert=0 insert_failed=0 drop=0 ...`).
pub fn parse_conntrack_stats(text: &str) -> ConntrackStats {
    let mut out = ConntrackStats::default();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        if parse_summary(line.trim()).is_some() {
            continue;
        }
        match parse_stats_line(line_no, line) {
            Ok(c) => out.cpus.push(c),
            Err(reason) => out.unparsed.push(Unparsed::new(line_no, line, reason)),
        }
    }
    out
}

fn parse_stats_line(line_no: usize, line: &str) -> Result<CpuStats, &'static str> {
    let mut cpu = None;
    let mut counters = BTreeMap::new();
    for tok in line.split_ascii_whitespace() {
        let (k, v) = tok.split_once('=').ok_or("token is not key=value")?;
        let v: u64 = v.parse().map_err(|_| "counter is not a number")?;
        if k == "cpu" {
            cpu = Some(u32::try_from(v).map_err(|_| "cpu index out of range")?);
        } else {
            counters.insert(k.to_string(), v);
        }
    }
    Ok(CpuStats {
        line: line_no,
        cpu: cpu.ok_or("no cpu= field")?,
        counters,
    })
}

/// Parses the kernel's `/proc/net/stat/nf_conntrack`: a header naming the columns, then
/// one row of hex counters per CPU. The column set varies by kernel; the header decides.
pub fn parse_proc_stat(text: &str) -> ConntrackStats {
    let mut out = ConntrackStats::default();
    let mut header: Option<Vec<&str>> = None;
    let mut row = 0u32;
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let Some(cols) = header.as_ref() else {
            let names: Vec<&str> = line.split_ascii_whitespace().collect();
            if names.first() == Some(&"entries")
                || names
                    .iter()
                    .all(|n| n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
            {
                header = Some(names);
            } else {
                out.unparsed.push(Unparsed::new(
                    line_no,
                    line,
                    "expected the header row of column names",
                ));
            }
            continue;
        };
        let vals: Vec<&str> = line.split_ascii_whitespace().collect();
        if vals.len() != cols.len() {
            out.unparsed.push(Unparsed::new(
                line_no,
                line,
                "row has a different number of columns than the header",
            ));
            continue;
        }
        let mut counters = BTreeMap::new();
        let mut ok = true;
        for (name, v) in cols.iter().zip(&vals) {
            match u64::from_str_radix(v, 16) {
                Ok(n) => {
                    counters.insert((*name).to_string(), n);
                }
                Err(_) => {
                    ok = false;
                    break;
                }
            }
        }
        if ok {
            out.cpus.push(CpuStats {
                line: line_no,
                cpu: row,
                counters,
            });
            row += 1;
        } else {
            out.unparsed
                .push(Unparsed::new(line_no, line, "counter is not hexadecimal"));
        }
    }
    out
}

/// Error from [`parse_conntrack_count`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CountError {
    /// The output holds no number.
    #[error("conntrack -C output is empty")]
    Empty,
    /// The first line is not a number.
    #[error("conntrack -C line {line} is not a number: {text:?}")]
    NotANumber {
        /// 1-based line number.
        line: usize,
        /// The offending text.
        text: String,
    },
}

/// Parses `conntrack -C` (a single number; a trailing stderr summary line is ignored).
pub fn parse_conntrack_count(text: &str) -> Result<u64, CountError> {
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || parse_summary(t).is_some() {
            continue;
        }
        return t.parse().map_err(|_| CountError::NotANumber {
            line: i + 1,
            text: t.chars().take(80).collect(),
        });
    }
    Err(CountError::Empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icmp_id_versus_conntrack_id() {
        let l = "icmp     1 29 src=10.0.0.1 dst=10.0.0.2 type=8 code=0 id=7 src=10.0.0.2 dst=10.0.0.1 type=0 code=0 id=7 mark=0 use=1 id=99";
        let ConntrackLine::Entry(e) = parse_conntrack_line(3, l) else {
            panic!("not an entry")
        };
        assert_eq!(e.original.icmp.unwrap().id, Some(7));
        assert_eq!(e.reply.icmp.unwrap().id, Some(7));
        assert_eq!(e.id, Some(99));
        assert_eq!(e.line, 3);
    }

    #[test]
    fn fast_ipv4_matches_std() {
        for s in [
            "10.0.0.1",
            "255.255.255.255",
            "0.0.0.0",
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3",
            "1.2.3.4.5",
            "1..2.3",
            "",
            "a.b.c.d",
            "::1",
            "fd00:0010::1",
        ] {
            assert_eq!(parse_ip(s, "x").ok(), s.parse::<IpAddr>().ok(), "{s}");
        }
    }

    proptest::proptest! {
        #[test]
        fn fast_ipv4_agrees_with_std(s in "[0-9.]{0,17}") {
            proptest::prop_assert_eq!(parse_ip(&s, "x").ok(), s.parse::<IpAddr>().ok());
        }
    }

    /// Fields the capture machine cannot produce (no SELinux, no flowtable offload), in the
    /// layout of conntrack-tools' `nfct_snprintf` (flags after the reply tuple, then
    /// mark/secctx/zone/use/id).
    #[test]
    fn offload_secctx_labels_and_unknown_flags() {
        let l = "ipv4     2 tcp      6 src=10.0.0.1 dst=10.0.0.2 sport=1000 dport=80 src=10.0.0.2 dst=10.0.0.1 sport=80 dport=1000 [OFFLOAD] [HW_OFFLOAD] [SEEN_REPLY] mark=5 secctx=system_u:object_r:unlabeled_t:s0 labels=0x1 zone=3 use=2 id=77";
        let ConntrackLine::Entry(e) = parse_conntrack_line(9, l) else {
            panic!("not an entry")
        };
        assert!(e.flags.offload && e.flags.hw_offload && !e.flags.assured);
        assert_eq!(e.timeout, None, "offloaded flows may print no timeout");
        assert_eq!(e.state, None);
        assert_eq!(
            e.secctx.as_deref(),
            Some("system_u:object_r:unlabeled_t:s0")
        );
        assert_eq!(e.other_flags, ["SEEN_REPLY"]);
        assert_eq!(e.other_fields, [("labels".to_string(), "0x1".to_string())]);
        assert_eq!(
            (e.mark, e.zone, e.use_count, e.id),
            (Some(5), Some(3), Some(2), Some(77))
        );
        assert_eq!(e.dnat_destination(), None);
        assert_eq!(e.snat_source(), None);
    }

    #[test]
    fn summary_line() {
        assert_eq!(
            parse_summary("conntrack v1.4.7 (conntrack-tools): 28 flow entries have been shown."),
            Some(28)
        );
        assert_eq!(
            parse_summary("conntrack v1.4.7 (conntrack-tools): bogus"),
            None
        );
    }

    #[test]
    fn garbage_is_unparsed() {
        for l in [
            "tcp",
            "tcp 6 1 ESTABLISHED src=1.2.3.4",
            "bogus 1 2",
            "tcp 6 1 src=x",
        ] {
            assert!(
                matches!(parse_conntrack_line(1, l), ConntrackLine::Unparsed(_)),
                "{l}"
            );
        }
    }
}

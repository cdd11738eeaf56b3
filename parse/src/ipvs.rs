//! IPVS parsers: `ipvsadm -Ln` (also `--stats`, `--rate`, `-t VIP:PORT`), `ipvsadm -Lnc`,
//! and the kernel's own `/proc/net/ip_vs` and `/proc/net/ip_vs_conn` (hex addresses/ports).
//!
//! Every list form maps into one model, [`IpvsTable`]: virtual services keyed by
//! [`ServiceKey`] (protocol + VIP + port, or firewall mark), each with its [`RealServer`]s
//! (forward method, weight — 0 means draining — and active/inactive connections).
//! `--stats` and `--rate` fill [`VirtualService::stats`]/[`VirtualService::rate`];
//! [`IpvsTable::merge`] folds those into the `-Ln` table. Connection listings map into
//! [`IpvsConnection`] whichever form they come from.
//!
//! [`parse_ipvs_list`] and [`parse_ipvs_connections`] recognise the form by its lines, so
//! the same function reads the ipvsadm output and the /proc file. ipvsadm's abbreviated
//! counters (`12345K`, `98M`, `3G`, `1T`) are expanded and marked
//! [`IpvsCounters::approximate`]. In `/proc/net/ip_vs` the kernel prints the persistence
//! timeout in jiffies, not seconds; it is kept raw in [`Persistence::timeout_jiffies`].
//!
//! Guarantees: no input panics; every non-blank line is a header, a service, a real
//! server, a connection, or an [`Unparsed`] record with its 1-based line number.

use std::io::BufRead;
use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

use super::Unparsed;

/// Transport protocol of a service or connection, as ipvsadm names it.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum IpvsProtocol {
    /// `TCP`.
    Tcp,
    /// `UDP`.
    Udp,
    /// `SCTP`.
    Sctp,
    /// `IP`: a persistence template in the connection table.
    Ip,
    /// Anything else (`AH`, `ESP`, `ICMP`, ...), verbatim.
    Other(String),
}

impl IpvsProtocol {
    /// Parses `TCP`/`UDP`/`SCTP`/`IP` (or keeps the name).
    pub fn from_name(s: &str) -> IpvsProtocol {
        match s {
            "TCP" => IpvsProtocol::Tcp,
            "UDP" => IpvsProtocol::Udp,
            "SCTP" => IpvsProtocol::Sctp,
            "IP" => IpvsProtocol::Ip,
            other => IpvsProtocol::Other(other.to_string()),
        }
    }

    /// The name ipvsadm prints.
    pub fn as_str(&self) -> &str {
        match self {
            IpvsProtocol::Tcp => "TCP",
            IpvsProtocol::Udp => "UDP",
            IpvsProtocol::Sctp => "SCTP",
            IpvsProtocol::Ip => "IP",
            IpvsProtocol::Other(s) => s,
        }
    }
}

/// What identifies a virtual service.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ServiceKey {
    /// `TCP  10.96.0.1:443`.
    Address {
        /// Protocol.
        protocol: IpvsProtocol,
        /// Virtual IP.
        address: IpAddr,
        /// Virtual port.
        port: u16,
    },
    /// `FWM  42` (firewall-mark service).
    Fwmark {
        /// The mark.
        mark: u32,
        /// `FWM  42 IPv6`: an IPv6 fwmark service.
        ipv6: bool,
    },
}

/// Packet forwarding method of a real server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum ForwardMethod {
    /// `Masq` (NAT; what kube-proxy uses).
    Masq,
    /// `Route` (direct routing).
    Route,
    /// `Tunnel` (IPIP/GUE).
    Tunnel,
    /// `Local` (the director itself).
    Local,
    /// Any other name, verbatim.
    Other(String),
}

impl ForwardMethod {
    /// Parses the `Forward` column.
    pub fn from_name(s: &str) -> ForwardMethod {
        match s {
            "Masq" => ForwardMethod::Masq,
            "Route" => ForwardMethod::Route,
            "Tunnel" => ForwardMethod::Tunnel,
            "Local" => ForwardMethod::Local,
            other => ForwardMethod::Other(other.to_string()),
        }
    }
}

/// Five counters of `--stats` (totals) or `--rate` (per second).
///
/// For `--stats`: conns, in/out packets, in/out bytes. For `--rate`: CPS, InPPS, OutPPS,
/// InBPS, OutBPS.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct IpvsCounters {
    /// `Conns` or `CPS`.
    pub conns: u64,
    /// `InPkts` or `InPPS`.
    pub in_packets: u64,
    /// `OutPkts` or `OutPPS`.
    pub out_packets: u64,
    /// `InBytes` or `InBPS`.
    pub in_bytes: u64,
    /// `OutBytes` or `OutBPS`.
    pub out_bytes: u64,
    /// True when ipvsadm abbreviated a value (K/M/G/T suffix) so it is a lower bound.
    pub approximate: bool,
}

/// Service persistence (`persistent 10800`, kube-proxy's ClientIP session affinity).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Persistence {
    /// Timeout in seconds (ipvsadm form).
    pub timeout_seconds: Option<u32>,
    /// Timeout in jiffies (`/proc/net/ip_vs` form; divide by the kernel's HZ).
    pub timeout_jiffies: Option<u64>,
    /// `mask X` (ipvsadm) or the hex netmask (/proc), verbatim.
    pub netmask: Option<String>,
    /// `pe NAME` (persistence engine, e.g. sip).
    pub engine: Option<String>,
}

/// One real server (`  -> RemoteAddress:Port ...`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RealServer {
    /// 1-based line number.
    pub line: usize,
    /// Real server address.
    pub address: IpAddr,
    /// Real server port (0 for fwmark services without a port).
    pub port: u16,
    /// Forward method (absent in `--stats`/`--rate`).
    pub forward: Option<ForwardMethod>,
    /// Weight (0 = draining: no new connections).
    pub weight: Option<i32>,
    /// `ActiveConn`.
    pub active_conns: Option<u64>,
    /// `InActConn`.
    pub inactive_conns: Option<u64>,
    /// `--stats` counters.
    pub stats: Option<IpvsCounters>,
    /// `--rate` counters.
    pub rate: Option<IpvsCounters>,
    /// `PersistConn` (`--persistent-conn`): persistence templates pointing at this server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_conns: Option<u64>,
    /// `Uthreshold`/`Lthreshold` (`--thresholds`); 0 means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thresholds: Option<(u32, u32)>,
}

impl RealServer {
    /// True when the weight is 0: the server is draining and gets no new connections.
    pub fn is_draining(&self) -> bool {
        self.weight == Some(0)
    }
}

/// One virtual service with its real servers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct VirtualService {
    /// 1-based line number.
    pub line: usize,
    /// Identity of the service.
    pub key: ServiceKey,
    /// Scheduler (`rr`, `wlc`, `sh`, ...; absent in `--stats`/`--rate`).
    pub scheduler: Option<String>,
    /// Persistence, when the service has it.
    pub persistence: Option<Persistence>,
    /// `ops`: one-packet scheduling (UDP).
    pub one_packet: bool,
    /// Other flag words after the scheduler, verbatim.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_flags: Vec<String>,
    /// `--stats` counters.
    pub stats: Option<IpvsCounters>,
    /// `--rate` counters.
    pub rate: Option<IpvsCounters>,
    /// Real servers in listed order.
    pub real_servers: Vec<RealServer>,
}

/// Which listing a table came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IpvsListKind {
    /// `ipvsadm -Ln`.
    List,
    /// `ipvsadm -Ln --stats`.
    Stats,
    /// `ipvsadm -Ln --rate`.
    Rate,
    /// `/proc/net/ip_vs` (hex).
    Proc,
    /// `ipvsadm -Ln --persistent-conn` (Weight PersistConn ActiveConn InActConn).
    PersistentConn,
    /// `ipvsadm -Ln --thresholds` (Uthreshold Lthreshold ActiveConn InActConn).
    Thresholds,
}

/// A parsed service listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct IpvsTable {
    /// Which form it was.
    pub kind: IpvsListKind,
    /// `IP Virtual Server version 1.2.1` → `1.2.1`.
    pub version: Option<String>,
    /// `(size=4096)`: connection hash table size.
    pub conn_table_size: Option<u64>,
    /// Services in listed order.
    pub services: Vec<VirtualService>,
    /// Lines not understood.
    pub unparsed: Vec<Unparsed>,
}

impl IpvsTable {
    /// The service with this key.
    pub fn service(&self, key: &ServiceKey) -> Option<&VirtualService> {
        self.services.iter().find(|s| &s.key == key)
    }

    /// Copies `--stats`/`--rate` counters (and any scheduler/forward/weight this table
    /// lacks) from `other` into matching services and real servers of `self`.
    pub fn merge(&mut self, other: &IpvsTable) {
        for o in &other.services {
            let Some(s) = self.services.iter_mut().find(|s| s.key == o.key) else {
                continue;
            };
            s.stats = s.stats.or(o.stats);
            s.rate = s.rate.or(o.rate);
            if s.scheduler.is_none() {
                s.scheduler.clone_from(&o.scheduler);
            }
            for ors in &o.real_servers {
                let Some(rs) = s
                    .real_servers
                    .iter_mut()
                    .find(|r| r.address == ors.address && r.port == ors.port)
                else {
                    continue;
                };
                rs.stats = rs.stats.or(ors.stats);
                rs.rate = rs.rate.or(ors.rate);
                if rs.forward.is_none() {
                    rs.forward.clone_from(&ors.forward);
                }
                rs.weight = rs.weight.or(ors.weight);
                rs.active_conns = rs.active_conns.or(ors.active_conns);
                rs.inactive_conns = rs.inactive_conns.or(ors.inactive_conns);
                rs.persistent_conns = rs.persistent_conns.or(ors.persistent_conns);
                rs.thresholds = rs.thresholds.or(ors.thresholds);
            }
        }
    }
}

/// Parses `ipvsadm -Ln` (plain, `--stats`, `--rate`, or one service with `-t`) or the
/// kernel's `/proc/net/ip_vs`; the form is recognised from its lines.
pub fn parse_ipvs_list(text: &str) -> IpvsTable {
    let mut t = IpvsTable {
        kind: IpvsListKind::List,
        version: None,
        conn_table_size: None,
        services: Vec::new(),
        unparsed: Vec::new(),
    };
    let mut hex: Option<bool> = None;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("IP Virtual Server version ") {
            let (ver, size) = rest.split_once(' ').unwrap_or((rest, ""));
            t.version = Some(ver.to_string());
            t.conn_table_size = size
                .trim()
                .strip_prefix("(size=")
                .and_then(|s| s.strip_suffix(')'))
                .and_then(|s| s.parse().ok());
            continue;
        }
        if line.starts_with("Prot LocalAddress:Port") {
            let cols: Vec<&str> = line.split_ascii_whitespace().collect();
            if cols.contains(&"Conns") {
                t.kind = IpvsListKind::Stats;
                hex = Some(false);
            } else if cols.contains(&"CPS") {
                t.kind = IpvsListKind::Rate;
                hex = Some(false);
            } else if cols.contains(&"PersistConn") {
                t.kind = IpvsListKind::PersistentConn;
                hex = Some(false);
            } else if cols.contains(&"Uthreshold") {
                t.kind = IpvsListKind::Thresholds;
                hex = Some(false);
            }
            continue;
        }
        if line.starts_with("-> RemoteAddress:Port") {
            // The kernel's title is single-spaced; ipvsadm pads the columns.
            if line == "-> RemoteAddress:Port Forward Weight ActiveConn InActConn" {
                t.kind = IpvsListKind::Proc;
                hex = Some(true);
            } else if hex.is_none() {
                hex = Some(false);
            }
            continue;
        }
        let result = if let Some(rest) = line.strip_prefix("->") {
            match t.services.last_mut() {
                Some(svc) => parse_real_server(line_no, rest, t.kind, hex.unwrap_or(false))
                    .map(|rs| svc.real_servers.push(rs)),
                None => Err("real server line before any service"),
            }
        } else {
            parse_service(line_no, line, t.kind, &mut hex).map(|s| t.services.push(s))
        };
        if let Err(reason) = result {
            t.unparsed.push(Unparsed::new(line_no, raw, reason));
        }
    }
    if hex == Some(true) {
        t.kind = IpvsListKind::Proc;
    }
    t
}

/// Parses an ipvsadm count, expanding the K/M/G/T abbreviations of `print_largenum`.
fn parse_large(tok: &str, approx: &mut bool) -> Result<u64, &'static str> {
    let (digits, mult) = match tok.as_bytes().last() {
        Some(b'K') => (&tok[..tok.len() - 1], 1_000u64),
        Some(b'M') => (&tok[..tok.len() - 1], 1_000_000),
        Some(b'G') => (&tok[..tok.len() - 1], 1_000_000_000),
        Some(b'T') => (&tok[..tok.len() - 1], 1_000_000_000_000),
        _ => (tok, 1),
    };
    if mult > 1 {
        *approx = true;
    }
    let n: u64 = digits.parse().map_err(|_| "counter is not a number")?;
    n.checked_mul(mult).ok_or("counter overflows")
}

fn parse_counters(toks: &[&str]) -> Result<IpvsCounters, &'static str> {
    if toks.len() != 5 {
        return Err("expected five counters");
    }
    let mut c = IpvsCounters::default();
    let mut approx = false;
    c.conns = parse_large(toks[0], &mut approx)?;
    c.in_packets = parse_large(toks[1], &mut approx)?;
    c.out_packets = parse_large(toks[2], &mut approx)?;
    c.in_bytes = parse_large(toks[3], &mut approx)?;
    c.out_bytes = parse_large(toks[4], &mut approx)?;
    c.approximate = approx;
    Ok(c)
}

/// `10.0.0.1:80`, `[fd00::1]:443` (decimal port).
fn parse_addr_port(s: &str) -> Result<(IpAddr, u16), &'static str> {
    let (a, p) = if let Some(rest) = s.strip_prefix('[') {
        let (a, p) = rest.split_once("]:").ok_or("bad [IPv6]:port")?;
        (a, p)
    } else {
        s.rsplit_once(':').ok_or("address without :port")?
    };
    let addr: IpAddr = a.parse().map_err(|_| "bad address")?;
    let port: u16 = p.parse().map_err(|_| "bad port")?;
    Ok((addr, port))
}

/// `0A600001:01BB`, `[fd00:0010:...:0001]:01BB` (hex port).
fn parse_hex_addr_port(s: &str) -> Result<(IpAddr, u16), &'static str> {
    let (a, p) = if let Some(rest) = s.strip_prefix('[') {
        rest.split_once("]:").ok_or("bad [IPv6]:port")?
    } else {
        s.split_once(':').ok_or("address without :port")?
    };
    let addr = parse_hex_addr(a)?;
    let port = u16::from_str_radix(p, 16).map_err(|_| "bad hex port")?;
    Ok((addr, port))
}

/// `0A600001` (IPv4, host order hex) or a full-form IPv6 address.
fn parse_hex_addr(a: &str) -> Result<IpAddr, &'static str> {
    if a.len() == 8 && !a.contains(':') {
        let v = u32::from_str_radix(a, 16).map_err(|_| "bad hex IPv4 address")?;
        Ok(IpAddr::V4(Ipv4Addr::from(v)))
    } else {
        a.parse().map_err(|_| "bad IPv6 address")
    }
}

fn looks_hex_addr_port(s: &str) -> bool {
    if let Some(rest) = s.strip_prefix('[') {
        // %pI6 prints all eight groups with four digits each.
        rest.split_once("]:").is_some_and(|(a, p)| {
            a.len() == 39 && a.split(':').all(|g| g.len() == 4) && p.len() == 4
        })
    } else {
        s.len() == 13
            && s.as_bytes().get(8) == Some(&b':')
            && s.bytes()
                .enumerate()
                .all(|(i, b)| i == 8 || b.is_ascii_hexdigit())
    }
}

fn parse_service(
    line_no: usize,
    line: &str,
    kind: IpvsListKind,
    hex: &mut Option<bool>,
) -> Result<VirtualService, &'static str> {
    let toks: Vec<&str> = line.split_ascii_whitespace().collect();
    let (&proto, rest) = toks.split_first().ok_or("empty line")?;
    let (&addr, mut rest) = rest.split_first().ok_or("service line without address")?;
    let key = if proto == "FWM" {
        let is_hex = match *hex {
            Some(h) => h,
            // The kernel prints the mark as %08X; ipvsadm prints it in decimal.
            None => addr.len() == 8,
        };
        let mark = if is_hex {
            u32::from_str_radix(addr, 16).map_err(|_| "bad hex fwmark")?
        } else {
            addr.parse().map_err(|_| "bad fwmark")?
        };
        let mut ipv6 = false;
        if rest.first() == Some(&"IPv6") {
            ipv6 = true;
            rest = &rest[1..];
        }
        ServiceKey::Fwmark { mark, ipv6 }
    } else {
        if !matches!(
            proto,
            "TCP" | "UDP" | "SCTP" | "AH" | "ESP" | "ICMP" | "ICMPv6"
        ) {
            return Err("unknown service protocol");
        }
        let is_hex = match *hex {
            Some(h) => h,
            None => {
                let h = looks_hex_addr_port(addr);
                *hex = Some(h);
                h
            }
        };
        let (address, port) = if is_hex {
            parse_hex_addr_port(addr)?
        } else {
            parse_addr_port(addr)?
        };
        ServiceKey::Address {
            protocol: IpvsProtocol::from_name(proto),
            address,
            port,
        }
    };
    let mut svc = VirtualService {
        line: line_no,
        key,
        scheduler: None,
        persistence: None,
        one_packet: false,
        other_flags: Vec::new(),
        stats: None,
        rate: None,
        real_servers: Vec::new(),
    };
    match kind {
        IpvsListKind::Stats => {
            svc.stats = Some(parse_counters(rest)?);
            return Ok(svc);
        }
        IpvsListKind::Rate => {
            svc.rate = Some(parse_counters(rest)?);
            return Ok(svc);
        }
        IpvsListKind::List
        | IpvsListKind::Proc
        | IpvsListKind::PersistentConn
        | IpvsListKind::Thresholds => {}
    }
    let (&sched, mut flags) = rest.split_first().ok_or("service line without scheduler")?;
    svc.scheduler = Some(sched.to_string());
    let proc_form = hex.unwrap_or(false);
    while let Some((&f, tail)) = flags.split_first() {
        flags = tail;
        match f {
            "ops" => svc.one_packet = true,
            "persistent" => {
                let (&n, tail) = flags.split_first().ok_or("persistent without timeout")?;
                flags = tail;
                let p = svc.persistence.get_or_insert(Persistence {
                    timeout_seconds: None,
                    timeout_jiffies: None,
                    netmask: None,
                    engine: None,
                });
                if proc_form {
                    p.timeout_jiffies = Some(n.parse().map_err(|_| "bad persistence timeout")?);
                    if let Some((&m, tail)) = flags.split_first() {
                        p.netmask = Some(m.to_string());
                        flags = tail;
                    }
                } else {
                    p.timeout_seconds = Some(n.parse().map_err(|_| "bad persistence timeout")?);
                }
            }
            "mask" | "pe" => {
                let (&v, tail) = flags.split_first().ok_or("flag without value")?;
                flags = tail;
                let Some(p) = svc.persistence.as_mut() else {
                    return Err("mask/pe without persistent");
                };
                if f == "mask" {
                    p.netmask = Some(v.to_string());
                } else {
                    p.engine = Some(v.to_string());
                }
            }
            other => svc.other_flags.push(other.to_string()),
        }
    }
    Ok(svc)
}

fn parse_real_server(
    line_no: usize,
    rest: &str,
    kind: IpvsListKind,
    hex: bool,
) -> Result<RealServer, &'static str> {
    let toks: Vec<&str> = rest.split_ascii_whitespace().collect();
    let (&addr, rest) = toks
        .split_first()
        .ok_or("real server line without address")?;
    let (address, port) = if hex {
        parse_hex_addr_port(addr)?
    } else {
        parse_addr_port(addr)?
    };
    let mut rs = RealServer {
        line: line_no,
        address,
        port,
        forward: None,
        weight: None,
        active_conns: None,
        inactive_conns: None,
        stats: None,
        rate: None,
        persistent_conns: None,
        thresholds: None,
    };
    match kind {
        IpvsListKind::PersistentConn => {
            let [w, p, a, i] = rest else {
                return Err("expected Weight PersistConn ActiveConn InActConn");
            };
            rs.weight = Some(w.parse().map_err(|_| "bad weight")?);
            rs.persistent_conns = Some(p.parse().map_err(|_| "bad PersistConn")?);
            rs.active_conns = Some(a.parse().map_err(|_| "bad ActiveConn")?);
            rs.inactive_conns = Some(i.parse().map_err(|_| "bad InActConn")?);
        }
        IpvsListKind::Thresholds => {
            let [u, l, a, i] = rest else {
                return Err("expected Uthreshold Lthreshold ActiveConn InActConn");
            };
            rs.thresholds = Some((
                u.parse().map_err(|_| "bad Uthreshold")?,
                l.parse().map_err(|_| "bad Lthreshold")?,
            ));
            rs.active_conns = Some(a.parse().map_err(|_| "bad ActiveConn")?);
            rs.inactive_conns = Some(i.parse().map_err(|_| "bad InActConn")?);
        }
        IpvsListKind::Stats => rs.stats = Some(parse_counters(rest)?),
        IpvsListKind::Rate => rs.rate = Some(parse_counters(rest)?),
        IpvsListKind::List | IpvsListKind::Proc => {
            let [fwd, w, a, i] = rest else {
                return Err("expected Forward Weight ActiveConn InActConn");
            };
            if !fwd.starts_with(|c: char| c.is_ascii_alphabetic()) {
                return Err("Forward column is not a method name");
            }
            rs.forward = Some(ForwardMethod::from_name(fwd));
            rs.weight = Some(w.parse().map_err(|_| "bad weight")?);
            rs.active_conns = Some(a.parse().map_err(|_| "bad ActiveConn")?);
            rs.inactive_conns = Some(i.parse().map_err(|_| "bad InActConn")?);
        }
    }
    Ok(rs)
}

/// One IPVS connection (a row of `ipvsadm -Lnc` or `/proc/net/ip_vs_conn`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct IpvsConnection {
    /// 1-based line number.
    pub line: usize,
    /// Protocol (`IP` rows are persistence templates).
    pub protocol: IpvsProtocol,
    /// Seconds until the entry expires.
    pub expires_seconds: u64,
    /// IPVS state (`ESTABLISHED`, `TIME_WAIT`, `UDP`, `NONE`, ...).
    pub state: String,
    /// Client address.
    pub client: IpAddr,
    /// Client port.
    pub client_port: u16,
    /// Virtual address.
    pub virtual_address: IpAddr,
    /// Virtual port.
    pub virtual_port: u16,
    /// Real server chosen.
    pub destination: IpAddr,
    /// Real server port.
    pub destination_port: u16,
    /// Persistence engine name, when present.
    pub pe_name: Option<String>,
    /// Persistence engine data, when present.
    pub pe_data: Option<String>,
}

impl IpvsConnection {
    /// True for persistence templates (protocol `IP`), which are not real connections.
    pub fn is_template(&self) -> bool {
        self.protocol == IpvsProtocol::Ip
    }
}

/// A parsed connection listing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct IpvsConnections {
    /// Connections in listed order.
    pub connections: Vec<IpvsConnection>,
    /// Lines not understood.
    pub unparsed: Vec<Unparsed>,
}

/// What one line of a connection listing turned out to be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum IpvsConnectionLine {
    /// A connection.
    Connection(IpvsConnection),
    /// A title line (`IPVS connection entries`, `pro expire ...`, `Pro FromIP ...`).
    Header,
    /// An empty line.
    Blank,
    /// A line that is not understood.
    Unparsed(Unparsed),
}

/// Parses `ipvsadm -Lnc` or `/proc/net/ip_vs_conn` (recognised per line).
pub fn parse_ipvs_connections(text: &str) -> IpvsConnections {
    let mut out = IpvsConnections::default();
    for (i, line) in text.lines().enumerate() {
        match parse_connection_line(i + 1, line) {
            IpvsConnectionLine::Connection(c) => out.connections.push(c),
            IpvsConnectionLine::Unparsed(u) => out.unparsed.push(u),
            IpvsConnectionLine::Header | IpvsConnectionLine::Blank => {}
        }
    }
    out
}

/// Streams a connection listing from any reader, calling `f` per connection or unparsed line;
/// returns the number of lines read.
pub fn for_each_connection<R: BufRead>(
    mut reader: R,
    mut f: impl FnMut(Result<IpvsConnection, Unparsed>),
) -> std::io::Result<usize> {
    let mut buf = Vec::with_capacity(256);
    let mut n = 0;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            return Ok(n);
        }
        n += 1;
        let text = String::from_utf8_lossy(&buf);
        match parse_connection_line(n, text.trim_end_matches(['\n', '\r'])) {
            IpvsConnectionLine::Connection(c) => f(Ok(c)),
            IpvsConnectionLine::Unparsed(u) => f(Err(u)),
            IpvsConnectionLine::Header | IpvsConnectionLine::Blank => {}
        }
    }
}

/// Parses one line of `ipvsadm -Lnc` or `/proc/net/ip_vs_conn`. `line_no` is 1-based.
pub fn parse_connection_line(line_no: usize, line: &str) -> IpvsConnectionLine {
    let t = line.trim();
    if t.is_empty() {
        return IpvsConnectionLine::Blank;
    }
    if t == "IPVS connection entries"
        || t.starts_with("pro expire ")
        || t.starts_with("Pro FromIP ")
    {
        return IpvsConnectionLine::Header;
    }
    match parse_conn(line_no, t) {
        Ok(c) => IpvsConnectionLine::Connection(c),
        Err(reason) => IpvsConnectionLine::Unparsed(Unparsed::new(line_no, line, reason)),
    }
}

fn parse_conn(line_no: usize, t: &str) -> Result<IpvsConnection, &'static str> {
    let toks: Vec<&str> = t.split_ascii_whitespace().collect();
    if toks.len() < 6 {
        return Err("too few columns for a connection");
    }
    let protocol = IpvsProtocol::from_name(toks[0]);
    if (toks.len() >= 9 && !toks[1].contains(':')) || toks[1].len() == 39 {
        // /proc: Pro FromIP FPrt ToIP TPrt DestIP DPrt State Expires [PEName PEData]
        if toks.len() < 9 {
            return Err("too few columns for /proc/net/ip_vs_conn");
        }
        let port = |s: &str| u16::from_str_radix(s, 16).map_err(|_| "bad hex port");
        return Ok(IpvsConnection {
            line: line_no,
            protocol,
            client: parse_hex_addr(toks[1])?,
            client_port: port(toks[2])?,
            virtual_address: parse_hex_addr(toks[3])?,
            virtual_port: port(toks[4])?,
            destination: parse_hex_addr(toks[5])?,
            destination_port: port(toks[6])?,
            state: toks[7].to_string(),
            expires_seconds: toks[8].parse().map_err(|_| "bad Expires")?,
            pe_name: toks.get(9).map(|s| s.to_string()),
            pe_data: toks.get(10).map(|s| s.to_string()),
        });
    }
    // ipvsadm: pro expire state source virtual destination [pe_name pe_data]
    let expires_seconds = parse_expire(toks[1])?;
    let (client, client_port) = parse_addr_port(toks[3])?;
    let (virtual_address, virtual_port) = parse_addr_port(toks[4])?;
    let (destination, destination_port) = parse_addr_port(toks[5])?;
    Ok(IpvsConnection {
        line: line_no,
        protocol,
        expires_seconds,
        state: toks[2].to_string(),
        client,
        client_port,
        virtual_address,
        virtual_port,
        destination,
        destination_port,
        pe_name: toks.get(6).map(|s| s.to_string()),
        pe_data: toks.get(7).map(|s| s.to_string()),
    })
}

/// `MM:SS` (minutes may exceed two digits) or plain seconds.
fn parse_expire(s: &str) -> Result<u64, &'static str> {
    match s.split_once(':') {
        Some((m, sec)) => {
            let m: u64 = m.parse().map_err(|_| "bad expire minutes")?;
            let sec: u64 = sec.parse().map_err(|_| "bad expire seconds")?;
            if sec >= 60 {
                return Err("bad expire seconds");
            }
            m.checked_mul(60)
                .and_then(|v| v.checked_add(sec))
                .ok_or("expire overflows")
        }
        None => s.parse().map_err(|_| "bad expire"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_numbers() {
        let mut a = false;
        assert_eq!(parse_large("12K", &mut a), Ok(12_000));
        assert!(a);
        let mut b = false;
        assert_eq!(parse_large("99", &mut b), Ok(99));
        assert!(!b);
        assert!(parse_large("K", &mut b).is_err());
    }

    #[test]
    fn hex_addresses() {
        assert_eq!(
            parse_hex_addr_port("0A600001:01BB"),
            Ok(("10.96.0.1".parse().unwrap(), 443))
        );
        assert!(looks_hex_addr_port("0A600001:01BB"));
        assert!(!looks_hex_addr_port("10.96.0.1:443"));
    }

    #[test]
    fn expire() {
        assert_eq!(parse_expire("14:58"), Ok(898));
        assert_eq!(parse_expire("179:53"), Ok(10793));
        assert!(parse_expire("1:99").is_err());
    }
}

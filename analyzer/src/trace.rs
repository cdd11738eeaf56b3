//! `netsnap-analyze trace`: one packet walked through the node's dataplane, offline.
//!
//! The walk follows the kernel's order for the path the packet takes: the source pod's
//! routes → its veth → the host side (bridge or routed) → netfilter PREROUTING (raw, mangle,
//! nat, with kube-proxy's Service and endpoint chains and their probabilities) → the
//! routing decision after DNAT (`ip rule` order, longest prefix, route type) → INPUT or
//! FORWARD (mangle, filter) → POSTROUTING (mangle, nat: masquerade/SNAT) → delivery to a
//! pod's veth or out of a device. Rules are evaluated in order by
//! [`crate::facts::nfeval`]; what the bundle cannot decide forks into branches, each with
//! its assumptions. Conntrack entries that match the flow are listed: a packet of an
//! existing connection follows its entry, not the rules.
//!
//! Pure: [`TraceInput`] (facts plus the parsed rules, routes and conntrack entries) in, a
//! [`Trace`] out; [`load`] builds the input from a bundle, `report::trace` renders.

use std::collections::BTreeMap;
use std::net::IpAddr;

use netsnap_bundle::{Bundle, layout};
use serde::Serialize;

use crate::facts::Facts;
use crate::facts::model::{PodFacts, Source};
use crate::facts::nfeval::{
    EvalPath, Mark, Packet, Stage, StagedPath, TableIndex, Verdict, evaluate_stages, in_cidr,
};
use crate::parse::conntrack::ConntrackEntry;
use crate::parse::ip::{Route, Rules};
use crate::parse::iptables::IptablesDump;

/// Version of the JSON layout of [`Trace`].
pub const TRACE_SCHEMA_VERSION: u32 = 1;

/// Errors the user can fix (bad `--from`/`--to`).
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The endpoint does not parse or names nothing in the bundle.
    #[error("{0}")]
    Endpoint(String),
}

/// Where the packet starts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum From {
    /// A pod on this node (its own network namespace).
    Pod {
        /// `namespace/name`.
        pod: String,
        /// Its IP.
        ip: IpAddr,
        /// Its netns id.
        netns: Option<String>,
        /// The host side of its veth.
        host_veth: Option<String>,
    },
    /// The node itself (a host-network process): the OUTPUT path.
    Host {
        /// The address.
        ip: IpAddr,
    },
    /// Anything else: arrives on the node's uplink.
    External {
        /// The address.
        ip: IpAddr,
    },
}

/// Where the packet goes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct To {
    /// Destination address.
    pub ip: IpAddr,
    /// Destination port.
    pub port: Option<u16>,
    /// Protocol (`tcp`, `udp`).
    pub proto: String,
    /// What the address is: `Service ns/name:port`, `pod ns/name`, `node`, or empty.
    pub names: String,
}

/// A network namespace's routes as the walk needs them.
#[derive(Debug, Clone, Default)]
pub struct NetnsRoutes {
    /// Namespace id.
    pub id: String,
    /// The artifact the routes come from (evidence).
    pub path: String,
    /// Routes of every table.
    pub routes: Vec<Route>,
}

/// Everything the walk reads.
#[derive(Debug, Default)]
pub struct TraceInput {
    /// The live IPv4 iptables save: artifact path and parsed dump.
    pub iptables: Option<(String, IptablesDump)>,
    /// The host namespace's routes.
    pub host: Option<NetnsRoutes>,
    /// Pod namespaces' routes by netns id.
    pub pod_netns: BTreeMap<String, NetnsRoutes>,
    /// `ip rule` (artifact path and rules); the kernel's default rules when absent.
    pub ip_rules: Option<(String, Rules)>,
    /// Conntrack entries whose original tuple matches the flow (source address may be
    /// unknown), with the artifact path.
    pub conntrack: Option<(String, Vec<ConntrackEntry>)>,
}

/// One step of a branch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hop {
    /// Stage (`pod route`, `veth`, `raw PREROUTING`, `nat PREROUTING`, `route`, …).
    pub stage: String,
    /// What happened, one line.
    pub detail: String,
    /// Evidence.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<Source>,
    /// For a netfilter hop: every rule that matched (and the policy), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<crate::facts::nfeval::Step>,
}

/// How a branch ends.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// `delivered`, `local`, `sent`, `dropped`, `rejected`, `no_route`, `blackholed`,
    /// `unknown`.
    pub kind: String,
    /// One line: `delivered to pod default/web-1 (netns …, veth …)`.
    pub detail: String,
}

/// One way the packet can go (endpoints chosen at random, unknown matches assumed).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Branch {
    /// Probability among kube-proxy's random endpoint choices.
    pub probability: f64,
    /// What the walk assumed about matches it could not decide.
    pub assumptions: Vec<String>,
    /// Hops in order.
    pub hops: Vec<Hop>,
    /// The end.
    pub outcome: Outcome,
}

/// A conntrack entry of the same flow.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CtMatch {
    /// The entry, as `proto src:sport -> dst:dport` and its reply source.
    pub entry: String,
    /// Where a packet of this entry goes (the reply's source = the DNAT target).
    pub reply_from: String,
    /// `[UNREPLIED]`.
    pub unreplied: bool,
    /// A note: the entry points at an address that is no longer an endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Evidence.
    pub source: Source,
}

/// The whole trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trace {
    /// Layout version ([`TRACE_SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// Always `netsnap-trace`.
    pub kind: &'static str,
    /// Node name.
    pub node: String,
    /// Source.
    pub from: From,
    /// Destination.
    pub to: To,
    /// The branches, most likely first.
    pub branches: Vec<Branch>,
    /// Conntrack entries of this flow.
    pub conntrack: Vec<CtMatch>,
    /// What the walk could not use (missing artifacts) and other remarks.
    pub notes: Vec<String>,
}

/// Parses `--from`: `namespace/pod`, a pod name, or `IP[:PORT]`.
pub fn resolve_from(facts: &Facts, s: &str) -> Result<(From, Option<u16>), TraceError> {
    let (host, port) = split_port(s);
    if let Ok(ip) = host.parse::<IpAddr>() {
        if let Some(p) = pod_by_ip(facts, &ip.to_string()) {
            return Ok((pod_from(p, ip), port));
        }
        let local = facts.node.addresses.iter().any(|a| a == &ip.to_string())
            || facts.links.iter().any(|l| {
                l.netns == layout::HOST_NETNS
                    && l.addresses
                        .iter()
                        .any(|a| a.split('/').next() == Some(&ip.to_string()))
            });
        return Ok((
            if local {
                From::Host { ip }
            } else {
                From::External { ip }
            },
            port,
        ));
    }
    let p = pod_by_name(facts, host)?;
    let ip =
        p.ip.as_deref()
            .and_then(|i| i.parse().ok())
            .ok_or_else(|| TraceError::Endpoint(format!("pod {} has no IP", p.key)))?;
    Ok((pod_from(p, ip), port))
}

fn pod_from(p: &PodFacts, ip: IpAddr) -> From {
    From::Pod {
        pod: p.key.clone(),
        ip,
        netns: p.netns.clone(),
        host_veth: p.host_veth.clone(),
    }
}

/// Parses `--to`: `VIP:PORT[/PROTO]`, `IP:PORT[/PROTO]`, `namespace/pod[:PORT]`.
pub fn resolve_to(facts: &Facts, s: &str) -> Result<To, TraceError> {
    let (body, proto) = match s.rsplit_once('/') {
        Some((b, p)) if matches!(p, "tcp" | "udp" | "sctp") => (b, p.to_string()),
        _ => (s, "tcp".to_string()),
    };
    let (host, port) = split_port(body);
    let ip: IpAddr = match host.parse() {
        Ok(ip) => ip,
        Err(_) => {
            let p = pod_by_name(facts, host)?;
            p.ip.as_deref()
                .and_then(|i| i.parse().ok())
                .ok_or_else(|| TraceError::Endpoint(format!("pod {} has no IP", p.key)))?
        }
    };
    let mut names = Vec::new();
    for svc in &facts.services {
        for p in &svc.ports {
            if p.vip == ip.to_string()
                && port.is_none_or(|x| i64::from(x) == p.port)
                && p.protocol.eq_ignore_ascii_case(&proto)
            {
                names.push(format!("Service {}:{}", svc.key, p.name));
            }
        }
    }
    if let Some(p) = pod_by_ip(facts, &ip.to_string()) {
        names.push(format!("pod {}", p.key));
    }
    Ok(To {
        ip,
        port,
        proto,
        names: names.join(", "),
    })
}

fn split_port(s: &str) -> (&str, Option<u16>) {
    if let Some(rest) = s.strip_prefix('[')
        && let Some((h, p)) = rest.split_once("]:")
    {
        return (h, p.parse().ok());
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => match p.parse() {
            Ok(port) => (h, Some(port)),
            Err(_) => (s, None),
        },
        _ => (s, None),
    }
}

fn pod_by_ip<'a>(facts: &'a Facts, ip: &str) -> Option<&'a PodFacts> {
    facts
        .pods
        .iter()
        .filter(|p| {
            !p.host_network && (p.ip.as_deref() == Some(ip) || p.ips.iter().any(|i| i == ip))
        })
        .max_by_key(|p| (p.local, p.live))
}

fn pod_by_name<'a>(facts: &'a Facts, s: &str) -> Result<&'a PodFacts, TraceError> {
    let found: Vec<&PodFacts> = facts
        .pods
        .iter()
        .filter(|p| p.key == s || (!s.contains('/') && p.name == s))
        .collect();
    match found.as_slice() {
        [p] => Ok(p),
        [] => Err(TraceError::Endpoint(format!(
            "{s:?} is neither an IP address nor a pod in the bundle"
        ))),
        _ => Err(TraceError::Endpoint(format!(
            "{s:?} names {} pods: use namespace/name",
            found.len()
        ))),
    }
}

/// Longest-prefix lookup in one table; `table` is `main`, `local`, or a number.
fn lookup<'a>(routes: &'a [Route], table: &str, dst: IpAddr) -> Option<&'a Route> {
    routes
        .iter()
        .filter(|r| r.table == table || (table == "main" && r.table.is_empty()))
        .filter_map(|r| {
            let len = if r.is_default() {
                0
            } else {
                let (net, len) = r.dst_net()?;
                if in_cidr(&format!("{net}/{len}"), dst) != Some(true) {
                    return None;
                }
                len
            };
            if r.is_default() && !same_family(r, dst) {
                return None;
            }
            Some((len, r.metric.unwrap_or(0), r))
        })
        .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
        .map(|(_, _, r)| r)
}

fn same_family(r: &Route, dst: IpAddr) -> bool {
    match r.family {
        Some(crate::parse::ip::Family::Inet6) => dst.is_ipv6(),
        Some(_) => dst.is_ipv4(),
        None => true,
    }
}

/// A routing decision: the route, the table and the rule that chose it.
struct Decision<'a> {
    route: Option<&'a Route>,
    table: String,
    rule: String,
}

/// `ip rule` order, then longest prefix in the rule's table; without rules, the kernel's
/// defaults (local, main, default).
fn route_decision<'a>(
    routes: &'a [Route],
    rules: Option<&Rules>,
    pkt: &Packet,
    iif: Option<&str>,
) -> Decision<'a> {
    let Some(dst) = pkt.dst else {
        return Decision {
            route: None,
            table: "main".into(),
            rule: "no destination".into(),
        };
    };
    let default_rules = [(0, "local"), (32766, "main"), (32767, "default")];
    let list: Vec<(u32, String, bool)> = match rules {
        Some(r) if !r.rules.is_empty() => r
            .rules
            .iter()
            .filter(|rule| {
                let from_ok = rule.from.as_deref().is_none_or(|f| {
                    f == "all" || pkt.src.is_some_and(|s| in_cidr(f, s) == Some(true))
                });
                let to_ok = rule
                    .to
                    .as_deref()
                    .is_none_or(|t| t == "all" || in_cidr(t, dst) == Some(true));
                let iif_ok = rule.iif.as_deref().is_none_or(|i| iif == Some(i));
                let mark_ok = rule.fwmark.as_deref().is_none_or(|m| {
                    let (v, mask) = m.split_once('/').unwrap_or((m, "0xffffffff"));
                    let p = |x: &str| u32::from_str_radix(x.trim_start_matches("0x"), 16).ok();
                    match (p(v), p(mask)) {
                        (Some(v), Some(mask)) => pkt.mark.value & mask == v,
                        _ => false,
                    }
                });
                (from_ok && to_ok && iif_ok && mark_ok) != rule.not && rule.oif.is_none()
            })
            .filter_map(|rule| {
                rule.lookup
                    .clone()
                    .map(|t| (rule.priority, t, true))
                    .or_else(|| rule.action.clone().map(|a| (rule.priority, a, false)))
            })
            .collect(),
        _ => default_rules
            .iter()
            .map(|(p, t)| (*p, t.to_string(), true))
            .collect(),
    };
    for (prio, table, is_lookup) in list {
        if !is_lookup {
            return Decision {
                route: None,
                table,
                rule: format!("rule {prio}"),
            };
        }
        if let Some(r) = lookup(routes, &table, dst)
            && r.route_type != "throw"
        {
            return Decision {
                route: Some(r),
                table,
                rule: format!("rule {prio}"),
            };
        }
    }
    Decision {
        route: None,
        table: "main".into(),
        rule: "no rule matched".into(),
    }
}

fn route_text(r: &Route) -> String {
    let mut s = String::new();
    if r.route_type != "unicast" && !r.route_type.is_empty() {
        s.push_str(&r.route_type);
        s.push(' ');
    }
    s.push_str(&r.dst);
    if let Some(g) = r.gateway {
        s.push_str(&format!(" via {g}"));
    }
    if let Some(d) = &r.dev {
        s.push_str(&format!(" dev {d}"));
    }
    if !r.nexthops.is_empty() {
        let nh: Vec<String> = r
            .nexthops
            .iter()
            .map(|n| {
                format!(
                    "{}{}",
                    n.gateway.map(|g| format!("via {g} ")).unwrap_or_default(),
                    n.dev
                        .as_deref()
                        .map(|d| format!("dev {d}"))
                        .unwrap_or_default()
                )
            })
            .collect();
        s.push_str(&format!(" nexthops [{}]", nh.join("; ")));
    }
    s
}

fn route_source(n: &NetnsRoutes, r: Option<&Route>) -> Source {
    match r.and_then(|r| r.line) {
        Some(l) => Source::line(&n.path, l as u64),
        None => Source {
            path: n.path.clone(),
            line: None,
            node: None,
        },
    }
}

/// Hops of one netfilter pass, one per table, with its verdict and deciding rule.
fn nf_hops(path: &str, staged: &StagedPath, hooks: &str) -> (Vec<Hop>, Vec<String>) {
    let mut hops = Vec::new();
    let mut assumptions = Vec::new();
    for (table, chain, p) in &staged.hops {
        // Tables without rules on this hook say nothing worth a line.
        if p.steps.is_empty() && p.verdict == Verdict::Accept {
            continue;
        }
        assumptions.extend(p.assumptions.iter().map(ToString::to_string));
        hops.push(Hop {
            stage: format!("{table} {chain}"),
            detail: nf_detail(p),
            evidence: p
                .decided_at
                .iter()
                .map(|(_, l)| Source::line(path, *l as u64))
                .collect(),
            rules: p.steps.clone(),
        });
    }
    if hops.is_empty() {
        hops.push(Hop {
            stage: hooks.to_string(),
            detail: "no rule matched: ACCEPT".into(),
            evidence: Vec::new(),
            rules: Vec::new(),
        });
    }
    (hops, assumptions)
}

fn nf_detail(p: &EvalPath) -> String {
    let mut chains: Vec<&str> = Vec::new();
    for s in &p.steps {
        if chains.last() != Some(&s.chain.as_str()) {
            chains.push(&s.chain);
        }
    }
    let marks: Vec<&str> = p
        .steps
        .iter()
        .filter(|s| s.action.starts_with("MARK"))
        .map(|s| s.action.as_str())
        .collect();
    let mut d = format!("{}: {}", chains.join(" > "), p.verdict);
    if !marks.is_empty() {
        d.push_str(&format!(" ({})", marks.join(", ")));
    }
    if let Some((c, l)) = &p.decided_at
        && p.steps
            .last()
            .is_some_and(|s| s.action.starts_with("policy"))
    {
        d = format!("{d} (policy of {c}, line {l})");
    }
    d
}

/// Walks the packet. `sport` is the source port when given.
pub fn trace(facts: &Facts, input: &TraceInput, from: From, sport: Option<u16>, to: To) -> Trace {
    let mut notes = Vec::new();
    let src_ip = match &from {
        From::Pod { ip, .. } | From::Host { ip } | From::External { ip } => *ip,
    };
    let local_addr = |ip: IpAddr| {
        facts.links.iter().any(|l| {
            l.netns == layout::HOST_NETNS
                && l.addresses
                    .iter()
                    .any(|a| a.split('/').next() == Some(&ip.to_string()))
        }) || facts.node.addresses.iter().any(|a| a == &ip.to_string())
    };
    let mut pkt = Packet {
        src: Some(src_ip),
        dst: Some(to.ip),
        proto: Some(to.proto.clone()),
        sport: sport.or(Some(40000)),
        dport: to.port,
        ctstate: Some("NEW".into()),
        src_local: Some(matches!(from, From::Host { .. })),
        dst_local: Some(local_addr(to.ip)),
        mark: Mark::known(0),
        ..Packet::default()
    };
    if sport.is_none() {
        notes.push("source port not given: 40000 assumed".into());
    }
    let mut prefix: Vec<Hop> = Vec::new();
    let mut early: Option<Outcome> = None;
    match &from {
        From::Pod {
            pod,
            netns,
            host_veth,
            ..
        } => {
            match netns.as_ref().and_then(|n| input.pod_netns.get(n)) {
                Some(n) => {
                    let r = lookup(&n.routes, "main", to.ip);
                    prefix.push(Hop {
                        stage: "pod route".into(),
                        detail: match r {
                            Some(r) => format!("{} (netns {})", route_text(r), n.id),
                            None => format!("no route to {} in netns {}", to.ip, n.id),
                        },
                        evidence: vec![route_source(n, r)],
                        rules: Vec::new(),
                    });
                    if r.is_none() {
                        early = Some(Outcome {
                            kind: "no_route".into(),
                            detail: format!("no route to {} in the pod's netns", to.ip),
                        });
                    }
                }
                None => notes.push(format!(
                    "pod {pod}: its netns routes are not in the bundle; assumed to leave through its veth"
                )),
            }
            let link = host_veth.as_ref().and_then(|v| {
                facts
                    .links
                    .iter()
                    .find(|l| l.netns == layout::HOST_NETNS && &l.name == v)
            });
            let master = link.and_then(|l| l.master.clone());
            prefix.push(Hop {
                stage: "veth".into(),
                detail: match (host_veth, &master) {
                    (Some(v), Some(m)) => format!("host side {v}, bridge {m}"),
                    (Some(v), None) => format!("host side {v} (routed)"),
                    (None, _) => "host side of the veth unknown".into(),
                },
                evidence: link.and_then(|l| l.source.clone()).into_iter().collect(),
                rules: Vec::new(),
            });
            // Bridged: the IP layer sees the bridge as the input device.
            pkt.in_iface = master.or_else(|| host_veth.clone());
        }
        From::External { .. } => {
            pkt.in_iface = facts.node.uplink.as_ref().map(|u| u.name.clone());
            prefix.push(Hop {
                stage: "ingress".into(),
                detail: format!(
                    "arrives on {}",
                    pkt.in_iface.as_deref().unwrap_or("the uplink (unknown)")
                ),
                evidence: Vec::new(),
                rules: Vec::new(),
            });
        }
        From::Host { .. } => {}
    }
    let mut branches = Vec::new();
    if let Some(o) = early {
        branches.push(Branch {
            probability: 1.0,
            assumptions: Vec::new(),
            hops: prefix.clone(),
            outcome: o,
        });
    } else {
        walk_host(facts, input, &from, pkt, prefix, &mut branches, &mut notes);
    }
    branches.sort_by(|a, b| b.probability.total_cmp(&a.probability));
    let conntrack = conntrack_matches(facts, input, &to);
    Trace {
        schema_version: TRACE_SCHEMA_VERSION,
        kind: "netsnap-trace",
        node: facts.node.name.clone(),
        from,
        to,
        branches,
        conntrack,
        notes,
    }
}

/// The host part: netfilter hooks in order with routing in between.
fn walk_host(
    facts: &Facts,
    input: &TraceInput,
    from: &From,
    pkt: Packet,
    prefix: Vec<Hop>,
    out: &mut Vec<Branch>,
    notes: &mut Vec<String>,
) {
    let empty = IptablesDump {
        generator: None,
        tables: Vec::new(),
        warnings: Vec::new(),
        unparsed: Vec::new(),
        lines: Default::default(),
    };
    let (path, dump) = match &input.iptables {
        Some((p, d)) => (p.as_str(), d),
        None => {
            notes.push("no iptables save in the bundle: netfilter hooks not evaluated".into());
            ("", &empty)
        }
    };
    let idx: BTreeMap<&str, TableIndex<'_>> = dump
        .tables
        .iter()
        .map(|t| (t.name.as_str(), TableIndex::new(t)))
        .collect();
    let stages = |hooks: &[(&'static str, &'static str)]| -> Vec<(&'static str, &'static str)> {
        hooks
            .iter()
            .filter(|(t, _)| idx.contains_key(t))
            .copied()
            .collect()
    };
    let run = |hooks: &[(&'static str, &'static str)], p: &Packet| {
        let list = stages(hooks);
        let st: Vec<Stage<'_, '_>> = list
            .iter()
            .map(|(t, c)| Stage {
                index: &idx[t],
                chain: c,
            })
            .collect();
        evaluate_stages(&st, p)
    };
    let first: &[(&str, &str)] = if matches!(from, From::Host { .. }) {
        &[("raw", "OUTPUT"), ("mangle", "OUTPUT"), ("nat", "OUTPUT")]
    } else {
        &[
            ("raw", "PREROUTING"),
            ("mangle", "PREROUTING"),
            ("nat", "PREROUTING"),
        ]
    };
    let (pre, cut) = run(first, &pkt);
    if cut {
        notes.push("too many branches: some were not explored".into());
    }
    for sp in pre {
        let (mut hops, mut assumptions) = nf_hops(path, &sp, "PREROUTING");
        hops.splice(0..0, prefix.iter().cloned());
        let last = sp.last();
        let prob: f64 = sp.hops.iter().map(|h| h.2.probability).product();
        let mut p = last.map_or_else(|| pkt.clone(), |l| l.packet.clone());
        if let Some(l) = last
            && l.verdict.blocks()
        {
            out.push(blocked(hops, assumptions, prob, l, path));
            continue;
        }
        // The nft and IPVS kube-proxy dataplanes when iptables did not DNAT.
        let mut picks: Vec<(f64, Option<IpAddr>, Option<u16>, Hop)> = Vec::new();
        if p.dst == pkt.dst {
            picks = other_dataplanes(facts, &p);
            if picks.is_empty()
                && let Some(key) = service_port_key(facts, &p)
            {
                let note = format!(
                    "{key} is a Service port, but no kube-proxy rule DNATed the packet: it is routed to the VIP itself"
                );
                if !notes.contains(&note) {
                    notes.push(note);
                }
            }
        }
        // IPVS schedules at LOCAL_IN, after mangle and filter INPUT, and only a VIP that is
        // a local address of the node (bound to kube-ipvs0) gets there: otherwise the
        // packet is routed to the VIP itself. For a host process, IPVS sits at LOCAL_OUT
        // (after nat OUTPUT), so its path is the usual OUTPUT one.
        let via_input = !matches!(from, From::Host { .. });
        let vip_local = p.dst.is_some_and(|d| is_local(facts, input, d));
        if via_input && !vip_local && picks.iter().any(|x| x.3.stage == "ipvs") {
            picks.retain(|x| x.3.stage != "ipvs");
            let note = format!(
                "{} has an IPVS virtual server, but the VIP is no local address of the node (not bound to kube-ipvs0): IPVS never sees the packet, it is routed to the VIP itself",
                service_port_key(facts, &p).unwrap_or_default()
            );
            if !notes.contains(&note) {
                notes.push(note);
            }
        }
        if picks.is_empty() {
            picks.push((
                1.0,
                p.dst,
                p.dport,
                Hop {
                    stage: String::new(),
                    detail: String::new(),
                    evidence: Vec::new(),
                    rules: Vec::new(),
                },
            ));
        }
        if via_input && picks.iter().any(|x| x.3.stage == "ipvs") {
            ipvs_from_input(
                facts,
                input,
                from,
                &p,
                &picks,
                (hops, std::mem::take(&mut assumptions), prob),
                &run,
                path,
                out,
            );
            continue;
        }
        for (pp, dst, dport, hop) in picks {
            let mut hops = hops.clone();
            if !hop.stage.is_empty() {
                hops.push(hop);
            }
            p.dst = dst;
            p.dport = dport;
            p.dst_local = dst.map(|d| is_local(facts, input, d));
            after_prerouting(
                facts,
                input,
                from,
                false,
                p.clone(),
                hops,
                assumptions.clone(),
                prob * pp,
                &run,
                path,
                out,
            );
        }
        assumptions.clear();
    }
}

/// The Service port (`VIP:port/proto`) the packet is addressed to, if any.
fn service_port_key(facts: &Facts, p: &Packet) -> Option<String> {
    let (dst, dport) = (p.dst?, p.dport?);
    facts
        .services
        .iter()
        .flat_map(|s| &s.ports)
        .find(|sp| {
            sp.vip == dst.to_string()
                && sp.port == i64::from(dport)
                && p.proto
                    .as_deref()
                    .is_some_and(|x| x.eq_ignore_ascii_case(&sp.protocol))
        })
        .map(|sp| sp.key.clone())
}

fn is_local(facts: &Facts, input: &TraceInput, ip: IpAddr) -> bool {
    input
        .host
        .as_ref()
        .and_then(|h| lookup(&h.routes, "local", ip))
        .is_some_and(|r| r.route_type == "local")
        || facts.node.addresses.iter().any(|a| a == &ip.to_string())
}

fn blocked(
    hops: Vec<Hop>,
    assumptions: Vec<String>,
    prob: f64,
    l: &EvalPath,
    path: &str,
) -> Branch {
    let at = l
        .decided_at
        .as_ref()
        .map(|(c, n)| format!("{c} ({path}:{n})"))
        .unwrap_or_default();
    Branch {
        probability: prob,
        assumptions,
        hops,
        outcome: Outcome {
            kind: if matches!(l.verdict, Verdict::Reject { .. }) {
                "rejected".into()
            } else {
                "dropped".into()
            },
            detail: format!("{} at {at}", l.verdict),
        },
    }
}

/// Endpoints of the nftables or IPVS kube-proxy dataplane for a Service port the packet
/// is addressed to (iptables mode DNATs in the rules instead).
fn other_dataplanes(facts: &Facts, p: &Packet) -> Vec<(f64, Option<IpAddr>, Option<u16>, Hop)> {
    let (Some(dst), Some(dport)) = (p.dst, p.dport) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for svc in &facts.services {
        for sp in &svc.ports {
            if sp.vip != dst.to_string()
                || sp.port != i64::from(dport)
                || !p
                    .proto
                    .as_deref()
                    .is_some_and(|x| x.eq_ignore_ascii_case(&sp.protocol))
            {
                continue;
            }
            let (plane, eps, sources): (&str, Vec<(String, f64)>, Vec<Source>) = if sp.nft.present {
                let n = sp.nft.endpoints.len().max(1) as f64;
                (
                    "nft kube-proxy",
                    sp.nft
                        .endpoints
                        .iter()
                        .map(|e| (e.clone(), 1.0 / n))
                        .collect(),
                    sp.nft.sources.clone(),
                )
            } else if sp.ipvs.present {
                let total: i64 = sp.ipvs.real_servers.iter().map(|r| r.weight.max(0)).sum();
                (
                    "ipvs",
                    sp.ipvs
                        .real_servers
                        .iter()
                        .filter(|r| r.weight > 0)
                        .map(|r| (r.address.clone(), r.weight as f64 / total.max(1) as f64))
                        .collect(),
                    sp.ipvs.source.clone().into_iter().collect(),
                )
            } else {
                continue;
            };
            if eps.is_empty() {
                out.push((
                    1.0,
                    p.dst,
                    p.dport,
                    Hop {
                        stage: plane.into(),
                        detail: format!("{} has no endpoint programmed", sp.key),
                        evidence: sources.clone(),
                        rules: Vec::new(),
                    },
                ));
            }
            for (ep, prob) in eps {
                let (h, port) = split_port(&ep);
                out.push((
                    prob,
                    h.parse().ok(),
                    port,
                    Hop {
                        stage: plane.into(),
                        detail: format!(
                            "{} -> {ep}{}",
                            sp.key,
                            sp.ipvs
                                .scheduler
                                .as_ref()
                                .filter(|_| plane == "ipvs")
                                .map(|s| format!(" (scheduler {s})"))
                                .unwrap_or_default()
                        ),
                        evidence: sources.clone(),
                        rules: Vec::new(),
                    },
                ));
            }
        }
    }
    out
}

/// The IPVS path of a packet from outside the host (a pod, another node) to a VIP bound to
/// the node: the route says local, mangle and filter INPUT run on the packet still
/// addressed to the VIP, IPVS schedules a real server at LOCAL_IN (before nat INPUT) and
/// sends the request out through LOCAL_OUT (filter OUTPUT) and POSTROUTING, never FORWARD.
/// A virtual server without a real server answers ICMP port unreachable (`ip_vs_leave`).
#[allow(clippy::too_many_arguments)]
fn ipvs_from_input(
    facts: &Facts,
    input: &TraceInput,
    from: &From,
    p: &Packet,
    picks: &[(f64, Option<IpAddr>, Option<u16>, Hop)],
    (hops, assumptions, prob): (Vec<Hop>, Vec<String>, f64),
    run: &Runner<'_>,
    path: &str,
    out: &mut Vec<Branch>,
) {
    let mut vp = p.clone();
    vp.dst_local = Some(true);
    let mut hops = hops;
    hops.push(Hop {
        stage: "route".into(),
        detail: format!(
            "{} is a local address of the node: INPUT, where IPVS schedules",
            vp.dst.map(|d| d.to_string()).unwrap_or_default()
        ),
        evidence: input
            .host
            .as_ref()
            .zip(vp.dst)
            .map(|(h, d)| route_source(h, lookup(&h.routes, "local", d)))
            .into_iter()
            .collect(),
        rules: Vec::new(),
    });
    let (paths, _) = run(&[("mangle", "INPUT"), ("filter", "INPUT")], &vp);
    for sp in paths {
        let (more, extra) = nf_hops(path, &sp, "INPUT");
        let mut hops = hops.clone();
        hops.extend(more);
        let mut assumptions = assumptions.clone();
        assumptions.extend(extra);
        let prob2: f64 = sp.hops.iter().map(|h| h.2.probability).product();
        let last = sp.last();
        if let Some(l) = last
            && l.verdict.blocks()
        {
            // Dropped before IPVS scheduled: one branch, whatever the real servers.
            out.push(blocked(hops, assumptions, prob * prob2, l, path));
            continue;
        }
        for (pp, dst, dport, hop) in picks {
            let mut hops = hops.clone();
            hops.push(hop.clone());
            if *dst == p.dst && *dport == p.dport {
                out.push(Branch {
                    probability: prob * prob2 * pp,
                    assumptions: assumptions.clone(),
                    hops,
                    outcome: Outcome {
                        kind: "rejected".into(),
                        detail: "the IPVS virtual server has no real server: ICMP port unreachable"
                            .into(),
                    },
                });
                continue;
            }
            let mut q = last.map_or_else(|| vp.clone(), |l| l.packet.clone());
            q.dst = *dst;
            q.dport = *dport;
            q.dst_local = dst.map(|d| is_local(facts, input, d));
            // Sent at LOCAL_OUT: no input interface in OUTPUT and POSTROUTING.
            q.in_iface = None;
            after_prerouting(
                facts,
                input,
                from,
                true,
                q,
                hops,
                assumptions.clone(),
                prob * prob2 * pp,
                run,
                path,
                out,
            );
        }
    }
}

type Runner<'r> = dyn Fn(&[(&'static str, &'static str)], &Packet) -> (Vec<StagedPath>, bool) + 'r;

#[allow(clippy::too_many_arguments)]
fn after_prerouting(
    facts: &Facts,
    input: &TraceInput,
    from: &From,
    // The packet leaves through LOCAL_OUT (sent by IPVS after LOCAL_IN): OUTPUT hooks, and
    // no forwarding (`ip_forward` does not apply).
    local_out: bool,
    mut p: Packet,
    mut hops: Vec<Hop>,
    assumptions: Vec<String>,
    prob: f64,
    run: &Runner<'_>,
    path: &str,
    out: &mut Vec<Branch>,
) {
    let Some(host) = &input.host else {
        out.push(Branch {
            probability: prob,
            assumptions,
            hops,
            outcome: Outcome {
                kind: "unknown".into(),
                detail: "the host's routes are not in the bundle".into(),
            },
        });
        return;
    };
    let rules = input.ip_rules.as_ref().map(|(_, r)| r);
    let d = route_decision(&host.routes, rules, &p, p.in_iface.as_deref());
    let mut ev = vec![route_source(host, d.route)];
    if let Some((rp, _)) = &input.ip_rules {
        ev.push(Source {
            path: rp.clone(),
            line: None,
            node: None,
        });
    }
    hops.push(Hop {
        stage: "route".into(),
        detail: match d.route {
            Some(r) => format!(
                "{} -> {} (table {}, {})",
                p.dst.map(|x| x.to_string()).unwrap_or_default(),
                route_text(r),
                d.table,
                d.rule
            ),
            None => format!("no route ({}: {})", d.rule, d.table),
        },
        evidence: ev,
        rules: Vec::new(),
    });
    let end = |hops: Vec<Hop>, assumptions: Vec<String>, kind: &str, detail: String| Branch {
        probability: prob,
        assumptions,
        hops,
        outcome: Outcome {
            kind: kind.into(),
            detail,
        },
    };
    let Some(route) = d.route else {
        out.push(end(
            hops,
            assumptions,
            "no_route",
            format!("no route to {:?}", p.dst),
        ));
        return;
    };
    match route.route_type.as_str() {
        "blackhole" | "unreachable" | "prohibit" => {
            let kind = if route.route_type == "blackhole" {
                "blackholed"
            } else {
                "rejected"
            };
            out.push(end(
                hops,
                assumptions,
                kind,
                format!("{} route {}", route.route_type, route.dst),
            ));
            return;
        }
        _ => {}
    }
    let local = route.route_type == "local";
    let is_host_src = matches!(from, From::Host { .. }) || local_out;
    if !local
        && !is_host_src
        && facts
            .node
            .sysctls
            .get("net.ipv4.ip_forward")
            .map(String::as_str)
            == Some("0")
    {
        hops.push(Hop {
            stage: "forward".into(),
            detail: "net.ipv4.ip_forward = 0: the kernel does not forward".into(),
            evidence: facts.node.sysctls_source.clone().into_iter().collect(),
            rules: Vec::new(),
        });
        out.push(end(
            hops,
            assumptions,
            "dropped",
            "not forwarded: net.ipv4.ip_forward=0".into(),
        ));
        return;
    }
    p.out_iface = if local { None } else { route.dev.clone() };
    let hooks: &[(&str, &str)] = if local {
        &[("mangle", "INPUT"), ("filter", "INPUT")]
    } else if is_host_src {
        &[
            ("filter", "OUTPUT"),
            ("mangle", "POSTROUTING"),
            ("nat", "POSTROUTING"),
        ]
    } else {
        &[
            ("mangle", "FORWARD"),
            ("filter", "FORWARD"),
            ("mangle", "POSTROUTING"),
            ("nat", "POSTROUTING"),
        ]
    };
    let (paths, _) = run(hooks, &p);
    for sp in paths {
        let (more, extra) = nf_hops(
            path,
            &sp,
            if local {
                "INPUT"
            } else {
                "FORWARD/POSTROUTING"
            },
        );
        let mut hops = hops.clone();
        hops.extend(more);
        let mut assumptions = assumptions.clone();
        assumptions.extend(extra);
        let prob2: f64 = sp.hops.iter().map(|h| h.2.probability).product();
        let Some(last) = sp.last() else { continue };
        if last.verdict.blocks() {
            let mut b = blocked(hops, assumptions, prob * prob2, last, path);
            b.probability = prob * prob2;
            out.push(b);
            continue;
        }
        let dst = p.dst.map(|d| d.to_string()).unwrap_or_default();
        let outcome = if local {
            Outcome {
                kind: "local".into(),
                detail: format!("delivered to the node itself ({dst}): a host process must listen"),
            }
        } else {
            egress(facts, route, &dst)
        };
        out.push(Branch {
            probability: prob * prob2,
            assumptions,
            hops,
            outcome,
        });
    }
}

fn egress(facts: &Facts, route: &Route, dst: &str) -> Outcome {
    let dev = route.dev.clone().unwrap_or_default();
    if let Some(p) = facts
        .pods
        .iter()
        .filter(|p| p.local && !p.host_network)
        .find(|p| p.ip.as_deref() == Some(dst) || p.ips.iter().any(|i| i == dst))
    {
        return Outcome {
            kind: "delivered".into(),
            detail: format!(
                "delivered to pod {} (netns {}, veth {}) out of {dev}",
                p.key,
                p.netns.as_deref().unwrap_or("?"),
                p.host_veth.as_deref().unwrap_or("?")
            ),
        };
    }
    let node = facts
        .node
        .peer_pod_routes
        .iter()
        .find(|r| crate::facts::keys::cidr_contains(&r.pod_cidr, dst))
        .map(|r| r.node.clone());
    let gw = route
        .gateway
        .map(|g| format!(" via {g}"))
        .unwrap_or_default();
    Outcome {
        kind: "sent".into(),
        detail: match node {
            Some(n) => format!("sent to node {n}{gw} out of {dev}"),
            None => format!("sent{gw} out of {dev}"),
        },
    }
}

fn conntrack_matches(facts: &Facts, input: &TraceInput, to: &To) -> Vec<CtMatch> {
    let Some((path, entries)) = &input.conntrack else {
        return Vec::new();
    };
    let endpoints: Vec<String> = facts
        .services
        .iter()
        .flat_map(|s| &s.ports)
        .filter(|p| p.vip == to.ip.to_string())
        .flat_map(|p| p.ready_endpoints.iter().cloned())
        .collect();
    entries
        .iter()
        .take(20)
        .map(|e| {
            let o = &e.original;
            let r = &e.reply;
            let reply_from = match r.sport {
                Some(p) => crate::facts::keys::ip_port(&r.src.to_string(), p),
                None => r.src.to_string(),
            };
            let dnat = r.src != o.dst;
            let gone = dnat
                && !endpoints.is_empty()
                && !endpoints
                    .iter()
                    .any(|x| x == &reply_from || x.split(':').next() == Some(&r.src.to_string()));
            CtMatch {
                entry: format!(
                    "{} {}:{} -> {}:{}",
                    e.protocol.as_str(),
                    o.src,
                    o.sport.map(|p| p.to_string()).unwrap_or_default(),
                    o.dst,
                    o.dport.map(|p| p.to_string()).unwrap_or_default()
                ),
                reply_from: reply_from.clone(),
                unreplied: e.flags.unreplied,
                note: gone.then(|| {
                    format!(
                        "{reply_from} is not a ready endpoint any more: packets of this entry still go there until it expires"
                    )
                }),
                source: Source::line(path, e.line as u64),
            }
        })
        .collect()
}

/// Builds the walk's input from a bundle: the live IPv4 iptables save, the host's and the
/// source pod's routes, `ip rule`, and the conntrack entries of the flow.
pub fn load(bundle: &Bundle, facts: &Facts, from: &From, to: &To) -> TraceInput {
    let mut input = TraceInput::default();
    let live = facts
        .iptables
        .backends
        .iter()
        .filter(|b| b.family == "4")
        .find(|b| Some(&b.backend) == facts.iptables.live_backend.as_ref())
        .or_else(|| facts.iptables.backends.iter().find(|b| b.family == "4"));
    if let Some(b) = live
        && let Ok(Some(text)) = crate::inspect::load::text(bundle, &b.path)
    {
        input.iptables = Some((
            b.path.clone(),
            crate::parse::iptables::parse_iptables_save(&text),
        ));
    }
    let states = |id: &str| -> Option<NetnsRoutes> {
        let s = crate::inspect::load::netns_states(bundle, Some(id)).ok()?;
        let s = s.into_iter().next()?;
        let native = layout::netns_path(id, layout::netns::NETLINK);
        let path = if bundle.manifest().artifact(&native).is_some() {
            native
        } else {
            layout::netns_path(id, layout::netns::IP_ROUTE)
        };
        Some(NetnsRoutes {
            id: id.to_string(),
            path,
            routes: s.routes?.routes,
        })
    };
    input.host = states(layout::HOST_NETNS);
    if let From::Pod { netns: Some(n), .. } = from
        && let Some(r) = states(n)
    {
        input.pod_netns.insert(n.clone(), r);
    }
    if let Ok(Some(text)) = crate::inspect::load::text(bundle, layout::node::IP_RULE) {
        input.ip_rules = Some((
            layout::node::IP_RULE.to_string(),
            crate::parse::ip::parse_rules(&text),
        ));
    }
    for path in [layout::conntrack::TABLE, layout::conntrack::PROC_TABLE] {
        let Some(Ok(f)) = bundle.open_artifact(path) else {
            continue;
        };
        let mut hits = Vec::new();
        let src = match from {
            From::Pod { ip, .. } | From::Host { ip } | From::External { ip } => *ip,
        };
        let _ = crate::parse::conntrack::for_each_entry(std::io::BufReader::new(f), |e| {
            if let Ok(e) = e
                && e.original.dst == to.ip
                && (to.port.is_none() || e.original.dport == to.port)
                && e.protocol.as_str().eq_ignore_ascii_case(&to.proto)
                && e.original.src == src
                && hits.len() < 100
            {
                hits.push(e);
            }
        });
        input.conntrack = Some((path.to_string(), hits));
        break;
    }
    input
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::ip::{parse_routes, parse_rules};

    fn pkt(dst: &str, mark: u32) -> Packet {
        Packet {
            src: Some("10.244.1.5".parse().unwrap()),
            dst: Some(dst.parse().unwrap()),
            mark: Mark::known(mark),
            ..Packet::default()
        }
    }

    #[test]
    fn rules_in_priority_order_then_longest_prefix() {
        let routes = parse_routes(
            "default via 172.18.0.1 dev eth0\n10.244.0.0/16 via 10.244.0.0 dev flannel.1 onlink\n10.244.1.0/24 dev cni0 proto kernel scope link src 10.244.1.1\nblackhole 10.244.9.0/24\nlocal 172.18.0.10 dev eth0 table local proto kernel scope host src 172.18.0.10\ndefault via 192.0.2.1 dev eth1 table 100\n",
        )
        .routes;
        let rules = parse_rules(
            "0:\tfrom all lookup local\n100:\tfrom all fwmark 0x4000/0x4000 lookup 100\n32766:\tfrom all lookup main\n32767:\tfrom all lookup default\n",
        );
        let d = route_decision(&routes, Some(&rules), &pkt("10.244.1.9", 0), None);
        assert_eq!(d.route.and_then(|r| r.dev.clone()).as_deref(), Some("cni0"));
        assert_eq!(d.rule, "rule 32766");
        let d = route_decision(&routes, Some(&rules), &pkt("10.244.3.9", 0), None);
        assert_eq!(
            d.route.and_then(|r| r.dev.clone()).as_deref(),
            Some("flannel.1")
        );
        let d = route_decision(&routes, Some(&rules), &pkt("172.18.0.10", 0), None);
        assert_eq!(d.route.map(|r| r.route_type.as_str()), Some("local"));
        assert_eq!(d.table, "local");
        // The mark selects table 100 first.
        let d = route_decision(&routes, Some(&rules), &pkt("8.8.8.8", 0x4000), None);
        assert_eq!(d.table, "100");
        assert_eq!(d.route.and_then(|r| r.dev.clone()).as_deref(), Some("eth1"));
        let d = route_decision(&routes, Some(&rules), &pkt("10.244.9.1", 0), None);
        assert_eq!(d.route.map(|r| r.route_type.as_str()), Some("blackhole"));
        // Without `ip rule`: the kernel's default rules.
        let d = route_decision(&routes, None, &pkt("8.8.8.8", 0x4000), None);
        assert_eq!(d.route.and_then(|r| r.dev.clone()).as_deref(), Some("eth0"));
    }

    #[test]
    fn endpoints_parse() {
        let f = Facts::default();
        let t = resolve_to(&f, "10.96.0.10:53/udp").unwrap();
        assert_eq!((t.port, t.proto.as_str()), (Some(53), "udp"));
        let t = resolve_to(&f, "[fd00::1]:443").unwrap();
        assert_eq!(
            (t.ip.to_string(), t.port),
            ("fd00::1".to_string(), Some(443))
        );
        assert!(resolve_to(&f, "web:80").is_err());
        let (from, port) = resolve_from(&f, "192.0.2.1:1234").unwrap();
        assert_eq!(port, Some(1234));
        assert!(matches!(from, From::External { .. }));
    }
}

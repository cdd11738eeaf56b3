//! Dataplane extraction for the fact builder: a narrow one-pass scan of
//! iptables-save for per-backend summaries (hooks, hint/canary chains, FORWARD
//! policy, localnet and INVALID DROPs, nat POSTROUTING masquerades, duplicates, incompatible
//! tables), and adapters over `crate::parse` for the Service joins (iptables and nftables
//! kube-proxy models, IPVS) and the nft postrouting masquerades.
//!
//! The summary pass reads each line of a save once and splits only the few rules it
//! judges (the filter table, KUBE-FIREWALL, the nat hooks and the POSTROUTING tree) into
//! tokens, with the parser's own tokenizer (`parse::iptables::split_rule`), so both read
//! quotes and escapes alike; the full parse of the same text then gives the Service join,
//! the FORWARD evaluation and the garbled-rule check. Line numbers are kept for evidence,
//! and malformed input never panics (an unknown line is skipped).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netsnap_bundle::net;
use netsnap_parse::iptables::{Tokens, split_rule};

use super::keys::{cidr_contains, service_key};
use super::model::{GarbledNatRule, IptablesBackendFacts, MasqueradeRule, Source};
use super::nfeval::{Mark, Packet, Stage, StagedPath, TableIndex, evaluate_stages, rule_text};

/// Garbled NAT rules kept as evidence per save (one is enough to name the skew).
const GARBLED_RULE_CAP: usize = 20;

/// What one iptables save yields.
#[derive(Debug, Default)]
pub struct IptablesScan {
    /// Per-backend summary.
    pub facts: IptablesBackendFacts,
    /// `VIP:port/proto` -> (service chain, rule source).
    pub service_rules: HashMap<String, (String, Source)>,
    /// Service chain -> endpoint chains it jumps to.
    pub jumps: HashMap<String, Vec<String>>,
    /// Chain -> DNAT targets with sources.
    pub dnat: HashMap<String, Vec<(String, Source)>>,
    /// `VIP:port/proto` -> `has no endpoints` REJECT rule.
    pub reject_rules: HashMap<String, Source>,
    /// `namespace/name` -> `has no local endpoints` DROP rule.
    pub no_local_drop: HashMap<String, Source>,
    /// Lines the iptables-save parser did not understand (for the save's parse coverage).
    pub unparsed: Vec<crate::parse::Unparsed>,
}

impl IptablesScan {
    /// DNAT targets reachable from a service chain (directly or through `KUBE-SEP-*`).
    pub fn chain_targets(&self, chain: &str) -> Vec<(String, Source)> {
        let mut out: Vec<(String, Source)> = self.dnat.get(chain).cloned().unwrap_or_default();
        for j in self.jumps.get(chain).into_iter().flatten() {
            out.extend(self.dnat.get(j).cloned().unwrap_or_default());
        }
        out
    }
}

#[derive(Default)]
struct RuleArgs<'a> {
    chain: &'a str,
    dst: Option<&'a str>,
    src: Option<&'a str>,
    /// `! -s`.
    not_src: Option<&'a str>,
    jump: Option<&'a str>,
    comment: Option<&'a str>,
    has_mark_0x4000: bool,
    /// `--mark` (any value, not negated).
    mark: bool,
    /// `! --mark`.
    not_mark: bool,
    /// `--ctstate` lists `INVALID` (not negated).
    ctstate_invalid: bool,
    in_if: Option<&'a str>,
    out_if: Option<&'a str>,
    /// `--match-set NAME src…` (not negated).
    set_src: bool,
    /// `! --match-set NAME src…`.
    not_set_src: bool,
    /// `--match-set NAME dst…` (not negated).
    set_dst: bool,
    /// `--src-type LOCAL` (not negated): host-originated packets only.
    src_type_local: bool,
    /// `--random-fully`.
    random_fully: bool,
    /// Options other than `-A`, `-s`, `-m`, `--comment` and the jump: anything that narrows.
    narrowing: u32,
}

fn rule_args<'a>(words: &[&'a str]) -> RuleArgs<'a> {
    let mut a = RuleArgs::default();
    let mut i = 0;
    let mut negate = false;
    while i < words.len() {
        let w = words[i];
        let next = words.get(i + 1).copied();
        let take = |slot: &mut Option<&'a str>| {
            if !negate {
                *slot = next;
            }
        };
        if w.starts_with('-')
            && !matches!(
                w,
                "-A" | "-s"
                    | "--source"
                    | "-j"
                    | "--jump"
                    | "-g"
                    | "--goto"
                    | "-m"
                    | "--match"
                    | "--comment"
            )
        {
            a.narrowing += 1;
        }
        match w {
            "!" => {
                negate = true;
                i += 1;
                continue;
            }
            "-A" => a.chain = next.unwrap_or_default(),
            "-d" | "--destination" => take(&mut a.dst),
            "-s" | "--source" => {
                if negate {
                    a.not_src = next;
                } else {
                    a.src = next;
                }
            }
            "-j" | "--jump" | "-g" | "--goto" => a.jump = next,
            "--comment" => a.comment = next,
            "-i" | "--in-interface" => take(&mut a.in_if),
            "-o" | "--out-interface" => take(&mut a.out_if),
            "--ctstate" => {
                if !negate && next.is_some_and(|s| s.split(',').any(|s| s == "INVALID")) {
                    a.ctstate_invalid = true;
                }
            }
            "--mark" => {
                if negate {
                    a.not_mark = true;
                } else {
                    a.mark = true;
                    if next.is_some_and(|m| m.starts_with("0x4000")) {
                        a.has_mark_0x4000 = true;
                    }
                }
            }
            "--match-set" => {
                // `--match-set NAME src,dst`: the first flag is what the set's first
                // dimension is matched against.
                let dir = words.get(i + 2).copied().unwrap_or_default();
                match (dir.split(',').next(), negate) {
                    (Some("src"), false) => a.set_src = true,
                    (Some("src"), true) => a.not_set_src = true,
                    (Some("dst"), false) => a.set_dst = true,
                    _ => {}
                }
            }
            "--src-type" => {
                if !negate && next == Some("LOCAL") {
                    a.src_type_local = true;
                }
            }
            "--random-fully" => {
                a.random_fully = true;
                negate = false;
                i += 1;
                continue;
            }
            _ => {
                negate = false;
                i += 1;
                continue;
            }
        }
        negate = false;
        i += 2;
    }
    a
}

/// True when CIDR (or address) `outer` contains one of the pod CIDRs whole.
fn covers_pod_range(outer: &str, pod_cidrs: &[String]) -> bool {
    let Some(outer) = net::parse_prefix(outer) else {
        return false;
    };
    pod_cidrs
        .iter()
        .filter_map(|p| net::parse_prefix(p))
        .any(|p| p.prefix_len() >= outer.prefix_len() && outer.contains(&p.addr()))
}

/// True when a source match selects pods: it contains a pod CIDR, or lies inside one (the
/// bridge plugin's `ipMasq` jumps per pod, `-s <pod IP>/32 -j CNI-…`).
fn pod_source_range(src: &str, pod_cidrs: &[String]) -> bool {
    covers_pod_range(src, pod_cidrs)
        || net::parse_prefix(src).is_some_and(|s| {
            pod_cidrs
                .iter()
                .filter_map(|p| net::parse_prefix(p))
                .any(|p| p.prefix_len() <= s.prefix_len() && p.contains(&s.addr()))
        })
}

/// A nat rule of the POSTROUTING tree candidates, kept from the single pass.
struct NatRule<'a> {
    line: u64,
    body: &'a str,
}

/// Walks nat `POSTROUTING` and the chains it reaches, classifying every `MASQUERADE`/`SNAT`.
///
/// A chain is "pod-reached" when a jump that pod egress can take leads to it: the jump has
/// no positive destination, mark or local-source match and its source (if any) holds a pod
/// CIDR. Inside a chain, `! --mark X -j RETURN` (kube-proxy's KUBE-POSTROUTING) lets only
/// marked packets reach the rules after it, and a bare or pod-source `RETURN` lets none.
fn postrouting_masquerade(
    path: &str,
    rules: &[NatRule<'_>],
    pod_cidrs: &[String],
) -> Vec<MasqueradeRule> {
    let tokens: Vec<(u64, Tokens)> = rules.iter().map(|r| (r.line, split_rule(r.body))).collect();
    let parsed: Vec<(u64, Vec<&str>)> = tokens
        .iter()
        .map(|(line, t)| (*line, t.iter().collect()))
        .collect();
    let mut by_chain: HashMap<&str, Vec<(u64, RuleArgs<'_>)>> = HashMap::new();
    for (line, words) in &parsed {
        let a = rule_args(words);
        by_chain.entry(a.chain).or_default().push((*line, a));
    }
    let pod_source = |a: &RuleArgs<'_>| {
        a.src.is_none_or(|s| pod_source_range(s, pod_cidrs))
            && !a.not_src.is_some_and(|s| covers_pod_range(s, pod_cidrs))
            && !a.not_set_src
    };
    // A RETURN stops all pod egress only when its source holds every pod (or is absent).
    let all_pods =
        |a: &RuleArgs<'_>| a.narrowing == 0 && a.src.is_none_or(|s| covers_pod_range(s, pod_cidrs));
    let pod_traffic = |a: &RuleArgs<'_>| {
        pod_source(a) && a.dst.is_none() && !a.set_dst && !a.mark && !a.src_type_local
    };
    // Chain -> reached by pod egress; iterate to a fixpoint (jumps may point backwards).
    let mut reached: BTreeMap<&str, bool> = BTreeMap::new();
    reached.insert("POSTROUTING", true);
    loop {
        let mut changed = false;
        let snapshot: Vec<(&str, bool)> = reached.iter().map(|(c, p)| (*c, *p)).collect();
        for (chain, pod) in snapshot {
            let mut gated = false;
            for (_, a) in by_chain.get(chain).into_iter().flatten() {
                let Some(target) = a.jump else { continue };
                // In nat, ACCEPT ends the traversal as RETURN does.
                if target == "RETURN" || target == "ACCEPT" {
                    gated |= a.not_mark || all_pods(a);
                    continue;
                }
                if !by_chain.contains_key(target) {
                    continue;
                }
                changed |= mark_reached(&mut reached, target, pod && !gated && pod_traffic(a));
            }
        }
        if !changed {
            break;
        }
    }
    let mut out = Vec::new();
    for (chain, pod) in &reached {
        let (mut mark_gated, mut pod_gated) = (false, false);
        for (line, a) in by_chain.get(chain).into_iter().flatten() {
            let target = a.jump.unwrap_or_default();
            if target == "RETURN" || target == "ACCEPT" {
                mark_gated |= a.not_mark;
                pod_gated |= all_pods(a);
                continue;
            }
            if target != "MASQUERADE" && target != "SNAT" {
                continue;
            }
            let mark_only = mark_gated || a.mark;
            out.push(MasqueradeRule {
                chain: chain.to_string(),
                target: target.to_string(),
                pod_egress: *pod && !mark_only && !pod_gated && pod_traffic(a),
                mark_only,
                random_fully: a.random_fully,
                source: Some(Source::line(path, *line)),
            });
        }
    }
    out.sort_by_key(|r| r.source.as_ref().and_then(|s| s.line));
    out
}

/// The CNI or agent owning a nat chain whose pod IPs are VPC-routable or which decides
/// itself what to SNAT (`aws-vpc-cni`, `ip-masq-agent`).
pub fn cloud_snat_kind(chain: &str) -> Option<&'static str> {
    if chain.starts_with("AWS-SNAT-CHAIN") {
        Some("aws-vpc-cni")
    } else if chain == "IP-MASQ" || chain.starts_with("IP-MASQ-AGENT") {
        Some("ip-masq-agent")
    } else {
        None
    }
}

/// Scans one `iptables-save` output: per-backend summaries in one narrow pass, then the
/// Service join from the iptables parser's kube-proxy model.
pub fn scan_iptables(
    path: &str,
    backend: &str,
    family: &str,
    text: &str,
    pod_cidrs: &[String],
) -> IptablesScan {
    let mut s = IptablesScan::default();
    let f = &mut s.facts;
    f.backend = backend.to_string();
    f.family = family.to_string();
    f.path = path.to_string();
    let mut table = "";
    // Hashes every rule's text: foldhash, not SipHash.
    let mut dup: foldhash::HashMap<(&str, &str), (u64, u64)> = foldhash::HashMap::default();
    let (mut kube_forward_accept, mut forward_to_kube_forward) = (false, false);
    let mut nat_rules: Vec<NatRule<'_>> = Vec::new();
    let in_pod_range = |c: &str| {
        let addr = c.split('/').next().unwrap_or(c);
        pod_cidrs
            .iter()
            .any(|p| cidr_contains(p, addr) || cidr_contains(c, p.split('/').next().unwrap_or(p)))
    };
    for (i, line) in text.lines().enumerate() {
        let n = i as u64 + 1;
        let line = line.trim_end_matches('\r');
        if let Some(t) = line.strip_prefix('*') {
            table = t.trim();
            continue;
        }
        if line.starts_with("# Table `") && line.contains("incompatible") {
            let t = line
                .trim_start_matches("# Table `")
                .split('\'')
                .next()
                .unwrap_or_default();
            f.incompatible_tables.push(t.to_string());
            continue;
        }
        if let Some(decl) = line.strip_prefix(':') {
            let mut it = decl.split_whitespace();
            let chain = it.next().unwrap_or_default();
            let policy = it.next().unwrap_or_default();
            if chain.starts_with("KUBE-") {
                f.kube_chain_count += 1;
                f.kube_source.get_or_insert_with(|| Source::line(path, n));
            }
            if chain.starts_with("KUBE-SVC-") || chain.starts_with("KUBE-SVL-") {
                f.kube_svc_chain_count += 1;
            }
            if chain.starts_with("KUBE-SEP-") {
                f.kube_sep_chain_count += 1;
            }
            if chain == "KUBE-IPTABLES-HINT" || chain == "KUBE-KUBELET-CANARY" {
                f.kubelet_hint = true;
            }
            if chain == "KUBE-PROXY-CANARY" {
                f.proxy_canary = true;
            }
            if table == "nat" && f.cloud_snat_chain.is_none() && cloud_snat_kind(chain).is_some() {
                f.cloud_snat_chain = Some(chain.to_string());
                f.cloud_snat_source = Some(Source::line(path, n));
            }
            if table == "filter" && chain == "FORWARD" {
                f.forward_policy = Some(policy.to_string());
                f.forward_source = Some(Source::line(path, n));
            }
            continue;
        }
        // `iptables-save -c` (what the collector runs) prefixes each rule with `[pkts:bytes] `.
        if !(line.starts_with("-A ") || line.starts_with('[') && line.contains("] -A ")) {
            continue;
        }
        f.rule_count += 1;
        match f.rules_per_table.get_mut(table) {
            Some(c) => *c += 1,
            None => {
                f.rules_per_table.insert(table.to_string(), 1);
            }
        }
        // Counters (`[pkts:bytes]` prefix with -c) differ between identical rules; strip them.
        let body = match line.find("-A ") {
            Some(i) => &line[i..],
            None => line,
        };
        dup.entry((table, body)).or_insert((0, n)).0 += 1;
        // The summaries below only look at a few chains: skip the word split for the
        // bulk of a kube-proxy save (its Service and endpoint chains).
        let chain = body[3..]
            .split_ascii_whitespace()
            .next()
            .unwrap_or_default();
        // The POSTROUTING tree: CNI and agent chains are small; of kube-proxy's thousands
        // of nat rules only KUBE-POSTROUTING's are on it.
        if table == "nat" && (!chain.starts_with("KUBE-") || chain == "KUBE-POSTROUTING") {
            nat_rules.push(NatRule { line: n, body });
        }
        let wanted = table == "filter"
            || chain == "KUBE-FIREWALL"
            || (table == "nat" && (chain == "PREROUTING" || chain == "OUTPUT"));
        if !wanted {
            continue;
        }
        let tokens = split_rule(body);
        let words: Vec<&str> = tokens.iter().collect();
        let a = rule_args(&words);
        let jump = a.jump.unwrap_or_default();
        let comment = a.comment.unwrap_or_default();
        if table == "nat"
            && (a.chain == "PREROUTING" || a.chain == "OUTPUT")
            && jump == "KUBE-SERVICES"
        {
            f.kube_services_hooked = true;
        }
        if a.chain == "KUBE-FIREWALL"
            && comment.contains("block incoming localnet connections")
            && jump == "DROP"
        {
            f.localnet_drop = true;
        }
        if table == "filter" {
            if a.chain == "KUBE-FORWARD" && jump == "ACCEPT" && a.has_mark_0x4000 {
                kube_forward_accept = true;
            }
            if a.chain == "FORWARD" && jump == "KUBE-FORWARD" {
                forward_to_kube_forward = true;
            }
            // kube-proxy's `-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP` (newer
            // versions add an nfacct counter match before the jump).
            if a.chain == "KUBE-FORWARD" && jump == "DROP" && a.ctstate_invalid {
                f.kube_forward_invalid_drop = true;
                f.invalid_drop_source
                    .get_or_insert_with(|| Source::line(path, n));
            }
            let cni_chain = [
                "cali-",
                "CILIUM_",
                "FLANNEL-",
                "WEAVE",
                "KUBE-ROUTER",
                "ANTREA",
            ]
            .iter()
            .any(|p| jump.starts_with(p));
            let pod_accept = jump == "ACCEPT"
                && (a.src.is_some_and(in_pod_range) || a.dst.is_some_and(in_pod_range));
            let bridge_accept = jump == "ACCEPT"
                && [a.in_if, a.out_if].iter().any(|i| {
                    i.is_some_and(|i| i == "cni0" || i == "cbr0" || i.starts_with("cali"))
                });
            if a.chain == "FORWARD" && (cni_chain || pod_accept || bridge_accept) {
                f.forward_accepts_pods = true;
            }
        }
    }
    if kube_forward_accept && forward_to_kube_forward {
        f.forward_accepts_pods = true;
    }
    f.masquerade_rules = postrouting_masquerade(path, &nat_rules, pod_cidrs);
    if let Some((count, first)) = dup
        .values()
        .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
        .copied()
    {
        f.max_duplicate_rule = count;
        f.duplicate_source = Some(Source::line(path, first));
    }
    let dump = crate::parse::iptables::parse_iptables_save(text);
    for t in &dump.tables {
        for r in &t.rules {
            if let Some(why) = &r.garbled_target
                && f.garbled_nat_rules.len() < GARBLED_RULE_CAP
            {
                f.garbled_nat_rules.push(GarbledNatRule {
                    table: t.name.clone(),
                    chain: r.chain.clone(),
                    target: r.target_name().to_string(),
                    reason: why.clone(),
                    source: Some(Source::line(path, r.line as u64)),
                });
            }
        }
    }
    forward_pod_evaluation(&mut s.facts, path, family, &dump, pod_cidrs);
    let model = crate::parse::iptables::kube_proxy::kube_proxy_model(&dump);
    apply_iptables_model(&mut s, path, &model);
    drop(model);
    s.unparsed = dump.unparsed;
    s
}

/// A pod-to-pod packet across nodes: from the first pod CIDR of the family to the second
/// (the node pod CIDRs of a cluster), or, with one (cluster-wide) range, between two /24s
/// of it when it is wide enough, the first addresses of the range otherwise.
pub fn cross_node_pod_packet(family: &str, pod_cidrs: &[String]) -> Option<Packet> {
    let nets: Vec<(IpAddr, u32)> = pod_cidrs
        .iter()
        .filter_map(|c| match c.parse::<net::IpNet>().ok()? {
            net::IpNet::V4(n) if family == "4" && n.prefix_len() <= 30 => {
                Some((IpAddr::V4(n.network()), u32::from(n.prefix_len())))
            }
            net::IpNet::V6(n) if family == "6" && n.prefix_len() <= 112 => {
                Some((IpAddr::V6(n.network()), u32::from(n.prefix_len())))
            }
            _ => None,
        })
        .collect();
    let add = |ip: IpAddr, k: u128| match ip {
        IpAddr::V4(v) => IpAddr::V4(Ipv4Addr::from(u32::from(v).wrapping_add(k as u32))),
        IpAddr::V6(v) => IpAddr::V6(Ipv6Addr::from(u128::from(v).wrapping_add(k))),
    };
    let (src, dst) = match nets.as_slice() {
        [] => return None,
        [(a, _), (b, _), ..] if a != b => (add(*a, 2), add(*b, 3)),
        [(a, len), ..] => {
            let wide = if a.is_ipv4() { *len <= 22 } else { *len <= 104 };
            let step = if a.is_ipv4() { 0x100 } else { 0x1_0000 };
            if wide {
                (add(*a, step + 2), add(*a, 2 * step + 3))
            } else {
                (add(*a, 2), add(*a, 3))
            }
        }
    };
    Some(Packet {
        src: Some(src),
        dst: Some(dst),
        proto: Some("tcp".into()),
        sport: Some(40000),
        dport: Some(8080),
        ctstate: Some("NEW".into()),
        src_local: Some(false),
        dst_local: Some(false),
        // Interfaces and the mark are unknown: rules on them fork (both branches kept).
        ..Packet::default()
    })
}

/// Evaluates a new cross-node pod connection through filter FORWARD in rule order and
/// records the verdict: a DROP or REJECT placed before the CNI's accept is caught, and
/// `forward_accepts_pods` becomes "some path accepts" instead of "an accept exists
/// somewhere".
fn forward_pod_evaluation(
    f: &mut IptablesBackendFacts,
    path: &str,
    family: &str,
    dump: &crate::parse::iptables::IptablesDump,
    pod_cidrs: &[String],
) {
    let Some(filter) = dump.table("filter") else {
        return;
    };
    let Some(mut pkt) = cross_node_pod_packet(family, pod_cidrs) else {
        return;
    };
    // A packet from a pod crosses a veth into the host namespace, which scrubs the mark:
    // it enters PREROUTING with mark 0, and only the rules before FORWARD can set one.
    pkt.mark = Mark::known(0);
    let indexes: Vec<(TableIndex<'_>, &str)> = [
        ("raw", "PREROUTING"),
        ("mangle", "PREROUTING"),
        ("nat", "PREROUTING"),
        ("mangle", "FORWARD"),
        ("filter", "FORWARD"),
    ]
    .iter()
    .filter_map(|(t, c)| Some((TableIndex::new(dump.table(t)?), *c)))
    .collect();
    let stages: Vec<Stage<'_, '_>> = indexes
        .iter()
        .map(|(index, chain)| Stage { index, chain })
        .collect();
    let (paths, truncated) = evaluate_stages(&stages, &pkt);
    let all_block = !truncated && !paths.is_empty() && paths.iter().all(StagedPath::blocks);
    let names: std::collections::BTreeSet<&str> = paths
        .iter()
        .filter_map(|p| p.last().map(|l| l.verdict.name()))
        .map(|n| {
            if n == "dnat" || n == "continue" {
                "accept"
            } else {
                n
            }
        })
        .collect();
    f.forward_pod_verdict = Some(match names.len() {
        1 if !truncated => names.first().copied().unwrap_or("mixed").to_string(),
        _ => "mixed".to_string(),
    });
    f.forward_accepts_pods = !all_block;
    let decided = paths
        .first()
        .and_then(|p| p.hops.last())
        .filter(|h| h.0 == "filter" || all_block)
        .and_then(|h| h.2.decided_at.clone());
    if all_block && let Some((chain, line)) = decided {
        let table = paths
            .first()
            .and_then(|p| p.hops.last())
            .and_then(|h| dump.table(&h.0))
            .unwrap_or(filter);
        f.forward_block_rule = Some(
            table
                .rules
                .iter()
                .find(|r| r.line == line)
                .map(rule_text)
                .unwrap_or_else(|| {
                    format!(
                        "{chain} policy {}",
                        f.forward_policy.as_deref().unwrap_or("?")
                    )
                }),
        );
        f.forward_block_source = Some(Source::line(path, line as u64));
    }
}

/// Replaces the scan's Service join with the iptables parser's kube-proxy model (Service
/// rules, DNAT targets through KUBE-SEP chains, "has no (local) endpoints" rules).
pub fn apply_iptables_model(
    scan: &mut IptablesScan,
    path: &str,
    model: &crate::parse::iptables::kube_proxy::KubeProxyIptables,
) {
    scan.service_rules.clear();
    scan.jumps.clear();
    scan.dnat.clear();
    scan.reject_rules.clear();
    scan.no_local_drop.clear();
    for svc in &model.services {
        let svc_key = format!("{}/{}", svc.namespace, svc.name);
        for ne in svc.no_endpoints.iter().filter(|n| n.local_only) {
            scan.no_local_drop
                .entry(svc_key.clone())
                .or_insert_with(|| Source::line(path, ne.line as u64));
        }
        let (Some(vip), Some(port)) = (svc.vip.as_deref(), svc.port) else {
            continue;
        };
        let key = service_key(vip, port, &svc.protocol);
        for ne in &svc.no_endpoints {
            if !ne.local_only && ne.ip.as_deref() == Some(vip) && ne.port == Some(port) {
                scan.reject_rules
                    .insert(key.clone(), Source::line(path, ne.line as u64));
            }
        }
        let Some(chain) = svc.svc_chain.as_ref().or(svc.local_chain.as_ref()) else {
            continue;
        };
        scan.service_rules.insert(
            key,
            (
                chain.clone(),
                Source::line(path, svc.line.unwrap_or(0) as u64),
            ),
        );
        let targets = svc
            .endpoints
            .iter()
            .chain(&svc.local_endpoints)
            .filter_map(|e| {
                let (ip, p) = (e.ip.as_deref()?, e.port?);
                let line = e.dnat_line.unwrap_or(e.line) as u64;
                Some((super::keys::ip_port(ip, p), Source::line(path, line)))
            })
            .collect();
        scan.dnat.insert(chain.clone(), targets);
    }
}

/// An IPVS virtual server.
#[derive(Debug, Clone, Default)]
pub struct VirtualServer {
    /// VIP.
    pub ip: String,
    /// Scheduler.
    pub scheduler: String,
    /// Real servers.
    pub real_servers: Vec<RealServer>,
    /// Evidence.
    pub source: Source,
}

/// An IPVS real server.
#[derive(Debug, Clone, Default)]
pub struct RealServer {
    /// `ip:port`.
    pub address: String,
    /// IP.
    pub ip: String,
    /// Weight.
    pub weight: i64,
    /// ActiveConn.
    pub active: i64,
    /// InActConn.
    pub inactive: i64,
    /// Evidence.
    pub source: Source,
}

/// What `ipvsadm -Ln` yields.
#[derive(Debug, Default)]
pub struct IpvsScan {
    /// `VIP:port/proto` -> virtual server.
    pub services: BTreeMap<String, VirtualServer>,
}

/// Adapts the IPVS parser's table (`ipvsadm -Ln` or `/proc/net/ip_vs`) to the join's index.
pub fn ipvs_from_table(path: &str, table: &crate::parse::ipvs::IpvsTable) -> IpvsScan {
    use crate::parse::ipvs::ServiceKey;
    let mut s = IpvsScan::default();
    for vs in &table.services {
        let ServiceKey::Address {
            protocol,
            address,
            port,
        } = &vs.key
        else {
            continue;
        };
        let ip = address.to_string();
        let key = service_key(&ip, port, protocol.as_str());
        let real_servers = vs
            .real_servers
            .iter()
            .map(|rs| RealServer {
                address: super::keys::ip_port(&rs.address.to_string(), rs.port),
                ip: rs.address.to_string(),
                weight: i64::from(rs.weight.unwrap_or(1)),
                active: rs
                    .active_conns
                    .map_or(0, |c| i64::try_from(c).unwrap_or(i64::MAX)),
                inactive: rs
                    .inactive_conns
                    .map_or(0, |c| i64::try_from(c).unwrap_or(i64::MAX)),
                source: Source::line(path, rs.line as u64),
            })
            .collect();
        s.services.insert(
            key,
            VirtualServer {
                ip,
                scheduler: vs.scheduler.clone().unwrap_or_default(),
                real_servers,
                source: Source::line(path, vs.line as u64),
            },
        );
    }
    s
}

/// What `nft list ruleset` yields for kube-proxy.
#[derive(Debug, Default)]
pub struct NftScan {
    /// Tables as `family name`.
    pub tables: Vec<String>,
    /// The kube-proxy table's line.
    pub kube_proxy_table: Option<Source>,
    /// `VIP:port/proto` -> (service chain, element source) from `map service-ips`.
    pub service_ips: HashMap<String, (String, Source)>,
    /// `VIP:port/proto` -> element source from `map no-endpoint-services`.
    pub no_endpoint_services: HashMap<String, Source>,
    /// Endpoint chain -> DNAT targets.
    pub endpoint_chains: Vec<(String, String, Source)>,
    /// The first `ct state invalid … drop` rule of a kube-proxy table.
    pub invalid_drop: Option<Source>,
}

impl NftScan {
    /// DNAT targets of the endpoint chains belonging to `service_chain`.
    pub fn endpoints_of(&self, service_chain: &str) -> Vec<(String, Source)> {
        let Some(id) = chain_identity(service_chain, "service-") else {
            return Vec::new();
        };
        self.endpoint_chains
            .iter()
            .filter(|(c, _, _)| {
                chain_identity(c, "endpoint-").is_some_and(|e| e.split("__").next() == Some(id))
            })
            .map(|(_, t, s)| (t.clone(), s.clone()))
            .collect()
    }
}

/// Adapts the nft parser's ruleset and kube-proxy model to the join's index.
pub fn nft_from_model(
    path: &str,
    ruleset: &crate::parse::nft::NftRuleset,
    model: &crate::parse::nft::kube_proxy::KubeProxyNft,
) -> NftScan {
    let mut s = NftScan {
        tables: ruleset
            .tables
            .iter()
            .map(|t| format!("{} {}", t.family, t.name))
            .collect(),
        kube_proxy_table: ruleset
            .tables
            .iter()
            .find(|t| t.name == "kube-proxy" && (t.family == "ip" || t.family == "ip6"))
            .map(|t| Source::line(path, t.line as u64)),
        invalid_drop: ruleset
            .tables
            .iter()
            .filter(|t| t.name == "kube-proxy" && (t.family == "ip" || t.family == "ip6"))
            .flat_map(|t| t.chains.iter().flat_map(|c| &c.rules))
            .find(|r| is_ct_invalid_drop(&r.text))
            .map(|r| Source::line(path, r.line as u64)),
        ..NftScan::default()
    };
    for svc in &model.services {
        let (Some(vip), Some(port)) = (svc.vip.as_deref(), svc.port) else {
            continue;
        };
        let key = service_key(vip, port, &svc.protocol);
        if let Some(chain) = svc.svc_chain.as_ref().or(svc.local_chain.as_ref()) {
            let line = svc.line.unwrap_or(0) as u64;
            s.service_ips
                .insert(key.clone(), (chain.clone(), Source::line(path, line)));
        }
        for ne in &svc.no_endpoints {
            if ne.ip.as_deref() == Some(vip) && ne.port == Some(port) && !ne.local_only {
                s.no_endpoint_services
                    .insert(key.clone(), Source::line(path, ne.line as u64));
            }
        }
        for ep in &svc.endpoints {
            if let (Some(ip), Some(p)) = (ep.ip.as_deref(), ep.port) {
                let line = ep.dnat_line.unwrap_or(ep.line) as u64;
                s.endpoint_chains.push((
                    ep.chain.clone(),
                    super::keys::ip_port(ip, p),
                    Source::line(path, line),
                ));
            }
        }
    }
    s
}

/// An nft rule matching `ct state invalid` (alone or in a set) with a `drop` verdict;
/// statements such as `counter packets 0 bytes 0` may sit between them.
fn is_ct_invalid_drop(rule: &str) -> bool {
    let words: Vec<&str> = rule
        .split(|c: char| c.is_whitespace() || c == ',' || c == '{' || c == '}')
        .filter(|w| !w.is_empty())
        .collect();
    let Some(at) = words.windows(2).position(|w| w == ["ct", "state"]) else {
        return false;
    };
    let states: Vec<&str> = words[at + 2..]
        .iter()
        .copied()
        .take_while(|w| {
            w.chars()
                .all(|c| c.is_ascii_lowercase() || c == '!' || c == '=')
        })
        .collect();
    states.first() != Some(&"!=") && states.contains(&"invalid") && words.contains(&"drop")
}

/// What one nft rule says about source NAT of pod egress.
#[derive(Debug, Default, PartialEq)]
struct NftNatRule {
    /// `masquerade` or `snat` statement.
    target: Option<&'static str>,
    /// Matches marked packets (`meta mark 0x4000`, `meta mark & 0x4000 != 0`).
    mark: bool,
    /// Matches unmarked packets (`meta mark & 0x4000 == 0`): as a `return`, it lets only
    /// marked packets reach the rules after it.
    unmarked: bool,
    /// Ends in `return` (or `accept`, which also ends the nat traversal).
    ret: bool,
    /// Nothing but a pod-source match (or nothing at all) before the verdict.
    bare: bool,
    /// Pod egress can match it: source is a pod range, a set or absent, no positive
    /// destination, no mark, not local-only.
    pod_traffic: bool,
    /// `fully-random`.
    random_fully: bool,
}

fn nft_nat_rule(text: &str, pod_cidrs: &[String]) -> NftNatRule {
    // Comments may say "masquerade"; only statements count.
    let unquoted: String = text
        .split('"')
        .enumerate()
        .filter(|(i, _)| i % 2 == 0)
        .map(|(_, p)| p)
        .collect::<Vec<_>>()
        .join(" ");
    let words: Vec<&str> = unquoted
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
        .collect();
    let mut r = NftNatRule::default();
    let (mut src_ok, mut dst_pos, mut local) = (true, false, false);
    // The source match, if any, holds every pod (for a `return` that stops all pod egress).
    let mut src_all = true;
    // Words other than the family, a plain pod-source match, counters and the verdict.
    let mut other = 0;
    let mut i = 0;
    while i < words.len() {
        let w = words[i];
        let next = words.get(i + 1).copied().unwrap_or_default();
        match w {
            "counter" => {
                // `counter packets N bytes M`.
                i += if next == "packets" { 5 } else { 1 };
                continue;
            }
            "ip" | "ip6" => {}
            "masquerade" => r.target = Some("MASQUERADE"),
            "snat" => r.target = Some("SNAT"),
            "return" | "accept" => r.ret = true,
            "saddr" if i > 0 && words[i - 1] == "fib" => {
                // `fib saddr type local`: host-originated traffic only.
                local |= words.get(i + 2) == Some(&"local");
                other += 1;
            }
            "saddr" => {
                let (neg, value) = if next == "!=" {
                    (true, words.get(i + 2).copied().unwrap_or_default())
                } else {
                    (false, next)
                };
                // Named or anonymous sets: their members are the CNI's pod pools.
                let set = value.starts_with('@') || value.starts_with('{');
                src_ok &= if neg {
                    !set && !covers_pod_range(value, pod_cidrs)
                } else {
                    set || pod_source_range(value, pod_cidrs)
                };
                src_all &= !neg && !set && covers_pod_range(value, pod_cidrs);
                if neg || set {
                    other += 1;
                }
                i += if neg { 3 } else { 2 };
                continue;
            }
            "daddr" => {
                dst_pos |= next != "!=";
                other += 1;
            }
            // Not the value of a `mark set …` statement.
            "mark" if next != "set" && !words[..i].contains(&"set") => {
                // `mark [& MASK] [==|!=] VALUE`.
                let mut j = i + 1;
                if words.get(j) == Some(&"&") {
                    j += 2;
                }
                let op = match words.get(j) {
                    Some(&o) if o == "==" || o == "!=" => {
                        j += 1;
                        o
                    }
                    _ => "==",
                };
                let value = words.get(j).copied().unwrap_or_default();
                let digits = value.trim_start_matches("0x");
                let zero = !digits.is_empty() && digits.chars().all(|c| c == '0');
                if zero != (op == "!=") {
                    r.unmarked = true;
                } else {
                    r.mark = true;
                }
                other += 1;
                i = j + 1;
                continue;
            }
            w if w.contains("fully-random") => r.random_fully = true,
            _ => other += 1,
        }
        i += 1;
    }
    r.bare = src_all && other == 0;
    r.pod_traffic = src_ok && !dst_pos && !r.mark && !r.unmarked && !local;
    r
}

/// `masquerade`/`snat` rules reachable from nat postrouting base chains, classified as
/// [`postrouting_masquerade`] does for iptables. Tables that iptables-nft manages are
/// skipped: their save lists the same rules.
pub fn nft_masquerade(
    path: &str,
    ruleset: &crate::parse::nft::NftRuleset,
    pod_cidrs: &[String],
) -> Vec<MasqueradeRule> {
    let mut out = Vec::new();
    for t in ruleset.tables.iter().filter(|t| t.iptables_nft.is_none()) {
        let mut reached: BTreeMap<&str, bool> = t
            .chains
            .iter()
            .filter(|c| {
                c.hook
                    .as_ref()
                    .is_some_and(|h| h.chain_type == "nat" && h.hook == "postrouting")
            })
            .map(|c| (c.name.as_str(), true))
            .collect();
        if reached.is_empty() {
            continue;
        }
        loop {
            let mut changed = false;
            let snapshot: Vec<(&str, bool)> = reached.iter().map(|(c, p)| (*c, *p)).collect();
            for (name, pod) in snapshot {
                let Some(chain) = t.chain(name) else { continue };
                let mut gated = false;
                for rule in &chain.rules {
                    let r = nft_nat_rule(&rule.text, pod_cidrs);
                    if r.ret {
                        gated |= r.unmarked || r.bare;
                        continue;
                    }
                    for target in &rule.targets {
                        let Some(tc) = t.chain(target) else { continue };
                        changed |= mark_reached(
                            &mut reached,
                            tc.name.as_str(),
                            pod && !gated && r.pod_traffic,
                        );
                    }
                }
            }
            if !changed {
                break;
            }
        }
        for (name, pod) in &reached {
            let Some(chain) = t.chain(name) else { continue };
            let (mut mark_gated, mut pod_gated) = (false, false);
            for rule in &chain.rules {
                let r = nft_nat_rule(&rule.text, pod_cidrs);
                if r.ret {
                    mark_gated |= r.unmarked;
                    pod_gated |= r.bare;
                    continue;
                }
                let Some(target) = r.target else { continue };
                let mark_only = mark_gated || r.mark;
                out.push(MasqueradeRule {
                    chain: format!("{} {}/{}", t.family, t.name, chain.name),
                    target: target.to_string(),
                    pod_egress: *pod && !mark_only && !pod_gated && r.pod_traffic,
                    mark_only,
                    random_fully: r.random_fully,
                    source: Some(Source::line(path, rule.line as u64)),
                });
            }
        }
    }
    out.sort_by_key(|r| r.source.as_ref().and_then(|s| s.line));
    out
}

/// `service-HASH-ns/svc/proto/port` -> `ns/svc/proto/port`.
fn chain_identity<'a>(chain: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = chain.strip_prefix(prefix)?;
    rest.split_once('-').map(|(_, id)| id)
}

/// Records that the POSTROUTING walk reaches `chain`, and whether pod traffic can reach
/// it; true when that is news (the walk repeats until nothing changes).
fn mark_reached<'a>(reached: &mut BTreeMap<&'a str, bool>, chain: &'a str, pod: bool) -> bool {
    match reached.get_mut(chain) {
        None => {
            reached.insert(chain, pod);
            true
        }
        Some(seen) if pod && !*seen => {
            *seen = true;
            true
        }
        Some(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_forward_invalid_drop_detected() {
        // kube-proxy 1.29+ filter table (nfacct counter before the jump), iptables-save -c.
        let save = r#"*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:KUBE-FORWARD - [0:0]
[0:0] -A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
[12:720] -A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name ct_state_invalid_dropped_pkts -j DROP
[0:0] -A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
[0:0] -A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
"#;
        let f = scan_iptables("ipt", "nft", "4", save, &[]).facts;
        assert!(f.kube_forward_invalid_drop);
        assert_eq!(f.invalid_drop_source, Some(Source::line("ipt", 6)));
        // Older kube-proxy: the plain form.
        let old = "*filter\n:KUBE-FORWARD - [0:0]\n-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\nCOMMIT\n";
        assert!(
            scan_iptables("ipt", "nft", "4", old, &[])
                .facts
                .kube_forward_invalid_drop
        );
        // Without it (be_liberal set, or pre-1.15 kube-proxy); a negated state, another
        // chain or the nat table do not count.
        for save in [
            "*filter\n-A KUBE-FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\nCOMMIT\n",
            "*filter\n-A KUBE-FORWARD -m conntrack ! --ctstate INVALID -j DROP\nCOMMIT\n",
            "*filter\n-A FORWARD -m conntrack --ctstate INVALID -j DROP\nCOMMIT\n",
            "*nat\n-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\nCOMMIT\n",
        ] {
            let f = scan_iptables("ipt", "nft", "4", save, &[]).facts;
            assert!(!f.kube_forward_invalid_drop, "{save}");
        }
    }

    #[test]
    fn nft_invalid_drop_detected() {
        assert!(is_ct_invalid_drop("ct state invalid drop"));
        assert!(is_ct_invalid_drop(
            "ct state invalid counter packets 3 bytes 180 drop"
        ));
        assert!(is_ct_invalid_drop("ct state { invalid } drop"));
        assert!(!is_ct_invalid_drop("ct state established,related accept"));
        assert!(!is_ct_invalid_drop(
            "ct state new jump service-endpoints-check"
        ));
        assert!(!is_ct_invalid_drop("ct state != invalid drop"));
        let ruleset = "table ip kube-proxy {
\tchain filter-forward {
\t\ttype filter hook forward priority -110; policy accept;
\t\tct state invalid drop
\t\tct state new jump endpoints-check
\t}
}
table ip filter {
\tchain forward {
\t\tct state invalid drop
\t}
}
";
        let rs = crate::parse::nft::parse_nft_ruleset(ruleset);
        let model = crate::parse::nft::kube_proxy::kube_proxy_nft_model(&rs);
        let scan = nft_from_model("nft", &rs, &model);
        assert_eq!(scan.invalid_drop, Some(Source::line("nft", 4)));
        // Only the kube-proxy table counts.
        let other = ruleset.replacen("\t\tct state invalid drop\n", "", 1);
        let rs = crate::parse::nft::parse_nft_ruleset(&other);
        let model = crate::parse::nft::kube_proxy::kube_proxy_nft_model(&rs);
        assert_eq!(nft_from_model("nft", &rs, &model).invalid_drop, None);
    }

    fn pods() -> Vec<String> {
        vec!["10.244.0.0/24".into(), "10.244.1.0/24".into()]
    }

    fn masq(save: &str) -> Vec<MasqueradeRule> {
        scan_iptables("ipt", "nft", "4", save, &pods())
            .facts
            .masquerade_rules
    }

    #[test]
    fn flannel_postrouting_masquerade_is_pod_egress() {
        // flannel v0.25 with kube-proxy, `iptables-save -c`.
        let save = r#"*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [31:2140]
:FLANNEL-POSTRTG - [0:0]
:KUBE-POSTROUTING - [0:0]
[31:2140] -A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
[31:2140] -A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG
[0:0] -A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "flanneld masq" -j RETURN
[2:120] -A FLANNEL-POSTRTG -s 10.244.0.0/24 -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j RETURN
[0:0] -A FLANNEL-POSTRTG -s 10.244.0.0/16 -d 10.244.0.0/24 -m comment --comment "flanneld masq" -j RETURN
[0:0] -A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.0.0/24 -m comment --comment "flanneld masq" -j RETURN
[9:540] -A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully
[0:0] -A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully
[31:2140] -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
[0:0] -A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
[0:0] -A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
COMMIT
"#;
        let m = masq(save);
        assert_eq!(m.len(), 3, "{m:?}");
        let flannel: Vec<_> = m.iter().filter(|r| r.chain == "FLANNEL-POSTRTG").collect();
        assert!(flannel[0].pod_egress && flannel[0].random_fully && !flannel[0].mark_only);
        assert_eq!(flannel[0].source, Some(Source::line("ipt", 12)));
        // Host-to-pod masquerade (`! -s` pods, `-d` pods) is not pod egress.
        assert!(!flannel[1].pod_egress);
        let kube = m.iter().find(|r| r.chain == "KUBE-POSTROUTING").unwrap();
        assert!(kube.mark_only && !kube.pod_egress && kube.random_fully);
        assert_eq!(kube.target, "MASQUERADE");
    }

    #[test]
    fn kube_proxy_alone_masquerades_no_pod_egress() {
        for file in [
            "kube-proxy-v1.20-legacy.txt",
            "kube-proxy-v1.29-legacy-counters.txt",
            "kube-proxy-v1.29-nft.txt",
        ] {
            let path = format!(
                "{}/../fixtures/raw/iptables/{file}",
                env!("CARGO_MANIFEST_DIR")
            );
            let text = std::fs::read_to_string(&path).unwrap();
            let m = masq(&text);
            assert_eq!(m.len(), 1, "{file}: {m:?}");
            assert!(m[0].mark_only && !m[0].pod_egress, "{file}");
            assert_eq!(m[0].chain, "KUBE-POSTROUTING");
            assert!(m[0].random_fully, "{file}");
        }
        // Pre-1.20 kube-proxy: the mark is on the MASQUERADE rule itself; no --random-fully.
        let old = "*nat\n-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -m mark --mark 0x4000/0x4000 -j MASQUERADE\nCOMMIT\n";
        let m = masq(old);
        assert!(m[0].mark_only && !m[0].pod_egress && !m[0].random_fully);
    }

    #[test]
    fn cni_masquerade_forms() {
        // Calico: ipset of IPAM pools, reached from cali-POSTROUTING.
        let calico = r#"*nat
:POSTROUTING ACCEPT [0:0]
:cali-POSTROUTING - [0:0]
:cali-nat-outgoing - [0:0]
-A POSTROUTING -m comment --comment "cali:O3lYWMrLQYEMJtB5" -j cali-POSTROUTING
-A cali-POSTROUTING -m comment --comment "cali:Z-c7XtVd2Bq7s_hA" -j cali-fip-snat
-A cali-POSTROUTING -m comment --comment "cali:nYKhEzDlr11Jccal" -j cali-nat-outgoing
-A cali-nat-outgoing -m comment --comment "cali:flqWnvo8yq4ULQLa" -m set --match-set cali40masq-ipam-pools src -m set ! --match-set cali40all-ipam-pools dst -j MASQUERADE --random-fully
COMMIT
"#;
        let m = masq(calico);
        assert_eq!(m.len(), 1);
        assert!(m[0].pod_egress && m[0].random_fully);
        assert_eq!(m[0].chain, "cali-nat-outgoing");
        // ip-masq-agent: RETURNs for non-masquerade CIDRs, then a bare MASQUERADE.
        let agent = r#"*nat
:POSTROUTING ACCEPT [0:0]
:IP-MASQ - [0:0]
-A POSTROUTING -m comment --comment "ip-masq-agent: ensure nat POSTROUTING directs all non-LOCAL destination traffic to our custom IP-MASQ chain" -m addrtype ! --dst-type LOCAL -j IP-MASQ
-A IP-MASQ -d 10.0.0.0/8 -m comment --comment "ip-masq-agent: local traffic is not subject to MASQUERADE" -j RETURN
-A IP-MASQ -d 169.254.0.0/16 -m comment --comment "ip-masq-agent: local traffic is not subject to MASQUERADE" -j RETURN
-A IP-MASQ -m comment --comment "ip-masq-agent: outbound traffic is subject to MASQUERADE (must be last in chain)" -j MASQUERADE
COMMIT
"#;
        let f = scan_iptables("ipt", "legacy", "4", agent, &pods()).facts;
        assert!(f.masquerade_rules[0].pod_egress && !f.masquerade_rules[0].random_fully);
        assert_eq!(f.cloud_snat_chain.as_deref(), Some("IP-MASQ"));
        assert_eq!(f.cloud_snat_source, Some(Source::line("ipt", 3)));
        // AWS VPC CNI: SNAT to the primary address in its chained AWS-SNAT-CHAIN-*.
        let aws = r#"*nat
:POSTROUTING ACCEPT [0:0]
:AWS-SNAT-CHAIN-0 - [0:0]
:AWS-SNAT-CHAIN-1 - [0:0]
-A POSTROUTING -m comment --comment "AWS SNAT CHAIN" -j AWS-SNAT-CHAIN-0
-A AWS-SNAT-CHAIN-0 ! -d 172.31.0.0/16 -m comment --comment "AWS SNAT CHAIN" -j AWS-SNAT-CHAIN-1
-A AWS-SNAT-CHAIN-1 ! -o vlan+ -m comment --comment "AWS, SNAT" -m addrtype ! --dst-type LOCAL -j SNAT --to-source 172.31.20.5 --random-fully
COMMIT
"#;
        let f = scan_iptables("ipt", "legacy", "4", aws, &pods()).facts;
        assert_eq!(f.masquerade_rules.len(), 1);
        let r = &f.masquerade_rules[0];
        assert!(r.pod_egress && r.random_fully && r.target == "SNAT");
        assert_eq!(
            cloud_snat_kind(f.cloud_snat_chain.as_deref().unwrap()),
            Some("aws-vpc-cni")
        );
        // kube-router: ipset source, no --random-fully.
        let kr = "*nat\n-A POSTROUTING -m set --match-set kube-router-pod-subnets src -m set ! --match-set kube-router-pod-subnets dst -m comment --comment \"SNAT for pod egress\" -j MASQUERADE\nCOMMIT\n";
        let m = masq(kr);
        assert!(m[0].pod_egress && !m[0].random_fully);
        // The bridge plugin's ipMasq: one chain per pod, entered with the pod's /32.
        let bridge = r#"*nat
:POSTROUTING ACCEPT [0:0]
:CNI-3b1e8f5bdc3b4a5c2a2a1d6b - [0:0]
-A POSTROUTING -s 10.244.1.7/32 -m comment --comment "name: \"cbr0\" id: \"f0c4a1\"" -j CNI-3b1e8f5bdc3b4a5c2a2a1d6b
-A CNI-3b1e8f5bdc3b4a5c2a2a1d6b -d 10.244.1.0/24 -m comment --comment "name: \"cbr0\" id: \"f0c4a1\"" -j ACCEPT
-A CNI-3b1e8f5bdc3b4a5c2a2a1d6b ! -d 224.0.0.0/4 -m comment --comment "name: \"cbr0\" id: \"f0c4a1\"" -j MASQUERADE
COMMIT
"#;
        let m = masq(bridge);
        assert!(m[0].pod_egress && !m[0].random_fully, "{m:?}");
        // Old flannel and a hand-written rule straight in POSTROUTING.
        for save in [
            "*nat\n-A POSTROUTING -s 10.244.0.0/16 -d 10.244.0.0/16 -j RETURN\n-A POSTROUTING -s 10.244.0.0/16 ! -d 224.0.0.0/4 -j MASQUERADE\nCOMMIT\n",
            "*nat\n-A POSTROUTING -o eth0 -j MASQUERADE\nCOMMIT\n",
            "*nat\n-A POSTROUTING -s 10.0.0.0/8 ! -d 10.0.0.0/8 -j SNAT --to-source 192.0.2.7\nCOMMIT\n",
        ] {
            let m = masq(save);
            assert!(m.iter().any(|r| r.pod_egress), "{save}");
        }
    }

    #[test]
    fn masquerade_not_covering_pods() {
        for save in [
            // EX-11: Docker's bridge only.
            "*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE\nCOMMIT\n",
            // Another range that merely overlaps nothing of the pods'.
            "*nat\n-A POSTROUTING -s 10.245.0.0/16 -j MASQUERADE\nCOMMIT\n",
            // A positive destination: only traffic to that range.
            "*nat\n-A POSTROUTING -s 10.244.0.0/16 -d 192.168.50.0/24 -j MASQUERADE\nCOMMIT\n",
            // Host-originated traffic only.
            "*nat\n-A POSTROUTING -m addrtype --src-type LOCAL -j MASQUERADE\nCOMMIT\n",
            // The jump into the chain is restricted to Docker's range.
            "*nat\n-A POSTROUTING -s 172.17.0.0/16 -j MY-MASQ\n-A MY-MASQ -j MASQUERADE\nCOMMIT\n",
            // Unreachable: nothing jumps to the chain.
            "*nat\n-A CNI-ORPHAN -s 10.244.0.0/16 -j MASQUERADE\nCOMMIT\n",
            // A pod-source RETURN (or ACCEPT) first.
            "*nat\n-A POSTROUTING -s 10.244.0.0/16 -j RETURN\n-A POSTROUTING -j MASQUERADE\nCOMMIT\n",
            "*nat\n-A POSTROUTING -j ACCEPT\n-A POSTROUTING -j MASQUERADE\nCOMMIT\n",
            // Wrong table.
            "*filter\n-A POSTROUTING -s 10.244.0.0/16 -j MASQUERADE\nCOMMIT\n",
        ] {
            let m = masq(save);
            assert!(!m.iter().any(|r| r.pod_egress), "{save}: {m:?}");
        }
        assert!(masq("*nat\n-A CNI-ORPHAN -s 10.244.0.0/16 -j MASQUERADE\nCOMMIT\n").is_empty());
        // One pod's RETURN leaves the others masqueraded.
        let one = "*nat\n-A POSTROUTING -s 10.244.1.7/32 -j RETURN\n-A POSTROUTING -s 10.244.0.0/16 -j MASQUERADE\nCOMMIT\n";
        assert!(masq(one)[0].pod_egress);
        // Without pod CIDRs only source-less rules can be judged.
        let f = scan_iptables(
            "ipt",
            "nft",
            "4",
            "*nat\n-A POSTROUTING -s 10.244.0.0/16 -j MASQUERADE\nCOMMIT\n",
            &[],
        )
        .facts;
        assert!(!f.masquerade_rules[0].pod_egress);
    }

    #[test]
    fn pod_range_coverage() {
        let p = pods();
        assert!(covers_pod_range("10.244.0.0/16", &p));
        assert!(covers_pod_range("10.244.1.0/24", &p));
        assert!(covers_pod_range("0.0.0.0/0", &p));
        assert!(!covers_pod_range("10.244.1.0/25", &p));
        assert!(pod_source_range("10.244.1.0/25", &p));
        assert!(pod_source_range("10.244.1.7/32", &p));
        assert!(pod_source_range("10.0.0.0/8", &p));
        assert!(!pod_source_range("10.245.0.0/16", &p));
        assert!(!pod_source_range("172.17.0.0/16", &p));
        assert!(!covers_pod_range("172.17.0.0/16", &p));
        assert!(!covers_pod_range("10.244.1.7", &p));
        assert!(!covers_pod_range("fd00::/8", &p));
        assert!(!covers_pod_range("garbage/xx", &p));
    }

    fn nft_masq(ruleset: &str) -> Vec<MasqueradeRule> {
        nft_masquerade(
            "nft",
            &crate::parse::nft::parse_nft_ruleset(ruleset),
            &pods(),
        )
    }

    #[test]
    fn nft_flannel_and_kube_proxy_masquerade() {
        // flannel's nftables mode (v0.25+) next to kube-proxy's nftables mode.
        let ruleset = "table ip flannel-ipv4 {
\tcomment \"rules for flanneld\"
\tchain postrtg {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tmeta mark 0x00004000 return
\t\tip saddr 10.244.0.0/24 ip daddr 10.244.0.0/16 return
\t\tip saddr 10.244.0.0/16 ip daddr 10.244.0.0/24 return
\t\tip saddr != 10.244.0.0/16 ip daddr 10.244.0.0/24 return
\t\tip saddr 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random
\t\tip saddr != 10.244.0.0/16 ip daddr 10.244.0.0/16 masquerade fully-random
\t}
}
table ip kube-proxy {
\tchain masquerading {
\t\tmeta mark & 0x00004000 == 0x00000000 return
\t\tmeta mark set meta mark ^ 0x00004000
\t\tmasquerade fully-random
\t}
\tchain nat-postrouting {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tjump masquerading
\t}
}
";
        let m = nft_masq(ruleset);
        assert_eq!(m.len(), 3, "{m:?}");
        assert_eq!(m[0].chain, "ip flannel-ipv4/postrtg");
        assert!(m[0].pod_egress && m[0].random_fully);
        assert_eq!(m[0].source, Some(Source::line("nft", 9)));
        assert!(!m[1].pod_egress);
        assert_eq!(m[2].chain, "ip kube-proxy/masquerading");
        assert!(m[2].mark_only && !m[2].pod_egress);
        // Without fully-random, and with counters and a comment naming the verdict.
        let plain = "table inet nat {
\tchain postrouting {
\t\ttype nat hook postrouting priority 100; policy accept;
\t\tip saddr 10.244.0.0/16 oifname \"eth0\" counter packets 12 bytes 720 masquerade comment \"pod egress\"
\t}
}
";
        let m = nft_masq(plain);
        assert!(m[0].pod_egress && !m[0].random_fully);
        let commented = plain
            .replace("masquerade comment", "accept comment")
            .replace("pod egress", "masquerade fully-random");
        assert!(nft_masq(&commented).is_empty());
    }

    #[test]
    fn nft_fixture_rulesets() {
        let dir = format!("{}/../fixtures/raw/nft", env!("CARGO_MANIFEST_DIR"));
        // kube-proxy nftables mode: only its mark-gated masquerade.
        let text = std::fs::read_to_string(format!("{dir}/kube-proxy-v1.31.txt")).unwrap();
        let m = nft_masq(&text);
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(m[0].mark_only && m[0].random_fully && !m[0].pod_egress);
        // iptables-nft's tables are left to the iptables save.
        let text = std::fs::read_to_string(format!("{dir}/iptables-nft-tables.txt")).unwrap();
        assert!(nft_masq(&text).is_empty());
    }

    #[test]
    fn nft_rule_words() {
        let p = pods();
        let r = nft_nat_rule(
            "ip saddr @cali40masq-ipam-pools ip daddr != @cali40all-ipam-pools masquerade",
            &p,
        );
        assert!(r.pod_traffic && r.target == Some("MASQUERADE") && !r.random_fully);
        let r = nft_nat_rule("fib saddr type local masquerade", &p);
        assert!(!r.pod_traffic);
        let r = nft_nat_rule("oifname \"eth0\" snat ip to 192.0.2.7 fully-random", &p);
        assert!(r.pod_traffic && r.target == Some("SNAT") && r.random_fully);
        let r = nft_nat_rule("counter packets 3 bytes 180 return", &p);
        assert!(r.ret && r.bare);
        let r = nft_nat_rule("ip saddr 10.244.0.0/16 return", &p);
        assert!(r.ret && r.bare);
        let r = nft_nat_rule("ip saddr 10.244.1.7 return", &p);
        assert!(r.ret && !r.bare);
        let r = nft_nat_rule("meta l4proto tcp return", &p);
        assert!(r.ret && !r.bare);
        for (rule, mark, unmarked) in [
            ("meta mark 0x00004000 return", true, false),
            ("meta mark & 0x00004000 == 0x00000000 return", false, true),
            (
                "meta mark & 0x00004000 != 0x00004000 counter packets 9 bytes 324 return",
                false,
                true,
            ),
            ("meta mark & 0x00004000 != 0x00000000 return", true, false),
            ("ct mark 0x0 return", false, true),
        ] {
            let r = nft_nat_rule(rule, &p);
            assert_eq!((r.mark, r.unmarked), (mark, unmarked), "{rule}");
        }
        let r = nft_nat_rule("ip saddr != 10.244.0.0/16 masquerade", &p);
        assert!(!r.pod_traffic);
        let r = nft_nat_rule("ip saddr { 10.244.0.0/16, 10.245.0.0/16 } masquerade", &p);
        assert!(r.pod_traffic);
        let r = nft_nat_rule("meta mark set meta mark ^ 0x00004000", &p);
        assert!(!r.mark && !r.unmarked);
        let r = nft_nat_rule("ip daddr 10.244.0.0/16 accept", &p);
        assert!(r.ret && !r.bare);
    }

    #[test]
    fn iptables_service_join() {
        let save = r#"*nat
:KUBE-SERVICES - [0:0]
:KUBE-SVC-TCOU7JCQXEZGVUNU - [0:0]
:KUBE-SEP-7QBKTOBWZOW2ADYZ - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A KUBE-SEP-7QBKTOBWZOW2ADYZ -p udp -m comment --comment "kube-system/kube-dns:dns" -m udp -j DNAT --to-destination 10.244.1.7:53
-A KUBE-SERVICES -d 10.96.0.10/32 -p udp -m comment --comment "kube-system/kube-dns:dns cluster IP" -m udp --dport 53 -j KUBE-SVC-TCOU7JCQXEZGVUNU
-A KUBE-SVC-TCOU7JCQXEZGVUNU -m comment --comment "kube-system/kube-dns:dns -> 10.244.1.7:53" -j KUBE-SEP-7QBKTOBWZOW2ADYZ
COMMIT
*filter
:FORWARD DROP [0:0]
-A KUBE-SERVICES -d 10.96.112.40/32 -p tcp -m comment --comment "shop/cart:http has no endpoints" -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable
COMMIT
"#;
        let s = scan_iptables("ipt", "nft", "4", save, &["10.244.0.0/16".into()]);
        let (chain, src) = &s.service_rules["10.96.0.10:53/udp"];
        assert_eq!(chain, "KUBE-SVC-TCOU7JCQXEZGVUNU");
        assert_eq!(src.line, Some(7));
        let t = s.chain_targets(chain);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].0, "10.244.1.7:53");
        assert!(s.reject_rules.contains_key("10.96.112.40:80/tcp"));
        assert!(s.facts.kube_services_hooked);
        assert_eq!(s.facts.forward_policy.as_deref(), Some("DROP"));
        assert!(!s.facts.forward_accepts_pods);
        assert_eq!(s.facts.rule_count, 5);
        assert_eq!(s.facts.kube_svc_chain_count, 1);
    }

    /// A CentOS-style `-A FORWARD -j REJECT` before flannel's accept (captured from both
    /// backends): the order-aware evaluation stops at the REJECT, the old "an accept
    /// exists" scan did not.
    #[test]
    fn forward_reject_before_cni_accept_real_dumps() {
        for (name, save) in [
            (
                "legacy",
                include_str!("../../../fixtures/raw/iptables/flannel-forward-reject-legacy.txt"),
            ),
            (
                "nft",
                include_str!("../../../fixtures/raw/iptables/flannel-forward-reject-nft.txt"),
            ),
        ] {
            let f = scan_iptables("ipt", name, "4", save, &["10.244.0.0/16".into()]).facts;
            assert_eq!(f.forward_pod_verdict.as_deref(), Some("reject"), "{name}");
            assert!(!f.forward_accepts_pods, "{name}");
            assert_eq!(
                f.forward_block_rule.as_deref(),
                Some("-A FORWARD -j REJECT --reject-with icmp-host-prohibited"),
                "{name}"
            );
            let line = f.forward_block_source.and_then(|s| s.line).expect("line");
            assert_eq!(
                save.lines().nth(line as usize - 1),
                Some("-A FORWARD -j REJECT --reject-with icmp-host-prohibited")
            );
            // The same dump with the REJECT after flannel's accept passes.
            let fixed = save.replace(
                "-A FORWARD -j REJECT --reject-with icmp-host-prohibited\n-A FORWARD -m comment --comment \"flanneld forward\" -j FLANNEL-FWD\n",
                "-A FORWARD -m comment --comment \"flanneld forward\" -j FLANNEL-FWD\n-A FORWARD -j REJECT --reject-with icmp-host-prohibited\n",
            );
            assert_ne!(fixed, save);
            let f = scan_iptables("ipt", name, "4", &fixed, &["10.244.0.0/16".into()]).facts;
            assert_eq!(f.forward_pod_verdict.as_deref(), Some("accept"), "{name}");
            assert!(f.forward_accepts_pods);
            assert_eq!(f.forward_block_rule, None);
        }
    }

    /// kube-proxy's own FORWARD rules with a healthy flannel: the mark-0x4000 accept does
    /// not apply to a pod's own connection (mark 0 after the veth), flannel's does.
    #[test]
    fn forward_kube_proxy_rules_accept_via_cni() {
        let save = include_str!("../../../fixtures/raw/iptables/kube-proxy-v1.29-legacy.txt");
        let f = scan_iptables("ipt", "legacy", "4", save, &["10.244.0.0/16".into()]).facts;
        // Policy ACCEPT, nothing rejects a plain pod-to-pod flow.
        assert_eq!(f.forward_pod_verdict.as_deref(), Some("accept"));
        let dropped = save.replace(":FORWARD ACCEPT", ":FORWARD DROP");
        let f = scan_iptables("ipt", "legacy", "4", &dropped, &["10.244.0.0/16".into()]).facts;
        assert_eq!(f.forward_pod_verdict.as_deref(), Some("drop"));
        assert!(
            f.forward_block_rule
                .as_deref()
                .is_some_and(|r| r.contains("policy DROP"))
        );
    }
}

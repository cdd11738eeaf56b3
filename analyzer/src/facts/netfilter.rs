//! Dataplane extraction for the fact builder: a narrow one-pass scan of
//! iptables-save for per-backend summaries (hooks, hint/canary chains, FORWARD
//! policy, localnet and INVALID DROPs, duplicates, incompatible tables), and adapters over
//! `crate::parse` for the Service joins (iptables and nftables kube-proxy models, IPVS).
//!
//! They read only what the fact model needs (Service rules, DNAT targets,
//! counters), line by line, keeping line numbers for evidence, and never
//! panic on malformed input (an unknown line is skipped). Full-fidelity
//! parsing lives in `crate::parse`; these scans stay narrow on purpose so a
//! 100,000-rule save or a 1,000,000-entry table is one pass with bounded memory.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use super::build::{cidr_contains, service_key};
use super::model::{IptablesBackendFacts, Source};

/// Splits an iptables-save rule into words, keeping double-quoted strings whole (quotes
/// removed); words without quotes borrow from the line.
pub fn split_words(line: &str) -> Vec<Cow<'_, str>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    let mut escaped = false;
    let mut has = false;
    // Start of the current word when it is still a plain slice of `line`.
    let mut plain: Option<usize> = None;
    for (i, c) in line.char_indices() {
        if escaped {
            cur.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quotes => escaped = true,
            '"' => {
                in_quotes = !in_quotes;
                has = true;
                if let Some(start) = plain.take() {
                    cur.push_str(&line[start..i]);
                }
            }
            c if c.is_whitespace() && !in_quotes => {
                if let Some(start) = plain.take() {
                    out.push(Cow::Borrowed(&line[start..i]));
                } else if has || !cur.is_empty() {
                    out.push(Cow::Owned(std::mem::take(&mut cur)));
                }
                has = false;
            }
            c => {
                if has || !cur.is_empty() {
                    cur.push(c);
                } else if plain.is_none() {
                    plain = Some(i);
                }
            }
        }
    }
    if let Some(start) = plain {
        out.push(Cow::Borrowed(&line[start..]));
    } else if has || !cur.is_empty() {
        out.push(Cow::Owned(cur));
    }
    out
}

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
    jump: Option<&'a str>,
    comment: Option<&'a str>,
    has_mark_0x4000: bool,
    /// `--ctstate` lists `INVALID` (not negated).
    ctstate_invalid: bool,
    in_if: Option<&'a str>,
    out_if: Option<&'a str>,
}

fn rule_args<'a>(words: &'a [Cow<'a, str>]) -> RuleArgs<'a> {
    let mut a = RuleArgs::default();
    let mut i = 0;
    let mut negate = false;
    while i < words.len() {
        let w = words[i].as_ref();
        let next = words.get(i + 1).map(AsRef::as_ref);
        let take = |slot: &mut Option<&'a str>| {
            if !negate {
                *slot = next;
            }
        };
        match w {
            "!" => {
                negate = true;
                i += 1;
                continue;
            }
            "-A" => a.chain = next.unwrap_or_default(),
            "-d" | "--destination" => take(&mut a.dst),
            "-s" | "--source" => take(&mut a.src),
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
                if !negate && next.is_some_and(|m| m.starts_with("0x4000")) {
                    a.has_mark_0x4000 = true;
                }
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
        let wanted = table == "filter"
            || chain == "KUBE-FIREWALL"
            || (table == "nat" && (chain == "PREROUTING" || chain == "OUTPUT"));
        if !wanted {
            continue;
        }
        let words = split_words(body);
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
    if let Some((count, first)) = dup
        .values()
        .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
        .copied()
    {
        f.max_duplicate_rule = count;
        f.duplicate_source = Some(Source::line(path, first));
    }
    let model = crate::parse::iptables::kube_proxy::kube_proxy_model(
        &crate::parse::iptables::parse_iptables_save(text),
    );
    apply_iptables_model(&mut s, path, &model);
    s
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
                Some((super::build::ip_port(ip, p), Source::line(path, line)))
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
                address: super::build::ip_port(&rs.address.to_string(), rs.port),
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
                    super::build::ip_port(ip, p),
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

/// `service-HASH-ns/svc/proto/port` -> `ns/svc/proto/port`.
fn chain_identity<'a>(chain: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = chain.strip_prefix(prefix)?;
    rest.split_once('-').map(|(_, id)| id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_quoted_comments() {
        let w = split_words(r#"-A X -m comment --comment "a b: c" -j Y"#);
        assert_eq!(
            w,
            ["-A", "X", "-m", "comment", "--comment", "a b: c", "-j", "Y"]
        );
    }

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
}

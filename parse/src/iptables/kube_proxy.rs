//! The kube-proxy iptables-mode model: what the dataplane of one node does for
//! each Service port, read back from an `iptables-save` dump.
//!
//! Covers kube-proxy 1.20 to current: `KUBE-SERVICES` matches with comments
//! `"ns/svc:port cluster IP"` (and the unsuffixed older forms), `KUBE-SVC-*`
//! endpoint selection with `statistic --probability`, `KUBE-SEP-*` DNAT,
//! `KUBE-SVL-*` (>= 1.24) and `KUBE-XLB-*` (older) local-policy chains,
//! `KUBE-EXT-*`, `KUBE-FW-*`, `KUBE-NODEPORTS`, `-m recent` session affinity,
//! and the filter-table "has no endpoints" REJECT/DROP rules.
//!
//! [`ServicePortRules`] is shared with the nftables-mode model
//! ([`crate::nft::kube_proxy`]), so services from either mode join on
//! [`ServicePortRules::key`] = (vip, port, protocol).

use std::collections::BTreeMap;

// Chain names are hashed once per rule of a 100,000-rule dump: foldhash, not SipHash.
type HashMap<K, V> = foldhash::HashMap<K, V>;
type HashSet<T> = foldhash::HashSet<T>;

use serde::{Deserialize, Serialize};

use super::{IptablesDump, Rule, Table};

/// How a service port is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FrontendKind {
    /// The ClusterIP.
    ClusterIp,
    /// A `spec.externalIPs` address.
    ExternalIp,
    /// A `status.loadBalancer.ingress` address.
    LoadBalancerIp,
    /// An address whose kind the rules do not say (nftables `service-ips` entries to `external-*`).
    External,
}

/// An address:port that leads to the service (besides the node ports).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Frontend {
    /// Kind of address.
    pub kind: FrontendKind,
    /// Destination address, without `/32` or `/128`.
    pub ip: String,
    /// Destination port.
    pub port: Option<u16>,
    /// Chain the match jumps to.
    pub chain: String,
    /// 1-based line of the match.
    pub line: usize,
}

/// The node port of a service port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NodePort {
    /// Port number on the node.
    pub port: u16,
    /// Chain the match jumps to (`KUBE-EXT-*`, older `KUBE-SVC-*`/`KUBE-XLB-*`, nft `external-*`).
    pub chain: String,
    /// 1-based line of the match.
    pub line: usize,
}

/// One endpoint the dataplane can send the service's traffic to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ServiceEndpoint {
    /// Endpoint chain (`KUBE-SEP-*` or nft `endpoint-*`).
    pub chain: String,
    /// DNAT destination address (from the endpoint chain, else from the rule comment).
    pub ip: Option<String>,
    /// DNAT destination port.
    pub port: Option<u16>,
    /// Probability as written on the selecting rule (`None`: the last, unconditional rule).
    pub probability: Option<f64>,
    /// Effective share of new connections this endpoint gets (0..=1).
    pub share: f64,
    /// 1-based line of the selecting rule (`KUBE-SVC-*` rule or nft `numgen` rule).
    pub line: usize,
    /// 1-based line of the DNAT rule in the endpoint chain.
    pub dnat_line: Option<usize>,
}

/// A rule that rejects or drops traffic because a service has no (local) endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NoEndpointsRule {
    /// Chain (`KUBE-SERVICES`, `KUBE-EXTERNAL-SERVICES`, `KUBE-SVL-*`) or nft map name.
    pub chain: String,
    /// Destination address matched, if any.
    pub ip: Option<String>,
    /// Destination port matched (service port or node port).
    pub port: Option<u16>,
    /// Verdict: `REJECT`, `DROP`, `KUBE-MARK-DROP`, nft `goto reject-chain`, `drop`.
    pub verdict: String,
    /// True for "has no local endpoints" (externalTrafficPolicy=Local on a node without one).
    pub local_only: bool,
    /// 1-based line.
    pub line: usize,
}

/// Everything the dataplane has for one Service port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ServicePortRules {
    /// Service namespace.
    pub namespace: String,
    /// Service name.
    pub name: String,
    /// Service port name (empty for an unnamed port).
    pub port_name: String,
    /// Protocol, lower case (`tcp`, `udp`, `sctp`).
    pub protocol: String,
    /// ClusterIP, without prefix length.
    pub vip: Option<String>,
    /// Service port.
    pub port: Option<u16>,
    /// 1-based line of the ClusterIP match (or of the no-endpoints rule that gave the VIP).
    pub line: Option<usize>,
    /// Cluster-policy chain (`KUBE-SVC-*`, nft `service-*`).
    pub svc_chain: Option<String>,
    /// Local-policy chain (`KUBE-SVL-*`, older `KUBE-XLB-*`, nft `local-*`? not used by nft today).
    pub local_chain: Option<String>,
    /// External-traffic chain (`KUBE-EXT-*`, nft `external-*`).
    pub ext_chain: Option<String>,
    /// Load-balancer source-range firewall chain (`KUBE-FW-*`, nft `firewall-*`).
    pub fw_chain: Option<String>,
    /// External and load-balancer addresses.
    pub external: Vec<Frontend>,
    /// Node port, if the service has one.
    pub node_port: Option<NodePort>,
    /// Endpoints reached through the cluster-policy chain.
    pub endpoints: Vec<ServiceEndpoint>,
    /// Endpoints reached through the local-policy chain.
    pub local_endpoints: Vec<ServiceEndpoint>,
    /// True if ClientIP session affinity rules are present (`-m recent`, nft `affinity-*` sets).
    pub session_affinity: bool,
    /// "has no endpoints" reject/drop rules.
    pub no_endpoints: Vec<NoEndpointsRule>,
    /// True if some rule rejects/drops all traffic for lack of any endpoint (not just local ones).
    pub no_endpoints_reject: bool,
}

impl ServicePortRules {
    /// The join key with other sources: (ClusterIP, port, protocol).
    pub fn key(&self) -> Option<(&str, u16, &str)> {
        Some((self.vip.as_deref()?, self.port?, self.protocol.as_str()))
    }

    /// `ns/name:port` as kube-proxy writes it (`ns/name` for an unnamed port).
    pub fn svc_port_name(&self) -> String {
        if self.port_name.is_empty() {
            format!("{}/{}", self.namespace, self.name)
        } else {
            format!("{}/{}:{}", self.namespace, self.name, self.port_name)
        }
    }

    pub(crate) fn new(ns: &str, name: &str, port_name: &str, protocol: &str) -> Self {
        ServicePortRules {
            namespace: ns.to_string(),
            name: name.to_string(),
            port_name: port_name.to_string(),
            protocol: protocol.to_ascii_lowercase(),
            vip: None,
            port: None,
            line: None,
            svc_chain: None,
            local_chain: None,
            ext_chain: None,
            fw_chain: None,
            external: Vec::new(),
            node_port: None,
            endpoints: Vec::new(),
            local_endpoints: Vec::new(),
            session_affinity: false,
            no_endpoints: Vec::new(),
            no_endpoints_reject: false,
        }
    }

    pub(crate) fn add_external(&mut self, f: Frontend) {
        if !self
            .external
            .iter()
            .any(|e| e.ip == f.ip && e.port == f.port && e.kind == f.kind)
        {
            self.external.push(f);
        }
    }
}

/// The kube-proxy iptables-mode model of a dump.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct KubeProxyIptables {
    /// Service ports, sorted by (namespace, name, port name, protocol).
    pub services: Vec<ServicePortRules>,
    /// Rules in the whole dump.
    pub rule_count: usize,
    /// Rules in `KUBE-*` chains.
    pub kube_rule_count: usize,
    /// Declared `KUBE-*` chains over all tables.
    pub kube_chain_count: usize,
    /// Declared `KUBE-SEP-*` chains.
    pub sep_chain_count: usize,
    /// True if `KUBE-SVL-*`/`KUBE-EXT-*` chains exist (kube-proxy >= 1.24 layout).
    pub svl_ext_layout: bool,
    /// True if `KUBE-XLB-*` chains exist (kube-proxy < 1.24 layout).
    pub xlb_layout: bool,
}

/// Rules of each chain. iptables-save prints a chain's rules together, so each chain
/// is usually one contiguous slice and the map is keyed once per chain, not per rule.
struct ChainIndex<'a> {
    runs: HashMap<&'a str, Vec<&'a [Rule]>>,
}

impl<'a> ChainIndex<'a> {
    fn new(rules: &'a [Rule]) -> Self {
        let mut runs: HashMap<&'a str, Vec<&'a [Rule]>> = HashMap::default();
        let mut start = 0;
        for i in 1..=rules.len() {
            if i == rules.len() || rules[i].chain != rules[start].chain {
                runs.entry(rules[start].chain.as_str())
                    .or_default()
                    .push(&rules[start..i]);
                start = i;
            }
        }
        ChainIndex { runs }
    }

    fn slices(&self, chain: &str) -> &[&'a [Rule]] {
        self.runs.get(chain).map_or(&[], Vec::as_slice)
    }

    fn rules(&self, chain: &str) -> impl Iterator<Item = &'a Rule> + '_ {
        self.slices(chain).iter().flat_map(|s| s.iter())
    }

    fn names(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.runs.keys().copied()
    }
}

/// Key of a service port while building the model.
type SvcKey = (String, String, String, String);

/// Splits a kube-proxy comment into its service port name and the rest:
/// `"ns/svc:port cluster IP"` -> (`ns`, `svc`, `port`, `cluster IP`).
pub fn split_service_comment(comment: &str) -> Option<(&str, &str, &str, &str)> {
    let comment = comment.trim();
    let (word, rest) = match comment.find(' ') {
        Some(i) => (&comment[..i], comment[i + 1..].trim()),
        None => (comment, ""),
    };
    let (ns, name_port) = word.split_once('/')?;
    if ns.is_empty() || name_port.is_empty() || name_port.contains('/') {
        return None;
    }
    let (name, port) = name_port.split_once(':').unwrap_or((name_port, ""));
    if name.is_empty() {
        return None;
    }
    Some((ns, name, port, rest))
}

/// Strips `/32` or `/128` from a host address.
pub fn host_addr(s: &str) -> &str {
    s.strip_suffix("/32")
        .or_else(|| s.strip_suffix("/128"))
        .unwrap_or(s)
}

/// Splits `ip:port` or `[ip6]:port`.
pub fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (ip, port) = rest.split_once(']')?;
        return Some((ip, port.strip_prefix(':').and_then(|p| p.parse().ok())));
    }
    match s.rsplit_once(':') {
        // A bare IPv6 address has several colons and no port.
        Some((ip, port)) if !ip.contains(':') => Some((ip, port.parse().ok())),
        _ => Some((s, None)),
    }
}

fn first_port(s: Option<&str>) -> Option<u16> {
    s?.split([',', ':']).next()?.parse().ok()
}

const SERVICE_CHAIN_PREFIXES: [&str; 5] = [
    "KUBE-SVC-",
    "KUBE-SVL-",
    "KUBE-EXT-",
    "KUBE-FW-",
    "KUBE-XLB-",
];

fn chain_hash(chain: &str) -> Option<&str> {
    SERVICE_CHAIN_PREFIXES
        .iter()
        .find_map(|p| chain.strip_prefix(p))
}

/// Builds the kube-proxy model from a dump. Never fails: a dump without kube-proxy rules
/// gives an empty service list.
pub fn kube_proxy_model(dump: &IptablesDump) -> KubeProxyIptables {
    let mut services: BTreeMap<SvcKey, ServicePortRules> = BTreeMap::new();
    let empty = Table {
        name: String::new(),
        line: 0,
        commit_line: None,
        chains: Vec::new(),
        rules: Vec::new(),
    };
    let nat = dump.table("nat").unwrap_or(&empty);
    let filter = dump.table("filter").unwrap_or(&empty);

    let by_chain = ChainIndex::new(&nat.rules);
    // Only service-level chains are looked up by name; skipping the (many) KUBE-SEP-*
    // chains keeps this set small.
    let nat_chains: HashSet<&str> = nat
        .chains
        .iter()
        .map(|c| c.name.as_str())
        .chain(by_chain.names())
        .filter(|c| chain_hash(c).is_some())
        .collect();

    // 1. Frontends in nat KUBE-SERVICES.
    for r in by_chain.rules("KUBE-SERVICES") {
        let target = r.target_name();
        if chain_hash(target).is_none() {
            continue;
        }
        let Some(svc) = service_for(&mut services, r) else {
            continue;
        };
        let (_, _, _, suffix) = r
            .comment
            .as_deref()
            .and_then(split_service_comment)
            .unwrap_or_default();
        let kind = match suffix {
            "cluster IP" => FrontendKind::ClusterIp,
            "external IP" => FrontendKind::ExternalIp,
            "loadbalancer IP" => FrontendKind::LoadBalancerIp,
            _ if target.starts_with("KUBE-SVC-") || target.starts_with("KUBE-SVL-") => {
                FrontendKind::ClusterIp
            }
            _ => FrontendKind::External,
        };
        let ip = r.destination.as_deref().map(host_addr);
        let port = first_port(r.dport.as_deref());
        if kind == FrontendKind::ClusterIp {
            if svc.vip.is_some() {
                continue;
            }
            svc.vip = ip.map(str::to_string);
            svc.port = port;
            svc.line = Some(r.line);
            assign_chain(svc, target);
        } else if let Some(ip) = ip {
            svc.add_external(Frontend {
                kind,
                ip: ip.to_string(),
                port,
                chain: target.to_string(),
                line: r.line,
            });
            assign_chain(svc, target);
        }
    }

    // 2. Node ports.
    for r in by_chain.rules("KUBE-NODEPORTS") {
        let target = r.target_name();
        if chain_hash(target).is_none() {
            continue;
        }
        let Some(svc) = service_for(&mut services, r) else {
            continue;
        };
        if let (None, Some(port)) = (&svc.node_port, first_port(r.dport.as_deref())) {
            svc.node_port = Some(NodePort {
                port,
                chain: target.to_string(),
                line: r.line,
            });
        }
        assign_chain(svc, target);
    }

    // 3. Related chains (they share the hash) and endpoints.
    for svc in services.values_mut() {
        let hash = [
            &svc.svc_chain,
            &svc.local_chain,
            &svc.ext_chain,
            &svc.fw_chain,
        ]
        .into_iter()
        .flatten()
        .find_map(|c| chain_hash(c))
        .map(str::to_string);
        if let Some(h) = hash {
            for prefix in SERVICE_CHAIN_PREFIXES {
                let name = format!("{prefix}{h}");
                if nat_chains.contains(name.as_str()) {
                    assign_chain(svc, &name);
                }
            }
        }
        if let Some(c) = svc.svc_chain.clone() {
            let (eps, affinity, drops) = endpoints_of(&by_chain, &c);
            svc.endpoints = eps;
            svc.session_affinity |= affinity;
            svc.no_endpoints.extend(drops);
        }
        if let Some(c) = svc.local_chain.clone() {
            let (eps, affinity, drops) = endpoints_of(&by_chain, &c);
            svc.local_endpoints = eps;
            svc.session_affinity |= affinity;
            svc.no_endpoints.extend(drops);
        }
    }

    // 4. Filter-table "has no endpoints" rules.
    for r in &filter.rules {
        if r.chain != "KUBE-SERVICES" && r.chain != "KUBE-EXTERNAL-SERVICES" {
            continue;
        }
        let Some((_, _, _, suffix)) = r.comment.as_deref().and_then(split_service_comment) else {
            continue;
        };
        let local_only = match suffix {
            "has no endpoints" => false,
            "has no local endpoints" => true,
            _ => continue,
        };
        let Some(svc) = service_for(&mut services, r) else {
            continue;
        };
        let ip = r.destination.as_deref().map(host_addr);
        let port = first_port(r.dport.as_deref());
        // Services without endpoints have no nat rules: the filter rule is where the VIP is.
        if svc.vip.is_none() && r.chain == "KUBE-SERVICES" && !local_only {
            svc.vip = ip.map(str::to_string);
            svc.port = port;
            svc.line = Some(r.line);
        }
        svc.no_endpoints.push(NoEndpointsRule {
            chain: r.chain.clone(),
            ip: ip.map(str::to_string),
            port,
            verdict: r.target_name().to_string(),
            local_only,
            line: r.line,
        });
    }

    let mut services: Vec<ServicePortRules> = services.into_values().collect();
    for s in &mut services {
        s.no_endpoints_reject = s.no_endpoints.iter().any(|n| !n.local_only);
    }

    let mut kube_chain_count = 0;
    let mut sep_chain_count = 0;
    let mut svl_ext = false;
    let mut xlb = false;
    for t in &dump.tables {
        for c in &t.chains {
            if c.name.starts_with("KUBE-") {
                kube_chain_count += 1;
            }
            sep_chain_count += usize::from(c.name.starts_with("KUBE-SEP-"));
            svl_ext |= c.name.starts_with("KUBE-SVL-") || c.name.starts_with("KUBE-EXT-");
            xlb |= c.name.starts_with("KUBE-XLB-");
        }
    }
    let kube_rule_count = dump
        .tables
        .iter()
        .flat_map(|t| &t.rules)
        .filter(|r| r.chain.starts_with("KUBE-"))
        .count();
    KubeProxyIptables {
        services,
        rule_count: dump.rule_count(),
        kube_rule_count,
        kube_chain_count,
        sep_chain_count,
        svl_ext_layout: svl_ext,
        xlb_layout: xlb,
    }
}

fn service_for<'a>(
    services: &'a mut BTreeMap<SvcKey, ServicePortRules>,
    r: &Rule,
) -> Option<&'a mut ServicePortRules> {
    let (ns, name, port, _) = r.comment.as_deref().and_then(split_service_comment)?;
    let proto = r.protocol.as_deref().unwrap_or("tcp").to_ascii_lowercase();
    let key = (ns.to_string(), name.to_string(), port.to_string(), proto);
    Some(services.entry(key).or_insert_with(|| {
        ServicePortRules::new(ns, name, port, r.protocol.as_deref().unwrap_or("tcp"))
    }))
}

fn assign_chain(svc: &mut ServicePortRules, chain: &str) {
    let slot = if chain.starts_with("KUBE-SVC-") {
        &mut svc.svc_chain
    } else if chain.starts_with("KUBE-SVL-") || chain.starts_with("KUBE-XLB-") {
        &mut svc.local_chain
    } else if chain.starts_with("KUBE-EXT-") {
        &mut svc.ext_chain
    } else if chain.starts_with("KUBE-FW-") {
        &mut svc.fw_chain
    } else {
        return;
    };
    if slot.is_none() {
        *slot = Some(chain.to_string());
    }
}

/// Endpoints selected by a `KUBE-SVC-*`/`KUBE-SVL-*`/`KUBE-XLB-*` chain, whether
/// `-m recent` affinity is used, and its "has no local endpoints" drops.
fn endpoints_of(
    by_chain: &ChainIndex<'_>,
    chain: &str,
) -> (Vec<ServiceEndpoint>, bool, Vec<NoEndpointsRule>) {
    let mut eps = Vec::new();
    let mut affinity = false;
    let mut drops = Vec::new();
    let mut remaining = 1.0_f64;
    for r in by_chain.rules(chain) {
        let target = r.target_name();
        if !target.starts_with("KUBE-SEP-") {
            let suffix = r
                .comment
                .as_deref()
                .and_then(split_service_comment)
                .map(|c| c.3);
            if let Some(s @ ("has no local endpoints" | "has no endpoints")) = suffix {
                drops.push(NoEndpointsRule {
                    chain: chain.to_string(),
                    ip: None,
                    port: None,
                    verdict: target.to_string(),
                    local_only: s == "has no local endpoints",
                    line: r.line,
                });
            }
            continue;
        }
        if r.has_token("--rcheck") {
            affinity = true;
            continue;
        }
        let p = r.probability;
        let share = remaining * p.unwrap_or(1.0).clamp(0.0, 1.0);
        remaining -= share;
        // The comment `ns/svc:p -> ip:port` (>= 1.22) names the endpoint even if its chain is missing.
        let from_comment = r
            .comment
            .as_deref()
            .and_then(|c| c.split_once(" -> "))
            .and_then(|(_, hp)| split_host_port(hp.trim()));
        let sep_rules = by_chain.slices(target);
        let dnat = sep_rules
            .iter()
            .flat_map(|s| s.iter())
            .find(|s| s.target_name() == "DNAT");
        if sep_rules
            .iter()
            .flat_map(|s| s.iter())
            .any(|s| s.has_token("--set") && s.has_pair("-m", "recent"))
        {
            affinity = true;
        }
        let from_dnat = dnat
            .and_then(|d| d.to_destination.as_deref())
            .and_then(split_host_port);
        let (ip, port) = match from_dnat.or(from_comment) {
            Some((ip, port)) => (Some(ip.to_string()), port),
            None => (None, None),
        };
        eps.push(ServiceEndpoint {
            chain: target.to_string(),
            ip,
            port,
            probability: p,
            share: round9(share),
            line: r.line,
            dnat_line: dnat.map(|d| d.line),
        });
    }
    (eps, affinity, drops)
}

/// Rounds to 9 decimals so shares print stably (kernel probabilities have ~10 digits).
pub(crate) fn round9(x: f64) -> f64 {
    (x * 1e9).round() / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comment_forms() {
        assert_eq!(
            split_service_comment("ns1/svc1:p80 cluster IP"),
            Some(("ns1", "svc1", "p80", "cluster IP"))
        );
        assert_eq!(
            split_service_comment("default/nginx"),
            Some(("default", "nginx", "", ""))
        );
        assert_eq!(split_service_comment("kubernetes forwarding rules"), None);
        assert_eq!(split_host_port("[fd00::5]:80"), Some(("fd00::5", Some(80))));
        assert_eq!(split_host_port("10.0.0.1:53"), Some(("10.0.0.1", Some(53))));
    }
}

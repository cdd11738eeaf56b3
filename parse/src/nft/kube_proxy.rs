//! The kube-proxy nftables-mode model (kube-proxy >= 1.29, `--proxy-mode=nftables`).
//!
//! Reads `table ip kube-proxy` / `table ip6 kube-proxy`: the `service-ips` and
//! `service-nodeports` verdict maps (`VIP . proto . port : goto service-HASH-ns/name/proto/port`),
//! the `service-*`/`local-*` chains (`numgen random mod N vmap { 0 : goto endpoint-... }`),
//! the `endpoint-*` chains (`dnat to IP:PORT`), `affinity-*` sets, `firewall-ips`,
//! and the `no-endpoint-services`/`no-endpoint-nodeports` maps. The result uses the
//! same [`ServicePortRules`] as the iptables model, so both join on
//! (vip, port, protocol).

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use super::{NftChain, NftRuleset, NftTable};
use crate::iptables::kube_proxy::{
    Frontend, FrontendKind, NoEndpointsRule, NodePort, ServiceEndpoint, ServicePortRules, round9,
    split_host_port, split_service_comment,
};

/// The kube-proxy nftables-mode model of a ruleset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct KubeProxyNft {
    /// `family name` of each kube-proxy table found (`ip kube-proxy`, `ip6 kube-proxy`).
    pub tables: Vec<String>,
    /// Service ports over all kube-proxy tables, sorted by (namespace, name, port name, protocol, vip).
    pub services: Vec<ServicePortRules>,
    /// Rules in the kube-proxy tables.
    pub rule_count: usize,
    /// Chains in the kube-proxy tables.
    pub chain_count: usize,
    /// `endpoint-*` chains.
    pub endpoint_chain_count: usize,
}

/// Service identity parsed from a chain name such as
/// `service-ULMVA6XW-ns1/svc1/tcp/p80` or `endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ChainName<'a> {
    prefix: &'a str,
    namespace: &'a str,
    name: &'a str,
    protocol: &'a str,
    port_name: &'a str,
}

fn parse_chain_name(chain: &str) -> Option<ChainName<'_>> {
    let (prefix, rest) = chain.split_once('-')?;
    if !matches!(
        prefix,
        "service" | "local" | "external" | "endpoint" | "firewall" | "affinity"
    ) {
        return None;
    }
    let (_hash, rest) = rest.split_once('-')?;
    let svc = rest.split("__").next()?;
    let mut parts = svc.splitn(4, '/');
    let namespace = parts.next()?;
    let name = parts.next()?;
    let protocol = parts.next()?;
    let port_name = parts.next().unwrap_or("");
    Some(ChainName {
        prefix,
        namespace,
        name,
        protocol,
        port_name,
    })
}

type Key = (String, String, String, String);

fn key_of(c: &ChainName<'_>) -> Key {
    (
        c.namespace.to_string(),
        c.name.to_string(),
        c.port_name.to_string(),
        c.protocol.to_string(),
    )
}

fn goto_target(value: &str) -> Option<&str> {
    value
        .strip_prefix("goto ")
        .or_else(|| value.strip_prefix("jump "))
        .map(str::trim)
}

/// Builds the kube-proxy nftables-mode model. Never fails: a ruleset without a
/// kube-proxy table gives an empty model.
pub fn kube_proxy_nft_model(r: &NftRuleset) -> KubeProxyNft {
    let mut model = KubeProxyNft {
        tables: Vec::new(),
        services: Vec::new(),
        rule_count: 0,
        chain_count: 0,
        endpoint_chain_count: 0,
    };
    for t in r
        .tables
        .iter()
        .filter(|t| t.name == "kube-proxy" && matches!(t.family.as_str(), "ip" | "ip6" | "inet"))
    {
        model.tables.push(format!("{} {}", t.family, t.name));
        model.rule_count += t.rule_count();
        model.chain_count += t.chains.len();
        model.endpoint_chain_count += t
            .chains
            .iter()
            .filter(|c| c.name.starts_with("endpoint-"))
            .count();
        model.services.extend(table_services(t));
    }
    model.services.sort_by(|a, b| {
        (&a.namespace, &a.name, &a.port_name, &a.protocol, &a.vip).cmp(&(
            &b.namespace,
            &b.name,
            &b.port_name,
            &b.protocol,
            &b.vip,
        ))
    });
    model
}

fn table_services(t: &NftTable) -> Vec<ServicePortRules> {
    let mut services: BTreeMap<Key, ServicePortRules> = BTreeMap::new();
    let cluster_ips: HashSet<&str> = t
        .set("cluster-ips")
        .map(|s| {
            s.elements
                .iter()
                .filter_map(|e| e.key.first().map(String::as_str))
                .collect()
        })
        .unwrap_or_default();
    let lb_ips: HashSet<&str> = t
        .set("firewall-ips")
        .map(|s| {
            s.elements
                .iter()
                .filter_map(|e| e.key.first().map(String::as_str))
                .collect()
        })
        .unwrap_or_default();

    let entry = |services: &mut BTreeMap<Key, ServicePortRules>, c: &ChainName<'_>| -> Key {
        let k = key_of(c);
        services
            .entry(k.clone())
            .or_insert_with(|| ServicePortRules::new(c.namespace, c.name, c.port_name, c.protocol));
        k
    };

    // service-ips: VIP . proto . port : goto chain
    if let Some(map) = t.set("service-ips") {
        for e in &map.elements {
            let Some(target) = e.value.as_deref().and_then(goto_target) else {
                continue;
            };
            let Some(cn) = parse_chain_name(target) else {
                continue;
            };
            let k = entry(&mut services, &cn);
            let Some(svc) = services.get_mut(&k) else {
                continue;
            };
            let ip = e.key.first().cloned().unwrap_or_default();
            let port = e.key.get(2).and_then(|p| p.parse().ok());
            match cn.prefix {
                "service" | "local" if svc.vip.is_none() => {
                    svc.vip = Some(ip);
                    svc.port = port;
                    svc.line = Some(e.line);
                }
                _ => svc.add_external(Frontend {
                    kind: if lb_ips.contains(ip.as_str()) {
                        FrontendKind::LoadBalancerIp
                    } else {
                        FrontendKind::External
                    },
                    ip,
                    port,
                    chain: target.to_string(),
                    line: e.line,
                }),
            }
            assign(svc, cn.prefix, target);
        }
    }

    // service-nodeports: proto . port : goto chain
    if let Some(map) = t.set("service-nodeports") {
        for e in &map.elements {
            let Some(target) = e.value.as_deref().and_then(goto_target) else {
                continue;
            };
            let Some(cn) = parse_chain_name(target) else {
                continue;
            };
            let k = entry(&mut services, &cn);
            if let (Some(svc), Some(port)) = (
                services.get_mut(&k),
                e.key.get(1).and_then(|p| p.parse().ok()),
            ) {
                svc.node_port.get_or_insert(NodePort {
                    port,
                    chain: target.to_string(),
                    line: e.line,
                });
                assign(svc, cn.prefix, target);
            }
        }
    }

    // firewall-ips: LB IP . proto . port : goto firewall-...
    if let Some(map) = t.set("firewall-ips") {
        for e in &map.elements {
            if let Some(target) = e.value.as_deref().and_then(goto_target)
                && let Some(cn) = parse_chain_name(target)
            {
                let k = entry(&mut services, &cn);
                if let Some(svc) = services.get_mut(&k) {
                    assign(svc, cn.prefix, target);
                }
            }
        }
    }

    // Chains that exist without a map entry still belong to their service.
    for c in &t.chains {
        if let Some(cn) = parse_chain_name(&c.name)
            && matches!(cn.prefix, "service" | "local" | "external" | "firewall")
        {
            let k = entry(&mut services, &cn);
            if let Some(svc) = services.get_mut(&k) {
                assign(svc, cn.prefix, &c.name);
            }
        }
    }

    // Endpoints.
    for svc in services.values_mut() {
        if let Some(c) = svc.svc_chain.as_deref().and_then(|n| t.chain(n)) {
            let (eps, affinity) = endpoints_of(t, c);
            svc.endpoints = eps;
            svc.session_affinity |= affinity;
        }
        if let Some(c) = svc.local_chain.as_deref().and_then(|n| t.chain(n)) {
            let (eps, affinity) = endpoints_of(t, c);
            svc.local_endpoints = eps;
            svc.session_affinity |= affinity;
        }
    }

    // no-endpoint-services / no-endpoint-nodeports (element comment = "ns/svc:port").
    for (map_name, has_ip) in [
        ("no-endpoint-services", true),
        ("no-endpoint-nodeports", false),
    ] {
        let Some(map) = t.set(map_name) else {
            continue;
        };
        for e in &map.elements {
            let Some((ns, name, port_name, _)) =
                e.comment.as_deref().and_then(split_service_comment)
            else {
                continue;
            };
            let (ip, proto, port) = if has_ip {
                (e.key.first().cloned(), e.key.get(1), e.key.get(2))
            } else {
                (None, e.key.first(), e.key.get(1))
            };
            let proto = proto.map_or("tcp", String::as_str);
            let port: Option<u16> = port.and_then(|p| p.parse().ok());
            let k = (
                ns.to_string(),
                name.to_string(),
                port_name.to_string(),
                proto.to_string(),
            );
            let svc = services
                .entry(k)
                .or_insert_with(|| ServicePortRules::new(ns, name, port_name, proto));
            let verdict = e.value.clone().unwrap_or_default();
            // kube-proxy uses `goto reject-chain` when there are no endpoints at all and
            // `drop` when only the traffic policy's (local) endpoints are missing.
            let local_only = verdict == "drop";
            if svc.vip.is_none()
                && let Some(ip) = ip.as_deref()
                && cluster_ips.contains(ip)
            {
                svc.vip = Some(ip.to_string());
                svc.port = port;
                svc.line = Some(e.line);
            }
            svc.no_endpoints.push(NoEndpointsRule {
                chain: map_name.to_string(),
                ip,
                port,
                verdict,
                local_only,
                line: e.line,
            });
        }
    }

    let mut out: Vec<ServicePortRules> = services.into_values().collect();
    for s in &mut out {
        s.no_endpoints_reject = s.no_endpoints.iter().any(|n| !n.local_only);
    }
    out
}

fn assign(svc: &mut ServicePortRules, prefix: &str, chain: &str) {
    let slot = match prefix {
        "service" => &mut svc.svc_chain,
        "local" => &mut svc.local_chain,
        "external" => &mut svc.ext_chain,
        "firewall" => &mut svc.fw_chain,
        _ => return,
    };
    if slot.is_none() {
        *slot = Some(chain.to_string());
    }
}

/// Endpoints chosen by a service/local chain's `numgen random mod N vmap { ... }`,
/// and whether affinity sets are consulted.
fn endpoints_of(t: &NftTable, chain: &NftChain) -> (Vec<ServiceEndpoint>, bool) {
    let mut eps = Vec::new();
    let mut affinity = false;
    for r in &chain.rules {
        if r.text.contains(" @affinity-") {
            affinity = true;
            continue;
        }
        if !r.text.contains("numgen random mod") {
            continue;
        }
        let n = r
            .text
            .split("numgen random mod ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse::<u32>().ok())
            .unwrap_or(0);
        let share = if n > 0 { 1.0 / f64::from(n) } else { 0.0 };
        for target in r.targets.iter().filter(|x| x.starts_with("endpoint-")) {
            let dnat = t
                .chain(target)
                .and_then(|c| c.rules.iter().find(|x| x.text.contains("dnat ")));
            let hp = dnat.and_then(|d| dnat_destination(&d.text));
            let (ip, port) = match hp.and_then(split_host_port) {
                Some((ip, port)) => (Some(ip.to_string()), port),
                None => (None, None),
            };
            eps.push(ServiceEndpoint {
                chain: target.clone(),
                ip,
                port,
                probability: Some(round9(share)),
                share: round9(share),
                line: r.line,
                dnat_line: dnat.map(|d| d.line),
            });
        }
    }
    (eps, affinity)
}

/// `... dnat to 10.0.0.1:80`, `dnat ip to ...`, `dnat ip6 to [fd00::1]:80`.
fn dnat_destination(text: &str) -> Option<&str> {
    let rest = text.split("dnat ").nth(1)?;
    let rest = rest
        .strip_prefix("ip to ")
        .or_else(|| rest.strip_prefix("ip6 to "))
        .or_else(|| rest.strip_prefix("to "))?;
    rest.split_whitespace().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_names() {
        let c = parse_chain_name("endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80").unwrap();
        assert_eq!(
            (c.prefix, c.namespace, c.name, c.protocol, c.port_name),
            ("endpoint", "ns1", "svc1", "tcp", "p80")
        );
        assert!(parse_chain_name("services").is_none());
        assert_eq!(
            dnat_destination("meta l4proto tcp dnat to [fd00::2]:53"),
            Some("[fd00::2]:53")
        );
    }
}

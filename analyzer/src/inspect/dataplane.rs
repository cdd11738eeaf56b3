//! What the node's dataplane has for each Service port: kube-proxy's iptables
//! chains, its nftables table, or an IPVS virtual service. Used by the
//! `services` view's DATAPLANE column.
//!
//! This view computes no join of its own: it reads the per-port dataplane state of the
//! fact document (`crate::facts`, the Service port <-> dataplane join with its choice of
//! the live iptables backend), so `inspect services` shows what the rules judge.

use std::collections::HashMap;

use netsnap_bundle::k8s::ServiceRecord;
use serde::Serialize;

use crate::facts::Facts;
use crate::facts::model::ServicePortFacts;

/// The per-port dataplane state of a bundle's facts, by Service.
#[derive(Default)]
pub struct Dataplane {
    /// Whether any dataplane artifact (an iptables save, the nft ruleset, the IPVS table)
    /// was read.
    collected: bool,
    /// `namespace/name` -> the Service's ports, one per ClusterIP and port.
    services: HashMap<String, Vec<ServicePortFacts>>,
}

/// What one Service port has in each dataplane.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PortDataplane {
    /// Cluster IP.
    pub vip: String,
    /// `port/PROTO`.
    pub port: String,
    /// iptables: endpoints (KUBE-SEP chains) behind the KUBE-SVC chain; None when absent.
    pub iptables_endpoints: Option<usize>,
    /// iptables: a "has no endpoints" REJECT/DROP rule exists.
    pub iptables_no_endpoints_rule: bool,
    /// nftables kube-proxy: endpoints; None when absent.
    pub nft_endpoints: Option<usize>,
    /// IPVS: real servers of the virtual service; None when absent.
    pub ipvs_real_servers: Option<usize>,
}

impl Dataplane {
    /// The dataplane state the facts joined for every Service port.
    pub fn from_facts(facts: Facts) -> Dataplane {
        let collected =
            !facts.iptables.backends.is_empty() || facts.nft.collected || facts.ipvs.collected;
        let services = facts
            .services
            .into_iter()
            .map(|s| (s.key, s.ports))
            .collect();
        Dataplane {
            collected,
            services,
        }
    }

    /// True when no dataplane artifact was readable.
    pub fn is_empty(&self) -> bool {
        !self.collected
    }

    /// Per cluster IP and port, what each dataplane has.
    pub fn for_service(&self, s: &ServiceRecord) -> Vec<PortDataplane> {
        let Some(ports) = self.services.get(&format!("{}/{}", s.namespace, s.name)) else {
            return Vec::new();
        };
        ports
            .iter()
            .map(|p| PortDataplane {
                vip: p.vip.clone(),
                port: format!("{}/{}", p.port, p.protocol),
                iptables_endpoints: p.iptables.present.then_some(p.iptables.endpoints.len()),
                iptables_no_endpoints_rule: p.iptables.reject,
                nft_endpoints: p.nft.present.then_some(p.nft.endpoints.len()),
                ipvs_real_servers: p.ipvs.present.then_some(p.ipvs.real_servers.len()),
            })
            .collect()
    }
}

/// One cell: per mechanism, how many of the Service's ports it programs and the
/// endpoint count (`iptables 2/2 ports, 1 ep`); `MISSING` when the node has
/// dataplane data but nothing for this Service.
pub fn summarize(ports: &[PortDataplane]) -> String {
    if ports.is_empty() {
        return "-".into();
    }
    let n = ports.len();
    let mut parts = Vec::new();
    let mech = |name: &str, counts: Vec<usize>, extra: &str| -> Option<String> {
        if counts.is_empty() {
            return None;
        }
        let eps: usize = counts.iter().copied().max().unwrap_or(0);
        Some(format!(
            "{name} {}/{n} ports, {eps} ep{extra}",
            counts.len()
        ))
    };
    let ipt: Vec<usize> = ports.iter().filter_map(|p| p.iptables_endpoints).collect();
    let reject = ports.iter().any(|p| p.iptables_no_endpoints_rule);
    if let Some(s) = mech("iptables", ipt, "") {
        parts.push(s);
    } else if reject {
        parts.push("iptables REJECT (no endpoints)".into());
    }
    if let Some(s) = mech(
        "nft",
        ports.iter().filter_map(|p| p.nft_endpoints).collect(),
        "",
    ) {
        parts.push(s);
    }
    if let Some(s) = mech(
        "ipvs",
        ports.iter().filter_map(|p| p.ipvs_real_servers).collect(),
        "",
    ) {
        parts.push(s);
    }
    if parts.is_empty() {
        "MISSING".into()
    } else {
        parts.join("; ")
    }
}

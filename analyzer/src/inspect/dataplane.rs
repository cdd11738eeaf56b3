//! What the node's dataplane has for each Service port: kube-proxy's iptables
//! chains, its nftables table, or an IPVS virtual service. Used by the
//! `services` view's DATAPLANE column.

use std::net::IpAddr;

use netsnap_bundle::k8s::ServiceRecord;
use netsnap_bundle::{Bundle, layout};
use serde::Serialize;

use super::InspectError;
use super::data;
use crate::parse::iptables::{self, KubeProxyIptables, ServicePortRules};
use crate::parse::ipvs::{self, IpvsProtocol, IpvsTable, ServiceKey};
use crate::parse::nft;

/// The dataplane models a bundle has (each None when its artifact is absent).
#[derive(Default)]
pub struct Dataplane {
    iptables: Option<KubeProxyIptables>,
    nft: Option<Vec<ServicePortRules>>,
    ipvs: Option<IpvsTable>,
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
    /// Loads whatever dataplane artifacts the bundle has.
    pub fn load(bundle: &Bundle) -> Result<Dataplane, InspectError> {
        let mut dp = Dataplane::default();
        for p in [
            layout::iptables::SAVE,
            layout::iptables::LEGACY_SAVE,
            layout::iptables::NFT_SAVE,
        ] {
            if let Some(t) = data::text(bundle, p)? {
                let model = iptables::kube_proxy_model(&iptables::parse_iptables_save(&t));
                if !model.services.is_empty() || dp.iptables.is_none() {
                    dp.iptables = Some(model);
                }
                if dp.iptables.as_ref().is_some_and(|m| !m.services.is_empty()) {
                    break;
                }
            }
        }
        if let Some(t) = data::text(bundle, layout::nft::RULESET)? {
            let model = nft::kube_proxy::kube_proxy_nft_model(&nft::parse_nft_ruleset(&t));
            dp.nft = Some(model.services);
        }
        let ipvs_text = match data::text(bundle, layout::ipvs::LIST)? {
            Some(t) => Some(t),
            None => data::text(bundle, layout::ipvs::PROC)?,
        };
        dp.ipvs = ipvs_text.map(|t| ipvs::parse_ipvs_list(&t));
        Ok(dp)
    }

    /// True when no dataplane artifact was readable.
    pub fn is_empty(&self) -> bool {
        self.iptables.is_none() && self.nft.is_none() && self.ipvs.is_none()
    }

    /// Per cluster IP and port, what each dataplane has.
    pub fn for_service(&self, s: &ServiceRecord) -> Vec<PortDataplane> {
        let mut out = Vec::new();
        for vip in &s.cluster_ips {
            let Ok(vip_ip) = vip.parse::<IpAddr>() else {
                continue; // headless: `None`
            };
            for p in &s.ports {
                let Ok(port) = u16::try_from(p.port) else {
                    continue;
                };
                let proto = p.protocol.to_ascii_lowercase();
                let find = |svcs: &[ServicePortRules]| {
                    svcs.iter()
                        .find(|r| r.key() == Some((vip.as_str(), port, proto.as_str())))
                        .cloned()
                };
                let ipt = self.iptables.as_ref().and_then(|m| find(&m.services));
                let nft = self.nft.as_ref().and_then(|m| find(m));
                let ipvs_proto = IpvsProtocol::from_name(&p.protocol.to_ascii_uppercase());
                let ipvs_rs = self.ipvs.as_ref().and_then(|t| {
                    t.service(&ServiceKey::Address {
                        protocol: ipvs_proto,
                        address: vip_ip,
                        port,
                    })
                    .map(|s| s.real_servers.len())
                });
                out.push(PortDataplane {
                    vip: vip.clone(),
                    port: format!("{}/{}", p.port, p.protocol),
                    iptables_endpoints: ipt
                        .as_ref()
                        .filter(|r| r.svc_chain.is_some() || !r.endpoints.is_empty())
                        .map(|r| r.endpoints.len()),
                    iptables_no_endpoints_rule: ipt
                        .as_ref()
                        .is_some_and(|r| !r.no_endpoints.is_empty()),
                    nft_endpoints: nft.map(|r| r.endpoints.len()),
                    ipvs_real_servers: ipvs_rs,
                });
            }
        }
        out
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

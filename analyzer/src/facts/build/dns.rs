//! DNS facts: the cluster DNS Service, its pods, and the probes the collector ran.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use netsnap_bundle::layout;
use netsnap_bundle::native::DnsProbeReport;

use super::*;

impl Builder<'_> {
    pub(super) fn dns(&mut self) {
        let Some(report) = self.read_json::<DnsProbeReport>(layout::dns::PROBES) else {
            // Still name the cluster DNS from the API.
            if let Some(s) = self.facts.services.iter().find(|s| s.is_cluster_dns) {
                self.facts.dns.service_ips = s.cluster_ips.clone();
                self.facts.dns.endpoint_ips = s
                    .endpoints
                    .iter()
                    .filter(|e| e.ready)
                    .map(|e| e.ip.clone())
                    .collect();
            }
            return;
        };
        let d = &mut self.facts.dns;
        d.service_ips = report
            .cluster_dns
            .service_ips
            .iter()
            .map(IpAddr::to_string)
            .collect();
        d.endpoint_ips = report
            .cluster_dns
            .endpoint_ips
            .iter()
            .map(IpAddr::to_string)
            .collect();
        let local_eps: HashSet<String> = self
            .facts
            .services
            .iter()
            .filter(|s| s.is_cluster_dns)
            .flat_map(|s| s.endpoints.iter().filter(|e| e.local).map(|e| e.ip.clone()))
            .collect();
        let mut per_server: BTreeMap<String, DnsServerSummary> = BTreeMap::new();
        for p in &report.probes {
            let answered = p.outcome != "timeout" && p.outcome != "error";
            let f = DnsProbeFacts {
                from_netns: p.from_netns.clone(),
                from_pod: p.from_pod.clone(),
                server: p.server.to_string(),
                role: p.server_role.clone(),
                transport: p.transport.clone(),
                qname: p.qname.clone(),
                outcome: p.outcome.clone(),
                latency_ms: p.latency_ms,
                answered,
                source: Some(Source::file(layout::dns::PROBES)),
            };
            let bump = |s: &mut DnsProbeSummary| {
                s.total += 1;
                if answered {
                    s.answered += 1;
                    if let Some(l) = p.latency_ms {
                        s.max_latency_ms = Some(s.max_latency_ms.map_or(l, |m: f64| m.max(l)));
                    }
                } else {
                    s.failed += 1;
                }
            };
            match p.server_role.as_str() {
                "service-vip" => bump(&mut d.vip),
                "endpoint" => {
                    let e =
                        per_server
                            .entry(f.server.clone())
                            .or_insert_with(|| DnsServerSummary {
                                server: f.server.clone(),
                                local: local_eps.contains(&f.server),
                                ..DnsServerSummary::default()
                            });
                    let mut tmp = DnsProbeSummary {
                        total: e.total,
                        answered: e.answered,
                        failed: e.failed,
                        max_latency_ms: e.max_latency_ms,
                    };
                    bump(&mut tmp);
                    e.total = tmp.total;
                    e.answered = tmp.answered;
                    e.failed = tmp.failed;
                    e.max_latency_ms = tmp.max_latency_ms;
                }
                _ => {}
            }
            d.probes.push(f);
        }
        d.endpoints = per_server.into_values().collect();
        d.node_local_ip = self
            .facts
            .links
            .iter()
            .find(|l| l.netns == layout::HOST_NETNS && l.name == "nodelocaldns")
            .and_then(|l| l.addresses.first().map(|a| strip_prefix_len(a)));
    }
}

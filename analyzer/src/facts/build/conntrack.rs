//! Conntrack facts: the kernel's statistics, and the glue around the table pass
//! ([`crate::facts::conntrack_table`]).

use std::net::IpAddr;

use netsnap_bundle::layout;

use super::*;

impl Builder<'_> {
    pub(super) fn conntrack_stats(&mut self) {
        // Stats, summed over CPUs by the conntrack parser.
        let stats_path = [layout::conntrack::STATS, layout::conntrack::PROC_STAT]
            .into_iter()
            .find(|p| self.bundle.artifact_file(p).is_some());
        if let Some(path) = stats_path
            && let Some((sums, srcs)) = self.stats_of(path)
        {
            self.facts.conntrack.stats = sums;
            self.facts.conntrack.stats_sources = srcs;
        }
        if self
            .bundle
            .artifact_file(layout::conntrack::PROC_STAT_2)
            .is_some()
            && let Some((a, _)) = self.stats_of(layout::conntrack::PROC_STAT)
            && let Some((b, _)) = self.stats_of(layout::conntrack::PROC_STAT_2)
        {
            self.facts.conntrack.stats_delta = Some(
                b.iter()
                    .map(|(k, v)| (k.clone(), v.saturating_sub(a.get(k).copied().unwrap_or(0))))
                    .collect(),
            );
        }
    }

    /// Everything the conntrack table pass needs, detached from the builder so it
    /// can run on another thread.
    pub(super) fn conntrack_table_job(&mut self) -> Option<ConntrackTableJob> {
        let path = conntrack_table_path(self.bundle)?;
        let file = match self.bundle.open_artifact(path) {
            Some(Ok(f)) => f,
            Some(Err(e)) => {
                self.note(format!("{path}: {e}"));
                return None;
            }
            None => return None,
        };
        // UDP Service ports by (VIP, port) -> (service, ready/serving endpoint IPs).
        let mut udp_services: FastMap<(IpAddr, u16), (String, FastSet<IpAddr>)> =
            FastMap::default();
        for s in &self.facts.services {
            for p in &s.ports {
                let (Ok(vip), Ok(port)) = (p.vip.parse::<IpAddr>(), u16::try_from(p.port)) else {
                    continue;
                };
                if p.protocol.eq_ignore_ascii_case("UDP") {
                    let eps = p
                        .serving_endpoint_ips
                        .iter()
                        .filter_map(|i| i.parse().ok())
                        .collect();
                    udp_services.insert((vip, port), (s.key.clone(), eps));
                }
            }
        }
        let live_pod_by_ip = self
            .facts
            .pods
            .iter()
            .filter(|p| p.live && !p.host_network)
            .flat_map(|p| p.ips.iter().map(move |ip| (ip.clone(), p.key.clone())))
            .collect();
        let dns_vips = self
            .facts
            .dns
            .service_ips
            .iter()
            .filter_map(|i| i.parse().ok())
            .collect();
        let pod_nets = ipv4_nets(&self.facts.node.cluster_pod_cidrs);
        Some(ConntrackTableJob {
            path,
            content: self
                .bundle
                .record(path)
                .map(|r| r.content.clone())
                .unwrap_or_default(),
            chunks: std::sync::Mutex::new(ChunkReader::new(file)),
            udp_services,
            live_pod_by_ip,
            dns_vips,
            pod_nets,
        })
    }

    pub(super) fn merge_conntrack_table(&mut self, r: ConntrackTableResult) {
        // Spelled out without `..`: a field added to the table pass cannot be forgotten here.
        let ConntrackFacts {
            count: _,
            max: _,
            usage_ratio: _,
            count_source: _,
            max_source: _,
            stats: _,
            stats_sources: _,
            stats_delta: _,
            entries,
            by_protocol,
            by_state,
            unreplied,
            unreplied_expecting_reply,
            top_destinations,
            stale_udp,
            stale_udp_count,
            not_dnated,
            not_dnated_count,
            dns_via_vip,
            unreplied_udp_ports,
            unreplied_backends,
            snat_destinations,
        } = r.facts;
        let ct = &mut self.facts.conntrack;
        ct.entries = entries;
        ct.by_protocol = by_protocol;
        ct.by_state = by_state;
        ct.unreplied = unreplied;
        ct.unreplied_expecting_reply = unreplied_expecting_reply;
        ct.top_destinations = top_destinations;
        ct.stale_udp = stale_udp;
        ct.stale_udp_count = stale_udp_count;
        ct.not_dnated = not_dnated;
        ct.not_dnated_count = not_dnated_count;
        ct.dns_via_vip = dns_via_vip;
        ct.unreplied_udp_ports = unreplied_udp_ports;
        ct.unreplied_backends = unreplied_backends;
        ct.snat_destinations = snat_destinations;
        self.facts.collection.notes.extend(r.notes);
    }
}

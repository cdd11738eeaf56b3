//! Dataplane facts: the iptables, nftables and IPVS scans, SNAT, the join of every
//! Service port with the live dataplane, and the kube-proxy mode.

use std::collections::{BTreeSet, HashMap, HashSet};

use netsnap_bundle::k8s::PodRecord;
use netsnap_bundle::native::NetnsSnapshot;
use netsnap_bundle::{ArtifactStatus, layout};

use super::*;
use crate::facts::netfilter::{self, IptablesScan, IpvsScan, NftScan};
use crate::parse;

impl Builder<'_> {
    pub(super) fn iptables(&mut self) -> Vec<IptablesScan> {
        let m = self.bundle.manifest();
        let candidates: Vec<(String, String, String)> = [
            (layout::iptables::LEGACY_SAVE, "legacy", "4"),
            (layout::iptables::NFT_SAVE, "nft", "4"),
            (layout::iptables::SAVE, "default", "4"),
            (layout::iptables::LEGACY_SAVE6, "legacy", "6"),
            (layout::iptables::NFT_SAVE6, "nft", "6"),
            (layout::iptables::SAVE6, "default", "6"),
        ]
        .iter()
        .filter(|(p, _, _)| m.artifact(p).is_some_and(|a| a.status.has_content()))
        .map(|(p, b, f)| {
            let backend = if *b == "default" {
                m.artifact(p)
                    .and_then(|a| a.attributes.get("backend").cloned())
                    .unwrap_or_else(|| "default".into())
            } else {
                b.to_string()
            };
            (p.to_string(), backend, f.to_string())
        })
        .collect();
        // Per backend and family, a complete dump before one cut short (a stable sort:
        // the explicit backend's save still comes before `iptables-save` when both are
        // whole), so a timed-out `iptables-nft-save` never hides a whole `iptables-save`.
        let mut candidates = candidates;
        candidates.sort_by_key(|(p, _, _)| {
            !m.artifact(p)
                .is_some_and(|a| a.status == ArtifactStatus::Ok && a.truncated.is_none())
        });
        let pod_cidrs = self.facts.node.cluster_pod_cidrs.clone();
        let mut scans: Vec<IptablesScan> = Vec::new();
        let mut seen: HashSet<(String, String)> = HashSet::new();
        for (path, backend, family) in candidates {
            // The default save duplicates one explicit backend; keep the explicit one.
            if !seen.insert((backend.clone(), family.clone())) {
                continue;
            }
            let Some((text, cuts)) = self.read_small_with_cuts(&path) else {
                continue;
            };
            let mut scan = netfilter::scan_iptables(&path, &backend, &family, &text, &pod_cidrs);
            // The save's parse coverage, from this parse (see `from_bundle_with_table_coverage`).
            if self.keep_table_coverage
                && let Some(rec) = self.bundle.record(&path)
                && rec.content == layout::content::IPTABLES_SAVE
            {
                let parsed = std::mem::take(&mut scan.unparsed);
                self.text_coverage
                    .push(crate::facts::coverage::text_coverage(
                        rec, &text, &cuts, parsed,
                    ));
            }
            scans.push(scan);
        }
        let facts = &mut self.facts.iptables;
        facts.backends = scans.iter().map(|s| s.facts.clone()).collect();
        facts.kube_backends = scans
            .iter()
            .filter(|s| s.facts.kube_chain_count > 0)
            .map(|s| s.facts.backend.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let v4: Vec<&IptablesScan> = scans.iter().filter(|s| s.facts.family == "4").collect();
        let live = v4
            .iter()
            .find(|s| s.facts.kubelet_hint)
            .or_else(|| v4.iter().find(|s| s.facts.kube_chain_count > 0))
            .or_else(|| v4.first());
        if let Some(l) = live {
            facts.live_backend = Some(l.facts.backend.clone());
            facts.rule_count = l.facts.rule_count;
        }
        scans
    }

    pub(super) fn ipvs(&mut self, snaps: &[NetnsSnapshot]) -> Option<IpvsScan> {
        if let Some(host) = snaps.iter().find(|s| s.netns == layout::HOST_NETNS)
            && let Some(k) = host.links.iter().find(|l| l.name == "kube-ipvs0")
        {
            self.facts.ipvs.kube_ipvs0 = true;
            self.facts.ipvs.kube_ipvs0_addresses = host
                .addrs
                .iter()
                .filter(|a| a.ifindex == k.index)
                .map(|a| a.address.to_string())
                .collect();
        }
        let path = [layout::ipvs::LIST, layout::ipvs::PROC]
            .into_iter()
            .find(|p| self.bundle.artifact_file(p).is_some())?;
        let text = self.read_small(path)?;
        let scan = netfilter::ipvs_from_table(path, &parse::ipvs::parse_ipvs_list(&text));
        self.facts.ipvs.collected = true;
        self.facts.ipvs.virtual_server_count = scan.services.len() as u64;
        self.facts.ipvs.real_server_count = scan
            .services
            .values()
            .map(|v| v.real_servers.len() as u64)
            .sum();
        Some(scan)
    }

    pub(super) fn nft(&mut self) -> Option<NftScan> {
        let text = self.read_small(layout::nft::RULESET)?;
        let ruleset = parse::nft::parse_nft_ruleset(&text);
        let model = parse::nft::kube_proxy::kube_proxy_nft_model(&ruleset);
        let scan = netfilter::nft_from_model(layout::nft::RULESET, &ruleset, &model);
        let n = &mut self.facts.nft;
        n.collected = true;
        n.tables = scan.tables.clone();
        n.kube_proxy_table = scan.kube_proxy_table.is_some();
        n.source = scan.kube_proxy_table.clone();
        n.service_ips_count = scan.service_ips.len() as u64;
        n.no_endpoint_services_count = scan.no_endpoint_services.len() as u64;
        n.kube_proxy_invalid_drop = scan.invalid_drop.is_some();
        n.invalid_drop_source = scan.invalid_drop.clone();
        self.facts.nft.masquerade_rules = netfilter::nft_masquerade(
            layout::nft::RULESET,
            &ruleset,
            &self.facts.node.cluster_pod_cidrs,
        );
        Some(scan)
    }

    pub(super) fn snat(&mut self) {
        self.facts.snat = snat_facts(&self.facts.iptables.backends, &self.facts.nft);
    }

    pub(super) fn join_dataplanes(
        &mut self,
        ipt: &[IptablesScan],
        ipvs: &Option<IpvsScan>,
        nft: &Option<NftScan>,
    ) {
        let live = self.facts.iptables.live_backend.clone();
        let live_pod_by_ip: HashMap<String, String> = self
            .facts
            .pods
            .iter()
            .filter(|p| p.live && !p.host_network)
            .flat_map(|p| p.ips.iter().map(move |ip| (ip.clone(), p.key.clone())))
            .collect();
        let bound: HashSet<String> = self
            .facts
            .ipvs
            .kube_ipvs0_addresses
            .iter()
            .cloned()
            .collect();
        let mut service_vips: HashSet<String> = HashSet::new();
        for svc in &mut self.facts.services {
            for port in &mut svc.ports {
                service_vips.insert(port.vip.clone());
                let fam = if port.vip.contains(':') { "6" } else { "4" };
                if let Some(scan) = ipt
                    .iter()
                    .find(|s| Some(&s.facts.backend) == live.as_ref() && s.facts.family == fam)
                {
                    let st = &mut port.iptables;
                    if let Some((chain, src)) = scan.service_rules.get(&port.key) {
                        st.present = true;
                        st.chain = Some(chain.clone());
                        st.sources.push(src.clone());
                        for (target, src) in scan.chain_targets(chain) {
                            if !st.endpoints.contains(&target) {
                                let ip = strip_port(&target);
                                st.endpoints.push(target);
                                if !st.endpoint_ips.contains(&ip) {
                                    st.endpoint_ips.push(ip);
                                }
                                st.sources.push(src);
                            }
                        }
                    }
                    if let Some(src) = scan.reject_rules.get(&port.key) {
                        st.reject = true;
                        st.sources.push(src.clone());
                    }
                    if let Some(src) = scan.no_local_drop.get(&svc.key) {
                        st.no_local_endpoints_drop = true;
                        st.sources.push(src.clone());
                    }
                }
                if let Some(scan) = ipvs
                    && let Some(vs) = scan.services.get(&port.key)
                {
                    let st = &mut port.ipvs;
                    st.present = true;
                    st.scheduler = Some(vs.scheduler.clone());
                    st.source = Some(vs.source.clone());
                    st.vip_bound = bound.contains(&port.vip);
                    st.real_servers = vs
                        .real_servers
                        .iter()
                        .map(|rs| RealServerFacts {
                            address: rs.address.clone(),
                            ip: rs.ip.clone(),
                            weight: rs.weight,
                            active_conns: rs.active,
                            inactive_conns: rs.inactive,
                            is_endpoint: port.serving_endpoint_ips.contains(&rs.ip),
                            pod: live_pod_by_ip.get(&rs.ip).cloned(),
                            source: Some(rs.source.clone()),
                        })
                        .collect();
                }
                if let Some(scan) = nft {
                    let st = &mut port.nft;
                    if let Some((chain, src)) = scan.service_ips.get(&port.key) {
                        st.present = true;
                        st.sources.push(src.clone());
                        for (t, src) in scan.endpoints_of(chain) {
                            st.endpoints.push(t);
                            st.sources.push(src);
                        }
                    }
                    if let Some(src) = scan.no_endpoint_services.get(&port.key) {
                        st.no_endpoints = true;
                        st.sources.push(src.clone());
                    }
                }
            }
        }
        if let Some(scan) = ipvs {
            self.facts.ipvs.service_virtual_servers = scan
                .services
                .values()
                .filter(|v| service_vips.contains(&v.ip))
                .count() as u64;
        }
    }

    pub(super) fn proxy_mode(&mut self, _pods: &[(u64, PodRecord)]) {
        let mut planes = Vec::new();
        let live = self.facts.iptables.live_backend.clone();
        if self
            .facts
            .iptables
            .backends
            .iter()
            .any(|b| Some(&b.backend) == live.as_ref() && b.kube_svc_chain_count > 0)
        {
            planes.push("iptables".to_string());
        }
        if self.facts.ipvs.service_virtual_servers > 0
            || (self.facts.ipvs.virtual_server_count > 0 && self.facts.ipvs.kube_ipvs0)
        {
            planes.push("ipvs".to_string());
        }
        if self.facts.nft.kube_proxy_table {
            planes.push("nftables".to_string());
        }
        self.facts.node.proxy_mode = match planes.as_slice() {
            [] => ProxyMode::None,
            [one] => match one.as_str() {
                "iptables" => ProxyMode::Iptables,
                "ipvs" => ProxyMode::Ipvs,
                _ => ProxyMode::Nftables,
            },
            _ => ProxyMode::Mixed,
        };
        self.facts.node.proxy_dataplanes = planes;
    }
}

/// Joins the masquerade rules of every iptables backend and nftables: the kernel runs the
/// legacy, iptables-nft and native nft postrouting hooks alike, so a rule in any of them
/// SNATs the packet.
pub(crate) fn snat_facts(ipt: &[IptablesBackendFacts], nft: &NftFacts) -> SnatFacts {
    let rules: Vec<&MasqueradeRule> = ipt
        .iter()
        .flat_map(|b| &b.masquerade_rules)
        .chain(&nft.masquerade_rules)
        .collect();
    // Pod egress is judged for IPv4 pods: an ip6tables or `ip6` table rule cannot SNAT it.
    let v4_pod_egress = ipt
        .iter()
        .filter(|b| b.family == "4")
        .flat_map(|b| &b.masquerade_rules)
        .chain(
            nft.masquerade_rules
                .iter()
                .filter(|r| r.chain.starts_with("ip ") || r.chain.starts_with("inet ")),
        )
        .any(|r| r.pod_egress);
    let cloud = ipt.iter().find_map(|b| {
        let kind = netfilter::cloud_snat_kind(b.cloud_snat_chain.as_deref()?)?;
        Some((kind.to_string(), b.cloud_snat_source.clone()))
    });
    let mut chains: Vec<String> = Vec::new();
    for r in &rules {
        if !chains.contains(&r.chain) {
            chains.push(r.chain.clone());
        }
    }
    SnatFacts {
        collected: !ipt.is_empty() || nft.collected,
        pod_egress_masquerade: v4_pod_egress,
        masquerade_chains: chains,
        without_random_fully: rules
            .iter()
            .filter(|r| (r.pod_egress || r.mark_only) && !r.random_fully)
            .map(|r| (*r).clone())
            .collect(),
        routable_pod_cni: cloud.as_ref().map(|c| c.0.clone()),
        routable_pod_cni_source: cloud.and_then(|c| c.1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snat_join_over_backends_and_families() {
        let rule = |chain: &str, pod: bool, mark: bool, rf: bool| MasqueradeRule {
            chain: chain.into(),
            target: "MASQUERADE".into(),
            pod_egress: pod,
            mark_only: mark,
            random_fully: rf,
            source: Some(Source::line("p", 1)),
        };
        let backend = |family: &str, rules: Vec<MasqueradeRule>| IptablesBackendFacts {
            family: family.into(),
            masquerade_rules: rules,
            ..Default::default()
        };
        // kube-proxy in both backends, a source-less v6 masquerade: no IPv4 pod egress.
        let ipt = vec![
            backend("4", vec![rule("KUBE-POSTROUTING", false, true, false)]),
            backend("6", vec![rule("POSTROUTING", true, false, true)]),
        ];
        let s = snat_facts(&ipt, &NftFacts::default());
        assert!(s.collected && !s.pod_egress_masquerade);
        assert_eq!(s.masquerade_chains, ["KUBE-POSTROUTING", "POSTROUTING"]);
        assert_eq!(s.without_random_fully.len(), 1);
        assert_eq!(s.without_random_fully[0].chain, "KUBE-POSTROUTING");
        // A native nft inet table counts for IPv4; an ip6 table does not.
        let mut nft = NftFacts {
            collected: true,
            masquerade_rules: vec![rule("ip6 nat/postrouting", true, false, true)],
            ..Default::default()
        };
        assert!(!snat_facts(&[], &nft).pod_egress_masquerade);
        nft.masquerade_rules
            .push(rule("inet nat/postrouting", true, false, false));
        let s = snat_facts(&[], &nft);
        assert!(s.collected && s.pod_egress_masquerade);
        assert_eq!(s.without_random_fully[0].chain, "inet nat/postrouting");
        // The cloud hint comes from the chain name.
        let aws = IptablesBackendFacts {
            family: "4".into(),
            cloud_snat_chain: Some("AWS-SNAT-CHAIN-0".into()),
            cloud_snat_source: Some(Source::line("ipt", 4)),
            ..Default::default()
        };
        let s = snat_facts(&[aws], &NftFacts::default());
        assert_eq!(s.routable_pod_cni.as_deref(), Some("aws-vpc-cni"));
        assert_eq!(s.routable_pod_cni_source, Some(Source::line("ipt", 4)));
        assert!(!snat_facts(&[], &NftFacts::default()).collected);
    }
}

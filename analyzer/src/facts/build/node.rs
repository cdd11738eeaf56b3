//! Node facts: the collection record, node identity and API object, sysctls, netlink
//! snapshots, host links and the kernel log.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use netsnap_bundle::k8s::{ConfigMapRecord, NodeRecord};
use netsnap_bundle::layout;
use netsnap_bundle::native::NetnsSnapshot;

use super::*;
use crate::facts::sources;
use crate::parse;

impl Builder<'_> {
    pub(super) fn collection(&mut self) {
        let m = self.bundle.manifest();
        let c = &mut self.facts.collection;
        c.outcome = format!("{:?}", m.collection.outcome).to_lowercase();
        c.started_at = m.collection.started_at.to_rfc3339();
        c.finished_at = m.collection.finished_at.to_rfc3339();
        c.sources = sources::availability(m);
        c.notes = m.collection.notes.clone();
        for a in &m.artifacts {
            let rec = MissingArtifact {
                path: a.path.clone(),
                status: format!("{:?}", a.status).to_lowercase(),
                reason: a
                    .error
                    .clone()
                    .or_else(|| {
                        a.truncated
                            .as_ref()
                            .map(|t| format!("cut at {}", sources::cap_name(t.reason)))
                    })
                    .unwrap_or_default(),
            };
            if !a.status.has_content() {
                c.missing.push(rec);
            } else if a.status == netsnap_bundle::ArtifactStatus::Partial {
                c.partial.push(rec);
            }
        }
    }

    pub(super) fn node_identity(&mut self) {
        let m = self.bundle.manifest();
        let n = &mut self.facts.node;
        n.hostname = m.node.hostname.clone();
        n.name = m
            .node
            .name
            .clone()
            .unwrap_or_else(|| m.node.hostname.clone());
        n.kernel = m.node.kernel_release.clone();
        n.captured_at = m.collection.finished_at.to_rfc3339();
    }

    pub(super) fn node_api(&mut self, nodes: &[(u64, NodeRecord)]) {
        let mut cluster = BTreeSet::new();
        for (_, n) in nodes {
            cluster.extend(n.pod_cidrs.iter().cloned());
            if n.name == self.facts.node.name {
                self.facts.node.pod_cidrs = n.pod_cidrs.clone();
                self.facts.node.addresses = n
                    .addresses
                    .iter()
                    .filter(|a| a.type_ != "Hostname")
                    .map(|a| a.address.clone())
                    .collect();
            }
        }
        self.facts.node.cluster_pod_cidrs = cluster.into_iter().collect();
        self.facts.node.cluster_pod_cidrs_aggregated =
            aggregate_cidrs(&self.facts.node.cluster_pod_cidrs);
        if let Some(cm) = self.read_json::<ConfigMapRecord>(layout::k8s::KUBE_PROXY_CONFIG) {
            let mode = cm.data.values().find_map(|v| {
                v.lines().find_map(|l| {
                    let t = l.trim();
                    t.strip_prefix("mode:")
                        .map(|m| m.trim().trim_matches('"').trim_matches('\'').to_string())
                })
            });
            self.facts.node.proxy_mode_configured = mode;
        }
    }

    /// The line of `"key":` in a pretty-printed JSON artifact (one key per line, as the
    /// collector writes sysctl dumps), so evidence quotes the value, not a bare path.
    pub(super) fn json_key_source(&self, path: &str, keys: &[String]) -> Option<Source> {
        let text = self.bundle.read_text(path)?.ok()?;
        text.lines().enumerate().find_map(|(i, l)| {
            let t = l.trim_start();
            keys.iter()
                .any(|k| t.starts_with(&format!("\"{k}\":")))
                .then(|| Source::line(path, i as u64 + 1))
        })
    }

    pub(super) fn sysctls(&mut self) {
        let mut map: BTreeMap<String, String> = BTreeMap::new();
        if let Some(m) = self.read_json::<BTreeMap<String, String>>(layout::node::SYSCTLS) {
            map.extend(m);
            self.facts.node.sysctls_source = Some(Source::file(layout::node::SYSCTLS));
        }
        let mut ct_source = None;
        if let Some(m) = self.read_json::<BTreeMap<String, String>>(layout::conntrack::SYSCTLS) {
            for (k, v) in m {
                let key = if k.starts_with("net.") {
                    k
                } else {
                    format!("net.netfilter.{}", k.trim_start_matches("net/netfilter/"))
                };
                map.insert(key, v.trim().to_string());
            }
            ct_source = Some(Source::file(layout::conntrack::SYSCTLS));
        }
        // A value that is present but impossible (2^64+1, -1, NaN, text) is not the same as an
        // absent one: it is noted, and the rules that need it are not evaluated.
        let mut impossible: Vec<String> = Vec::new();
        let mut get = |k: &str| {
            let raw = map
                .get(&format!("net.netfilter.nf_conntrack_{k}"))
                .or_else(|| map.get(&format!("net.netfilter.{k}")))?;
            match raw.trim().parse::<u64>() {
                Ok(v) => Some(v),
                Err(_) => {
                    impossible.push(format!(
                        "nf_conntrack_{k} is {:?}, not a count",
                        crate::inert::terminal(raw.trim())
                    ));
                    None
                }
            }
        };
        let count = get("count");
        let max = get("max");
        let ct = &mut self.facts.conntrack;
        ct.count = count;
        ct.max = max;
        // Point at the count and max lines of whichever dump holds them.
        let keyed = |k: &str| {
            vec![
                format!("net.netfilter.nf_conntrack_{k}"),
                format!("net/netfilter/nf_conntrack_{k}"),
                format!("nf_conntrack_{k}"),
            ]
        };
        let line_of = |k: &str| {
            [layout::conntrack::SYSCTLS, layout::node::SYSCTLS]
                .iter()
                .find_map(|p| self.json_key_source(p, &keyed(k)))
        };
        let (count_line, max_line) = (line_of("count"), line_of("max"));
        let ct = &mut self.facts.conntrack;
        ct.count_source = count_line
            .or(ct_source)
            .or_else(|| self.facts.node.sysctls_source.clone());
        ct.max_source = max_line;
        if ct.count.is_none()
            && let Some(Ok(t)) = self.bundle.read_text(layout::conntrack::COUNT)
            && let Ok(n) = parse::conntrack::parse_conntrack_count(&t)
        {
            self.facts.conntrack.count = Some(n);
            self.facts.conntrack.count_source = Some(Source::line(layout::conntrack::COUNT, 1));
        }
        let ct = &mut self.facts.conntrack;
        if ct.max == Some(0) {
            impossible.push("nf_conntrack_max is 0: the table usage cannot be computed".into());
        }
        // The count can pass the max briefly (the two are read apart); by this much it is a
        // corrupt or forged value.
        if let (Some(c), Some(m)) = (ct.count, ct.max)
            && m > 0
            && c / 4 > m
        {
            impossible.push(format!(
                "nf_conntrack_count {c} is more than 4 times nf_conntrack_max {m}"
            ));
        }
        if impossible.is_empty() {
            if let (Some(c), Some(m)) = (ct.count, ct.max)
                && m > 0
            {
                ct.usage_ratio = Some(c as f64 / m as f64);
            }
        } else {
            ct.count = None;
            ct.max = None;
            ct.usage_ratio = None;
            let reason = format!("impossible values: {}", impossible.join("; "));
            if let Some(src) = self.facts.collection.sources.get_mut("conntrack-count") {
                src.available = false;
                src.absent_on_node = false;
                src.reason = Some(reason.clone());
            }
            self.note(format!("conntrack-count: {reason}"));
        }
        self.facts.node.local_port_range_width = map
            .get("net.ipv4.ip_local_port_range")
            .and_then(|v| port_range_width(v));
        self.facts.node.sysctls = map;
    }

    pub(super) fn netlink(&mut self) -> Vec<NetnsSnapshot> {
        let paths: Vec<String> = self
            .bundle
            .manifest()
            .artifacts
            .iter()
            .filter(|a| a.path.starts_with("netns/") && a.path.ends_with(layout::netns::NETLINK))
            .map(|a| a.path.clone())
            .collect();
        let mut out: Vec<NetnsSnapshot> = Vec::new();
        for p in paths {
            if let Some(mut s) = self.read_json::<NetnsSnapshot>(&p) {
                if s.netns.is_empty() {
                    s.netns = p
                        .trim_start_matches("netns/")
                        .trim_end_matches(layout::netns::NETLINK)
                        .trim_end_matches('/')
                        .to_string();
                }
                out.push(s);
            }
        }
        if !out.is_empty() {
            self.facts.node.neighbour_entries = Some(out.iter().map(|s| s.neighbours.ipv4).sum());
        }
        out
    }

    pub(super) fn host_links(&mut self, snaps: &[NetnsSnapshot]) {
        let Some(host) = snaps.iter().find(|s| s.netns == layout::HOST_NETNS) else {
            return;
        };
        let src = Source::file(&layout::netns_path(
            layout::HOST_NETNS,
            layout::netns::NETLINK,
        ));
        let n = &mut self.facts.node;
        let names: HashSet<&str> = host.links.iter().map(|l| l.name.as_str()).collect();
        n.proxy_replacement = if names.contains("cilium_host") {
            Some("cilium".into())
        } else if names.contains("kube-dummy-if") {
            Some("kube-router".into())
        } else if names.contains("antrea-gw0") {
            Some("antrea".into())
        } else {
            None
        };
        n.cni = if names.iter().any(|n| n.starts_with("cilium_")) {
            Some("cilium".into())
        } else if names.contains("vxlan.calico")
            || names.contains("tunl0")
            || names.iter().any(|n| n.starts_with("cali"))
        {
            Some("calico".into())
        } else if names.iter().any(|n| n.starts_with("flannel")) {
            Some("flannel".into())
        } else if names.contains("weave") {
            Some("weave".into())
        } else {
            None
        };
        let bridges: HashMap<u32, &str> = host
            .links
            .iter()
            .filter(|l| l.kind.as_deref() == Some("bridge"))
            .map(|l| (l.index, l.name.as_str()))
            .collect();
        n.bridge_cni = host.links.iter().any(|l| {
            l.kind.as_deref() == Some("veth")
                && l.master_index
                    .is_some_and(|m| bridges.get(&m).is_some_and(|b| *b != "docker0"))
        });
        if n.bridge_cni && n.cni.is_none() {
            n.cni = Some("bridge".into());
        }
        for l in &host.links {
            let (enc, overhead) = match (l.kind.as_deref(), l.name.as_str()) {
                (Some("vxlan"), _) => ("vxlan", 50),
                (Some("geneve"), _) => ("geneve", 50),
                (Some("ipip"), _) => ("ipip", 20),
                (Some("wireguard"), _) => ("wireguard", 60),
                (_, "tunl0") => ("ipip", 20),
                _ => continue,
            };
            n.overlays.push(OverlayFacts {
                name: l.name.clone(),
                encapsulation: enc.into(),
                mtu: l.mtu,
                overhead,
                source: Some(src.clone()),
            });
        }
        let default = host
            .routes
            .iter()
            .filter(|r| {
                r.dst == "default" && r.family == "inet" && (r.table == 254 || r.table == 0)
            })
            .min_by_key(|r| r.metric.unwrap_or(0));
        if let Some(r) = default {
            let link = host
                .links
                .iter()
                .find(|l| Some(l.index) == r.oif || r.dev.as_deref() == Some(l.name.as_str()));
            if let Some(l) = link {
                n.uplink = Some(UplinkFacts {
                    name: l.name.clone(),
                    mtu: l.mtu,
                });
            }
        }
        let uplink_mtu = n.uplink.as_ref().and_then(|u| u.mtu);
        let overhead = n.overlays.iter().map(|o| o.overhead).max().unwrap_or(0);
        n.max_pod_mtu = uplink_mtu.map(|m| m.saturating_sub(overhead));
    }

    pub(super) fn kernel_log(&mut self) {
        let Some(text) = self.read_small(layout::node::KERNEL_LOG) else {
            return;
        };
        let log = parse::kernel_log::parse_kernel_log(&text);
        let k = &mut self.facts.kernel_log;
        k.collected = true;
        k.lines = text.lines().count() as u64;
        for r in &log.records {
            use parse::kernel_log::KernelEventKind as K;
            let m = match r.kind {
                K::ConntrackTableFull => &mut k.conntrack_table_full,
                K::NeighbourTableOverflow => &mut k.neighbour_table_overflow,
                K::IpvsNoDestination => &mut k.ipvs_no_destination,
                K::MartianSource => &mut k.martian_source,
                _ => continue,
            };
            m.count += 1;
            let src = Source::line(layout::node::KERNEL_LOG, r.line as u64);
            match m.sources.len() {
                0 | 1 => m.sources.push(src),
                _ => m.sources[1] = src,
            }
        }
    }
}

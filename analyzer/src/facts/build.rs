//! Builds [`Facts`] from a bundle.
//!
//! Guarantees:
//! - never fails and never panics on bad content: an unreadable or malformed
//!   artifact becomes a note in `collection.notes` and its facts stay empty;
//! - large artifacts are streamed line by line (the conntrack table is
//!   aggregated on the fly and never held whole; lists derived from it are capped);
//! - ages are computed against the manifest's `finished_at`, never the local clock.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use netsnap_bundle::k8s::{
    ConfigMapRecord, EndpointSliceRecord, NodeRecord, PodRecord, ServiceRecord,
};
use netsnap_bundle::native::{
    BridgePorts, DnsProbeReport, NetnsIndex, NetnsSnapshot, PodCorrelation, RouteRecord, VethPair,
};
use netsnap_bundle::{ArtifactStatus, Bundle, layout};
use serde::de::DeserializeOwned;

use super::coverage::{ArtifactCoverage, MAX_QUOTED};
use super::model::*;
use super::netfilter::{self, IptablesScan, IpvsScan, NftScan};
use super::sources;
use crate::lines;
use crate::parse;

/// Most entries kept in each derived conntrack list.
pub const CONNTRACK_LIST_CAP: usize = 100;

/// Most distinct destinations counted for `top_destinations` (a memory bound).
const CONNTRACK_DEST_CAP: usize = 100_000;

/// Most distinct DNAT backends tallied for `unreplied_backends` (a memory bound).
const CONNTRACK_BACKEND_CAP: usize = 10_000;

/// Unreplied entries a backend needs to be listed in `unreplied_backends`.
const UNREPLIED_BACKEND_MIN: u64 = 10;

/// Unreplied `proto/port` pairs kept per backend (the lowest, so merging is exact).
const UNREPLIED_BACKEND_PORTS: usize = 8;

/// UDP ports listed in `unreplied_udp_ports`.
const UNREPLIED_UDP_TOP: usize = 20;

/// Builds the fact document of a bundle.
pub fn from_bundle(bundle: &Bundle) -> Facts {
    Builder::new(bundle).build()
}

/// [`from_bundle`], also returning the parse coverage of the artifacts it parsed the way
/// [`super::coverage::parse_coverage`] does: the conntrack table it streamed (the table at
/// [`conntrack_table_path`], counted during the same pass, absent when the table was not
/// read whole: unreadable, or an I/O error midway) and the iptables saves it scanned.
/// `analyze` then need not parse the bundle's largest artifacts a second time.
pub fn from_bundle_with_table_coverage(bundle: &Bundle) -> (Facts, Vec<ArtifactCoverage>) {
    let mut b = Builder::new(bundle);
    b.keep_table_coverage = true;
    b.build_with_table_coverage()
}

/// The conntrack table the fact build streams: the first of `conntrack -L`'s listing and
/// `/proc/net/nf_conntrack` that the bundle holds.
pub fn conntrack_table_path(bundle: &Bundle) -> Option<&'static str> {
    [layout::conntrack::TABLE, layout::conntrack::PROC_TABLE]
        .into_iter()
        .find(|p| bundle.artifact_file(p).is_some())
}

impl Facts {
    /// Builds the fact document of a bundle (see [`from_bundle`]).
    pub fn from_bundle(bundle: &Bundle) -> Facts {
        from_bundle(bundle)
    }
}

struct Builder<'a> {
    bundle: &'a Bundle,
    facts: Facts,
    now: DateTime<Utc>,
    /// Whether the conntrack pass's parse coverage is wanted ([`from_bundle_with_table_coverage`]).
    keep_table_coverage: bool,
    table_coverage: Option<ArtifactCoverage>,
    /// The parse coverage of the iptables saves it parsed (with `keep_table_coverage`).
    text_coverage: Vec<ArtifactCoverage>,
}

fn age(now: DateTime<Utc>, t: Option<DateTime<Utc>>) -> Option<i64> {
    t.map(|t| (now - t).num_seconds().max(0))
}

/// Merges CIDRs into the fewest prefixes covering exactly the same addresses: contained
/// ranges dropped, sibling halves joined (`10.244.0.0/25` + `10.244.0.128/25` =
/// `10.244.0.0/24`), repeatedly. IPv4 and IPv6 alike; anything unparsable is kept as is.
pub fn aggregate_cidrs(cidrs: &[String]) -> Vec<String> {
    let mut v4: Vec<(u128, u32)> = Vec::new();
    let mut v6: Vec<(u128, u32)> = Vec::new();
    let mut other: Vec<String> = Vec::new();
    for c in cidrs {
        let parsed = c
            .split_once('/')
            .and_then(|(n, l)| Some((n.parse::<IpAddr>().ok()?, l.parse::<u32>().ok()?)));
        match parsed {
            Some((IpAddr::V4(n), l)) if l <= 32 => v4.push((u128::from(u32::from(n)), l)),
            Some((IpAddr::V6(n), l)) if l <= 128 => v6.push((u128::from(n), l)),
            _ => other.push(c.clone()),
        }
    }
    fn merge(mut nets: Vec<(u128, u32)>, bits: u32) -> Vec<(u128, u32)> {
        let mask = |l: u32| -> u128 {
            if l == 0 {
                0
            } else {
                (u128::MAX << (128 - l)) >> (128 - bits)
            }
        };
        for n in nets.iter_mut() {
            n.0 &= mask(n.1);
        }
        loop {
            nets.sort_unstable();
            nets.dedup();
            let mut out: Vec<(u128, u32)> = Vec::with_capacity(nets.len());
            let mut changed = false;
            for (net, len) in nets.iter().copied() {
                // Drop a range inside the previous one (sorted by address, wider first).
                if let Some(&(pn, pl)) = out.last()
                    && pl <= len
                    && net & mask(pl) == pn
                {
                    changed = true;
                    continue;
                }
                // Join with the previous range when they are the two halves of one prefix.
                if let Some(&(pn, pl)) = out.last()
                    && pl == len
                    && len > 0
                    && pn & mask(len - 1) == net & mask(len - 1)
                    && pn != net
                {
                    out.pop();
                    out.push((pn & mask(len - 1), len - 1));
                    changed = true;
                    continue;
                }
                out.push((net, len));
            }
            nets = out;
            if !changed {
                return nets;
            }
        }
    }
    let mut out: Vec<String> = merge(v4, 32)
        .into_iter()
        .map(|(n, l)| format!("{}/{l}", std::net::Ipv4Addr::from(n as u32)))
        .collect();
    out.extend(
        merge(v6, 128)
            .into_iter()
            .map(|(n, l)| format!("{}/{l}", std::net::Ipv6Addr::from(n))),
    );
    out.extend(other);
    out
}

/// Parses `a.b.c.d/len` or `v6/len` and tests containment.
pub fn cidr_contains(cidr: &str, ip: &str) -> bool {
    let Some((net, len)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(net), Ok(len), Ok(ip)) = (
        net.parse::<IpAddr>(),
        len.parse::<u32>(),
        ip.parse::<IpAddr>(),
    ) else {
        return false;
    };
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) if len <= 32 => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            (u32::from(n) & mask) == (u32::from(i) & mask)
        }
        (IpAddr::V6(n), IpAddr::V6(i)) if len <= 128 => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            (u128::from(n) & mask) == (u128::from(i) & mask)
        }
        _ => false,
    }
}

/// Joins an IP and a port the way the dataplanes print it (`[v6]:port`).
pub fn ip_port(ip: &str, port: impl std::fmt::Display) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// The join key of a Service port: `VIP:port/proto` with a lower-case protocol.
pub fn service_key(ip: &str, port: impl std::fmt::Display, proto: &str) -> String {
    format!("{}/{}", ip_port(ip, port), proto.to_ascii_lowercase())
}

impl<'a> Builder<'a> {
    fn new(bundle: &'a Bundle) -> Self {
        let m = bundle.manifest();
        Builder {
            bundle,
            facts: Facts {
                schema_version: FACTS_SCHEMA_VERSION,
                ..Facts::default()
            },
            now: m.collection.finished_at,
            keep_table_coverage: false,
            table_coverage: None,
            text_coverage: Vec::new(),
        }
    }

    fn note(&mut self, msg: String) {
        tracing::warn!("{msg}");
        self.facts.collection.notes.push(format!("analyzer: {msg}"));
    }

    fn read_json<T: DeserializeOwned>(&mut self, path: &str) -> Option<T> {
        let text = match self.bundle.read_text(path)? {
            Ok(t) => t,
            Err(e) => {
                self.note(format!("{path}: {e}"));
                return None;
            }
        };
        match serde_json::from_str(&text) {
            Ok(v) => Some(v),
            Err(e) => {
                self.note(format!("{path}: invalid JSON: {e}"));
                None
            }
        }
    }

    fn read_jsonl<T: DeserializeOwned>(&mut self, path: &str) -> Vec<(u64, T)> {
        self.take_jsonl(load_jsonl(self.bundle, path))
    }

    /// Takes the records of a [`load_jsonl`] run on another thread, keeping its note.
    fn join_jsonl<T>(
        &mut self,
        handle: std::thread::ScopedJoinHandle<'_, JsonLines<T>>,
        path: &str,
    ) -> Vec<(u64, T)> {
        match handle.join() {
            Ok(loaded) => self.take_jsonl(loaded),
            Err(_) => {
                self.note(format!("{path}: reading failed unexpectedly"));
                Vec::new()
            }
        }
    }

    /// Takes the records of a [`load_jsonl`], keeping its note.
    fn take_jsonl<T>(&mut self, loaded: JsonLines<T>) -> Vec<(u64, T)> {
        if let Some(n) = loaded.note {
            self.note(n);
        }
        loaded.records
    }

    /// The artifact's lines, each at most [`lines::MAX_LINE_BYTES`] (longer ones skipped and
    /// noted), `\r` trimmed.
    fn lines(&mut self, path: &str) -> Option<Vec<(u64, String)>> {
        let file = match self.bundle.open_artifact(path)? {
            Ok(f) => f,
            Err(e) => {
                self.note(format!("{path}: {e}"));
                return None;
            }
        };
        let mut out = Vec::new();
        match lines::for_each_line(file, lines::MAX_LINE_BYTES, |n, l| {
            out.push((
                n,
                String::from_utf8_lossy(l)
                    .trim_end_matches('\r')
                    .to_string(),
            ));
            true
        }) {
            Ok(cuts) => {
                if let Some(note) = lines::Cut::note(path, &cuts) {
                    self.note(note);
                }
            }
            Err(e) => self.note(format!("{path}: {e}")),
        }
        Some(out)
    }

    fn build(self) -> Facts {
        self.build_with_table_coverage().0
    }

    fn build_with_table_coverage(mut self) -> (Facts, Vec<ArtifactCoverage>) {
        let start = std::time::Instant::now();
        let lap = |what: &str| {
            tracing::debug!(
                phase = what,
                ms = start.elapsed().as_millis() as u64,
                "facts"
            );
        };
        self.collection();
        self.node_identity();
        // The Service and EndpointSlice lists (the largest API artifacts on a big cluster)
        // are parsed on other threads while the node and pods are read here.
        let bundle = self.bundle;
        let (snapshots, pods, services, slices) = std::thread::scope(|scope| {
            let services =
                scope.spawn(|| load_jsonl::<ServiceRecord>(bundle, layout::k8s::SERVICES));
            let slices = scope
                .spawn(|| load_jsonl::<EndpointSliceRecord>(bundle, layout::k8s::ENDPOINT_SLICES));
            let nodes: Vec<(u64, NodeRecord)> = self.read_jsonl(layout::k8s::NODES);
            self.node_api(&nodes);
            self.sysctls();
            let snapshots = self.netlink();
            self.host_links(&snapshots);
            let pods: Vec<(u64, PodRecord)> = self.read_jsonl(layout::k8s::PODS);
            self.pods(&pods);
            self.netns_and_links(&snapshots);
            self.peer_pod_routes(&nodes, &snapshots);
            let services = self.join_jsonl(services, layout::k8s::SERVICES);
            let slices = self.join_jsonl(slices, layout::k8s::ENDPOINT_SLICES);
            (snapshots, pods, services, slices)
        });
        self.services(&services, &slices);
        self.cidr_overlaps();
        lap("api");
        self.resolv_confs();
        self.duplicates();
        // DNS needs only the services and links; the conntrack pass needs the DNS VIPs.
        self.dns();
        self.conntrack_stats();
        let table_job = self.conntrack_table_job();
        // The conntrack table (the bundle's largest artifact) is read in chunks by a
        // worker thread while this one scans the netfilter dumps and joins the
        // dataplanes, then this thread takes chunks too.
        std::thread::scope(|scope| {
            let worker = table_job.as_ref().map(|job| scope.spawn(|| job.work()));
            let ipt = self.iptables();
            let ipvs = self.ipvs(&snapshots);
            let nft = self.nft();
            self.snat();
            lap("netfilter-scan");
            self.join_dataplanes(&ipt, &ipvs, &nft);
            self.proxy_mode(&pods);
            lap("joins");
            if let (Some(job), Some(worker)) = (&table_job, worker) {
                let mine = job.work();
                match worker.join() {
                    Ok(theirs) => {
                        let mut result = job.finish(vec![theirs, mine]);
                        if self.keep_table_coverage {
                            self.table_coverage = result.coverage.take();
                        }
                        self.merge_conntrack_table(result);
                    }
                    Err(_) => self.note("conntrack table pass failed unexpectedly".into()),
                }
            }
        });
        lap("conntrack");
        self.kernel_log();
        let mut coverage = self.text_coverage;
        coverage.extend(self.table_coverage);
        (self.facts, coverage)
    }

    fn collection(&mut self) {
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

    fn node_identity(&mut self) {
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

    fn node_api(&mut self, nodes: &[(u64, NodeRecord)]) {
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
    fn json_key_source(&self, path: &str, keys: &[String]) -> Option<Source> {
        let text = self.bundle.read_text(path)?.ok()?;
        text.lines().enumerate().find_map(|(i, l)| {
            let t = l.trim_start();
            keys.iter()
                .any(|k| t.starts_with(&format!("\"{k}\":")))
                .then(|| Source::line(path, i as u64 + 1))
        })
    }

    fn sysctls(&mut self) {
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

    fn netlink(&mut self) -> Vec<NetnsSnapshot> {
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

    fn host_links(&mut self, snaps: &[NetnsSnapshot]) {
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

    fn pods(&mut self, pods: &[(u64, PodRecord)]) {
        let node = self.facts.node.name.clone();
        let correlation: Option<PodCorrelation> = self.read_json(layout::correlation::PODS);
        let by_pod: HashMap<String, &netsnap_bundle::native::PodNetns> = correlation
            .as_ref()
            .map(|c| c.pods.iter().map(|p| (p.pod.clone(), p)).collect())
            .unwrap_or_default();
        for (line, p) in pods {
            let key = format!("{}/{}", p.namespace, p.name);
            let phase = p.phase.clone().unwrap_or_default();
            let corr = by_pod.get(&key);
            let mut f = PodFacts {
                namespace: p.namespace.clone(),
                name: p.name.clone(),
                key: key.clone(),
                uid: p.uid.clone(),
                ip: p.pod_ips.first().cloned(),
                ips: p.pod_ips.clone(),
                phase: phase.clone(),
                ready: p.ready,
                host_network: p.host_network,
                node_name: p.node_name.clone(),
                local: p.node_name.as_deref() == Some(node.as_str()),
                live: phase != "Succeeded" && phase != "Failed" && p.deleted_at.is_none(),
                age_seconds: age(self.now, p.created_at),
                terminating: p.deleted_at.is_some(),
                source: Some(Source::line(layout::k8s::PODS, *line)),
                ..PodFacts::default()
            };
            if let Some(c) = corr {
                f.netns = c.netns.clone();
                f.mtu = c.mtu;
                f.host_veth = c.host_veth.clone();
            }
            if p.namespace == "kube-system" && p.name.starts_with("kube-proxy") && f.local {
                self.facts.node.kube_proxy_pod = true;
            }
            self.facts.pods.push(f);
        }
    }

    /// Compares the pod range, the Service range, the host's subnets and local bridges.
    fn cidr_overlaps(&mut self) {
        let n = &self.facts.node;
        let pod_ranges = if n.cluster_pod_cidrs.is_empty() {
            n.pod_cidrs.clone()
        } else {
            n.cluster_pod_cidrs.clone()
        };
        let vips: Vec<IpAddr> = self
            .facts
            .services
            .iter()
            .flat_map(|s| s.cluster_ips.iter())
            .filter_map(|ip| ip.parse().ok())
            .collect();
        let service_ranges: Vec<String> = [
            covering_prefix(vips.iter().filter(|a| a.is_ipv4())),
            covering_prefix(vips.iter().filter(|a| a.is_ipv6())),
        ]
        .into_iter()
        .flatten()
        .collect();
        // (cidr, kind, device, source)
        let mut ranges: Vec<(String, &str, Option<String>, Option<Source>)> = Vec::new();
        ranges.extend(
            pod_ranges
                .iter()
                .map(|c| (c.clone(), "pod-range", None, None)),
        );
        ranges.extend(
            service_ranges
                .iter()
                .map(|c| (c.clone(), "service-range", None, None)),
        );
        // Bridges with pod veths are the CNI's own (their gateway address is in the pod range).
        let cni_bridges: BTreeSet<&str> = self
            .facts
            .links
            .iter()
            .filter(|l| l.netns == layout::HOST_NETNS && l.pod.is_some())
            .filter_map(|l| l.master.as_deref())
            .collect();
        for l in self
            .facts
            .links
            .iter()
            .filter(|l| l.netns == layout::HOST_NETNS)
        {
            if is_cni_device(&l.name, &l.kind) || cni_bridges.contains(l.name.as_str()) {
                continue;
            }
            let kind = if l.kind == "bridge" {
                "local-bridge"
            } else {
                "host-subnet"
            };
            for a in &l.addresses {
                let Some(net) = network_of(a) else { continue };
                if net.starts_with("169.254.")
                    || net.starts_with("fe80:")
                    || net.starts_with("127.")
                {
                    continue;
                }
                ranges.push((net, kind, Some(l.name.clone()), l.source.clone()));
            }
        }
        let pairs_that_matter = |a: &str, b: &str| {
            matches!(
                (a, b),
                ("pod-range", "service-range")
                    | ("pod-range", "host-subnet")
                    | ("pod-range", "local-bridge")
                    | ("service-range", "host-subnet")
                    | ("service-range", "local-bridge")
            )
        };
        let mut overlaps = Vec::new();
        for (i, a) in ranges.iter().enumerate() {
            for b in &ranges[i + 1..] {
                if !pairs_that_matter(a.1, b.1) || !cidrs_overlap(&a.0, &b.0) {
                    continue;
                }
                overlaps.push(CidrOverlap {
                    a: a.0.clone(),
                    a_kind: a.1.to_string(),
                    a_device: a.2.clone(),
                    b: b.0.clone(),
                    b_kind: b.1.to_string(),
                    b_device: b.2.clone(),
                    source: a.3.clone().or_else(|| b.3.clone()),
                });
            }
        }
        self.facts.node.service_ranges = service_ranges;
        self.facts.node.cidr_overlaps = overlaps;
    }

    /// Looks up every other node's pod range in the host's main routing table.
    fn peer_pod_routes(&mut self, nodes: &[(u64, NodeRecord)], snaps: &[NetnsSnapshot]) {
        let Some(host) = snaps.iter().find(|s| s.netns == layout::HOST_NETNS) else {
            return;
        };
        let me = self.facts.node.name.clone();
        let labels = nodes
            .iter()
            .find(|(_, n)| n.name == me)
            .map(|(_, n)| &n.labels);
        self.facts.node.cloud_pod_routing = cloud_pod_routing(host, labels, &self.facts.pods);
        let host_ips: HashSet<IpAddr> = host.addrs.iter().map(|a| a.address).collect();
        let mut pod_ips: HashMap<&str, Vec<String>> = HashMap::new();
        for p in &self.facts.pods {
            if !p.live || p.host_network {
                continue;
            }
            if let Some(n) = p.node_name.as_deref() {
                pod_ips.entry(n).or_default().extend(p.ips.iter().cloned());
            }
        }
        let peers: Vec<Peer> = nodes
            .iter()
            .map(|(line, n)| {
                let internal_ips: Vec<String> = n
                    .addresses
                    .iter()
                    .filter(|a| a.type_ == "InternalIP")
                    .map(|a| a.address.clone())
                    .collect();
                // The manifest's node name can differ from the Node object's (hostname
                // fallback); an InternalIP configured on the host identifies this node too.
                let local = n.name == me
                    || internal_ips
                        .iter()
                        .filter_map(|ip| ip.parse::<IpAddr>().ok())
                        .any(|ip| host_ips.contains(&ip));
                Peer {
                    name: n.name.clone(),
                    local,
                    addresses: n
                        .addresses
                        .iter()
                        .filter(|a| a.type_ != "Hostname")
                        .map(|a| a.address.clone())
                        .collect(),
                    internal_ips,
                    ready: n
                        .conditions
                        .iter()
                        .find(|c| c.type_ == "Ready")
                        .map(|c| c.status == "True"),
                    pod_cidrs: n.pod_cidrs.clone(),
                    pod_ips: pod_ips.get(n.name.as_str()).cloned().unwrap_or_default(),
                    source: Source::line(layout::k8s::NODES, *line),
                }
            })
            .collect();
        let src = Source::file(&layout::netns_path(
            layout::HOST_NETNS,
            layout::netns::NETLINK,
        ));
        self.facts.node.peer_pod_routes = route_peers(&peers, host, &src);
    }

    fn netns_and_links(&mut self, snaps: &[NetnsSnapshot]) {
        let index: NetnsIndex = self.read_json(layout::NETNS_INDEX).unwrap_or_default();
        let veth_pairs: Vec<VethPair> = self
            .read_json(layout::correlation::VETH_PAIRS)
            .unwrap_or_default();
        let bridge_ports: Option<BridgePorts> = self.read_json(layout::node::BRIDGE_PORTS);
        let nsid_to_netns: HashMap<i32, String> = index
            .namespaces
            .iter()
            .filter_map(|n| n.host_nsid.map(|id| (id, n.id.clone())))
            .collect();
        // IP -> namespaces holding it (non-loopback, non-host).
        let mut ip_netns: HashMap<String, BTreeSet<String>> = HashMap::new();
        for s in snaps {
            if s.netns == layout::HOST_NETNS {
                continue;
            }
            for a in &s.addrs {
                if a.address.is_loopback() || a.scope == "host" {
                    continue;
                }
                ip_netns
                    .entry(a.address.to_string())
                    .or_default()
                    .insert(s.netns.clone());
            }
        }
        let pod_cidrs = self.facts.node.pod_cidrs.clone();
        let live_pod_by_ip: HashMap<String, String> = self
            .facts
            .pods
            .iter()
            .filter(|p| p.live && !p.host_network)
            .flat_map(|p| p.ips.iter().map(move |ip| (ip.clone(), p.key.clone())))
            .collect();
        // Pods: fill netns from IP when correlation did not.
        for p in &mut self.facts.pods {
            let mut set = BTreeSet::new();
            for ip in &p.ips {
                if let Some(ns) = ip_netns.get(ip) {
                    set.extend(ns.iter().cloned());
                }
            }
            p.ip_netns = set.into_iter().collect();
            if p.netns.is_none() && p.local && !p.host_network && p.ip_netns.len() == 1 {
                p.netns = p.ip_netns.first().cloned();
            }
        }
        let netns_pod: HashMap<String, String> = self
            .facts
            .pods
            .iter()
            .filter(|p| p.live && p.local && !p.host_network)
            .filter_map(|p| p.netns.clone().map(|n| (n, p.key.clone())))
            .collect();
        let api_pods = self
            .facts
            .collection
            .sources
            .get("k8s-pods")
            .is_none_or(|s| s.available);
        let mut ids: Vec<String> = index.namespaces.iter().map(|n| n.id.clone()).collect();
        for s in snaps {
            if !ids.contains(&s.netns) {
                ids.push(s.netns.clone());
            }
        }
        for id in ids {
            let info = index.namespaces.iter().find(|n| n.id == id);
            let snap = snaps.iter().find(|s| s.netns == id);
            let is_host = info.map(|i| i.is_host).unwrap_or(id == layout::HOST_NETNS);
            let addresses: Vec<String> = snap
                .map(|s| {
                    s.addrs
                        .iter()
                        .filter(|a| {
                            !a.address.is_loopback() && a.scope != "host" && a.scope != "link"
                        })
                        .map(|a| a.address.to_string())
                        .collect()
                })
                .unwrap_or_default();
            let unknown_ips = if is_host || !api_pods {
                Vec::new()
            } else {
                addresses
                    .iter()
                    .filter(|ip| pod_cidrs.iter().any(|c| cidr_contains(c, ip)))
                    .filter(|ip| !live_pod_by_ip.contains_key(*ip))
                    .cloned()
                    .collect()
            };
            self.facts.netns.push(NetnsFacts {
                id: id.clone(),
                is_host,
                names: info.map(|i| i.names.clone()).unwrap_or_default(),
                pod: netns_pod.get(&id).cloned(),
                has_pause: info.is_some_and(|i| i.has_pause),
                process_count: info.map(|i| u64::from(i.process_count)).unwrap_or(0),
                addresses,
                unknown_ips,
                source: Some(Source::file(&layout::netns_path(
                    &id,
                    layout::netns::NETLINK,
                ))),
            });
        }
        // Links.
        let hairpin_by_port: HashMap<String, Option<bool>> = bridge_ports
            .map(|b| b.ports.into_iter().map(|p| (p.port, p.hairpin)).collect())
            .unwrap_or_default();
        // Without any way to map a host veth to its peer namespace, nothing can be called orphan.
        let uplink = self.facts.node.uplink.as_ref().map(|u| u.name.clone());
        let resolvable = !nsid_to_netns.is_empty()
            || !veth_pairs.is_empty()
            || self.facts.pods.iter().any(|p| p.host_veth.is_some());
        for s in snaps {
            let names: HashMap<u32, &str> =
                s.links.iter().map(|l| (l.index, l.name.as_str())).collect();
            for l in &s.links {
                let mut peer_netns = l
                    .link_netnsid
                    .and_then(|id| nsid_to_netns.get(&id).cloned());
                if peer_netns.is_none() {
                    peer_netns = veth_pairs
                        .iter()
                        .find(|v| v.peer_netns == s.netns && v.peer_ifindex == l.index)
                        .map(|v| v.netns.clone());
                }
                let is_host_veth =
                    s.netns == layout::HOST_NETNS && l.kind.as_deref() == Some("veth");
                let pod = if is_host_veth {
                    peer_netns
                        .as_ref()
                        .and_then(|n| netns_pod.get(n).cloned())
                        .or_else(|| {
                            self.facts
                                .pods
                                .iter()
                                .find(|p| p.live && p.host_veth.as_deref() == Some(l.name.as_str()))
                                .map(|p| p.key.clone())
                        })
                } else {
                    None
                };
                let hairpin = l
                    .bridge_port
                    .as_ref()
                    .and_then(|b| b.hairpin)
                    .or_else(|| hairpin_by_port.get(&l.name).copied().flatten());
                let master = l
                    .master_index
                    .and_then(|m| names.get(&m).map(|n| n.to_string()));
                let orphan = is_host_veth
                    && api_pods
                    && resolvable
                    // The node's own uplink can be a veth (kind, containers-as-nodes).
                    && uplink.as_deref() != Some(l.name.as_str())
                    && !s.addrs.iter().any(|a| a.ifindex == l.index && a.scope == "global")
                    && pod.is_none()
                    && master.as_deref() != Some("docker0");
                self.facts.links.push(LinkFacts {
                    netns: s.netns.clone(),
                    name: l.name.clone(),
                    kind: l.kind.clone().unwrap_or_default(),
                    mtu: l.mtu,
                    oper_state: l.oper_state.clone(),
                    master,
                    peer_netns,
                    pod,
                    orphan,
                    hairpin,
                    addresses: s
                        .addrs
                        .iter()
                        .filter(|a| a.ifindex == l.index)
                        .map(|a| format!("{}/{}", a.address, a.prefix_len))
                        .collect(),
                    source: Some(Source::file(&layout::netns_path(
                        &s.netns,
                        layout::netns::NETLINK,
                    ))),
                });
            }
        }
        // Pod veth details.
        let link_by_name: HashMap<String, (Option<u32>, Option<bool>)> = self
            .facts
            .links
            .iter()
            .filter(|l| l.netns == layout::HOST_NETNS)
            .map(|l| (l.name.clone(), (l.mtu, l.hairpin)))
            .collect();
        let pod_links: HashMap<String, String> = self
            .facts
            .links
            .iter()
            .filter_map(|l| l.pod.clone().map(|p| (p, l.name.clone())))
            .collect();
        let mtu_by_netns: HashMap<String, Option<u32>> = self
            .facts
            .links
            .iter()
            .filter(|l| {
                l.netns != layout::HOST_NETNS
                    && l.name != "lo"
                    && (l.name == "eth0" || l.kind == "veth")
            })
            .map(|l| (l.netns.clone(), l.mtu))
            .collect();
        for p in &mut self.facts.pods {
            if p.host_veth.is_none() {
                p.host_veth = pod_links.get(&p.key).cloned();
            }
            if let Some(v) = &p.host_veth
                && let Some((mtu, hairpin)) = link_by_name.get(v)
            {
                p.host_veth_mtu = *mtu;
                p.hairpin = *hairpin;
            }
            if p.mtu.is_none()
                && let Some(ns) = &p.netns
            {
                p.mtu = mtu_by_netns.get(ns).copied().flatten();
            }
        }
        self.facts.node.hairpin_off_ports = self
            .facts
            .links
            .iter()
            .filter(|l| l.hairpin == Some(false))
            .map(|l| format!("{}/{}", l.master.clone().unwrap_or_default(), l.name))
            .collect();
    }

    fn services(
        &mut self,
        services: &[(u64, ServiceRecord)],
        slices: &[(u64, EndpointSliceRecord)],
    ) {
        let node = self.facts.node.name.clone();
        let live_pod_by_ip: HashMap<String, String> = self
            .facts
            .pods
            .iter()
            .filter(|p| p.live && !p.host_network)
            .flat_map(|p| p.ips.iter().map(move |ip| (ip.clone(), p.key.clone())))
            .collect();
        let mut by_service: HashMap<(String, String), Vec<(u64, &EndpointSliceRecord)>> =
            HashMap::new();
        for (line, s) in slices {
            if let Some(name) = &s.service_name {
                by_service
                    .entry((s.namespace.clone(), name.clone()))
                    .or_default()
                    .push((*line, s));
            }
        }
        let mut endpoint_pods: HashSet<String> = HashSet::new();
        let mut dns_pods: HashSet<String> = HashSet::new();
        for (line, s) in services {
            let key = format!("{}/{}", s.namespace, s.name);
            let headless = s.cluster_ips.iter().any(|ip| ip == "None");
            let cluster_ips: Vec<String> = s
                .cluster_ips
                .iter()
                .filter(|ip| *ip != "None" && !ip.is_empty())
                .cloned()
                .collect();
            let proxied = s.type_ != "ExternalName"
                && !cluster_ips.is_empty()
                && !s
                    .labels
                    .contains_key("service.kubernetes.io/service-proxy-name");
            let my_slices = by_service
                .get(&(s.namespace.clone(), s.name.clone()))
                .cloned()
                .unwrap_or_default();
            let mut endpoints: Vec<EndpointFacts> = Vec::new();
            let mut newest_slice = None;
            for (sline, sl) in &my_slices {
                if sl.created_at > newest_slice {
                    newest_slice = sl.created_at;
                }
                for e in &sl.endpoints {
                    for a in &e.addresses {
                        if endpoints.iter().any(|x| &x.ip == a) {
                            continue;
                        }
                        let ready = e.ready.unwrap_or(true);
                        endpoints.push(EndpointFacts {
                            ip: a.clone(),
                            ready,
                            serving: e.serving.unwrap_or(ready),
                            terminating: e.terminating.unwrap_or(false),
                            node_name: e.node_name.clone(),
                            local: e.node_name.as_deref() == Some(node.as_str()),
                            pod: live_pod_by_ip.get(a).cloned(),
                            source: Some(Source::line(layout::k8s::ENDPOINT_SLICES, *sline)),
                        });
                    }
                }
            }
            for e in endpoints.iter().filter(|e| e.ready) {
                if let Some(p) = &e.pod {
                    endpoint_pods.insert(p.clone());
                }
            }
            if key == "kube-system/kube-dns" {
                dns_pods.extend(endpoints.iter().filter_map(|e| e.pod.clone()));
            }
            let ready_ips: Vec<String> = endpoints
                .iter()
                .filter(|e| e.ready)
                .map(|e| e.ip.clone())
                .collect();
            let serving_ips: Vec<String> = if ready_ips.is_empty() {
                endpoints
                    .iter()
                    .filter(|e| e.serving)
                    .map(|e| e.ip.clone())
                    .collect()
            } else {
                ready_ips.clone()
            };
            let mut ports = Vec::new();
            for vip in &cluster_ips {
                for p in &s.ports {
                    let pname = p.name.clone().unwrap_or_default();
                    let mut ready_endpoints = Vec::new();
                    for (_, sl) in &my_slices {
                        let Some(sp) = sl
                            .ports
                            .iter()
                            .find(|sp| sp.name.clone().unwrap_or_default() == pname)
                        else {
                            continue;
                        };
                        let Some(port) = sp.port else { continue };
                        for e in sl.endpoints.iter().filter(|e| e.ready.unwrap_or(true)) {
                            for a in &e.addresses {
                                let ep = ip_port(a, port);
                                if !ready_endpoints.contains(&ep) {
                                    ready_endpoints.push(ep);
                                }
                            }
                        }
                    }
                    ports.push(ServicePortFacts {
                        name: pname,
                        protocol: p.protocol.clone(),
                        port: i64::from(p.port),
                        node_port: p.node_port.map(i64::from),
                        vip: vip.clone(),
                        key: service_key(vip, p.port, &p.protocol),
                        ready_endpoints,
                        serving_endpoint_ips: serving_ips.clone(),
                        ..ServicePortFacts::default()
                    });
                }
            }
            self.facts.services.push(ServiceFacts {
                namespace: s.namespace.clone(),
                name: s.name.clone(),
                key: key.clone(),
                type_: s.type_.clone(),
                cluster_ips,
                headless,
                proxied,
                has_selector: !s.selector.is_empty(),
                external_traffic_policy: s.external_traffic_policy.clone(),
                internal_traffic_policy: s.internal_traffic_policy.clone(),
                age_seconds: age(self.now, s.created_at),
                endpoints_age_seconds: age(self.now, newest_slice),
                critical: key == "kube-system/kube-dns" || key == "default/kubernetes",
                is_cluster_dns: key == "kube-system/kube-dns",
                ready_endpoint_count: ready_ips.len() as u64,
                local_ready_endpoint_count: endpoints.iter().filter(|e| e.ready && e.local).count()
                    as u64,
                endpoints,
                ports,
                source: Some(Source::line(layout::k8s::SERVICES, *line)),
            });
        }
        for p in &mut self.facts.pods {
            p.is_endpoint = endpoint_pods.contains(&p.key);
            p.is_dns_endpoint = dns_pods.contains(&p.key);
        }
    }

    fn resolv_confs(&mut self) {
        let paths: Vec<(String, String)> = self
            .bundle
            .manifest()
            .artifacts
            .iter()
            .filter(|a| {
                a.path.starts_with("netns/") && a.path.ends_with(layout::netns::RESOLV_CONF)
            })
            .map(|a| {
                let ns = a.netns.clone().unwrap_or_else(|| {
                    a.path
                        .trim_start_matches("netns/")
                        .split('/')
                        .next()
                        .unwrap_or_default()
                        .to_string()
                });
                (a.path.clone(), ns)
            })
            .collect();
        // Indexes, so that the join stays linear: 2,000 pods x 20,000 Services.
        let mut service_by_ip: HashMap<String, String> = HashMap::new();
        for s in &self.facts.services {
            for ip in &s.cluster_ips {
                service_by_ip
                    .entry(ip.clone())
                    .or_insert_with(|| s.key.clone());
            }
        }
        let mut pods_by_netns: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, p) in self.facts.pods.iter().enumerate() {
            if let Some(ns) = &p.netns {
                pods_by_netns.entry(ns.clone()).or_default().push(i);
            }
        }
        for (path, ns) in paths {
            let Some(lines) = self.lines(&path) else {
                continue;
            };
            let mut r = ResolvConfFacts::default();
            for (n, l) in lines {
                let mut t = l.split_whitespace();
                match t.next() {
                    Some("nameserver") => {
                        if r.source.is_none() {
                            r.source = Some(Source::line(&path, n));
                        }
                        r.nameservers.extend(t.next().map(str::to_string));
                    }
                    Some("search") => r.search = t.map(str::to_string).collect(),
                    Some("domain") => r.search = t.map(str::to_string).collect(),
                    Some("options") => r.options.extend(t.map(str::to_string)),
                    _ => {}
                }
            }
            r.nameserver_service = r
                .nameservers
                .first()
                .and_then(|ip| service_by_ip.get(ip))
                .cloned();
            for &i in pods_by_netns.get(&ns).into_iter().flatten() {
                self.facts.pods[i].resolv_conf = Some(r.clone());
            }
        }
    }

    fn duplicates(&mut self) {
        let mut by_ip: BTreeMap<String, DuplicateIp> = BTreeMap::new();
        for p in self.facts.pods.iter().filter(|p| p.live && !p.host_network) {
            for ip in &p.ips {
                let d = by_ip.entry(ip.clone()).or_default();
                d.ip = ip.clone();
                d.pods.push(p.key.clone());
                d.sources.extend(p.source.clone());
            }
        }
        for n in self.facts.netns.iter().filter(|n| !n.is_host) {
            for ip in &n.addresses {
                let d = by_ip.entry(ip.clone()).or_default();
                d.ip = ip.clone();
                d.netns.push(n.id.clone());
                d.sources.extend(n.source.clone());
            }
        }
        self.facts.ips.duplicates = by_ip
            .into_values()
            .filter(|d| d.pods.len() > 1 || d.netns.len() > 1)
            .collect();
    }

    fn iptables(&mut self) -> Vec<IptablesScan> {
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
                    .push(super::coverage::text_coverage(rec, &text, &cuts, parsed));
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

    fn ipvs(&mut self, snaps: &[NetnsSnapshot]) -> Option<IpvsScan> {
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

    fn nft(&mut self) -> Option<NftScan> {
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

    fn snat(&mut self) {
        self.facts.snat = snat_facts(&self.facts.iptables.backends, &self.facts.nft);
    }

    fn join_dataplanes(
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

    fn proxy_mode(&mut self, _pods: &[(u64, PodRecord)]) {
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

    fn dns(&mut self) {
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

    /// A text artifact for a parser, over-long lines skipped and noted ([`lines`]).
    fn read_small(&mut self, path: &str) -> Option<String> {
        self.read_small_with_cuts(path).map(|(text, _)| text)
    }

    /// [`Self::read_small`], with the over-long lines it replaced by empty ones.
    fn read_small_with_cuts(&mut self, path: &str) -> Option<(String, Vec<lines::Cut>)> {
        let file = match self.bundle.open_artifact(path)? {
            Ok(f) => f,
            Err(e) => {
                self.note(format!("{path}: {e}"));
                return None;
            }
        };
        match lines::read_text_capped(file) {
            Ok((text, cuts)) => {
                if let Some(note) = lines::Cut::note(path, &cuts) {
                    self.note(note);
                }
                Some((text, cuts))
            }
            Err(e) => {
                self.note(format!("{path}: {e}"));
                None
            }
        }
    }

    fn stats_of(&mut self, path: &str) -> Option<(BTreeMap<String, u64>, Vec<Source>)> {
        let text = self.read_small(path)?;
        let stats = if path == layout::conntrack::STATS {
            parse::conntrack::parse_conntrack_stats(&text)
        } else {
            parse::conntrack::parse_proc_stat(&text)
        };
        let sources = stats
            .cpus
            .iter()
            .map(|c| Source::line(path, c.line as u64))
            .collect();
        Some((stats.totals(), sources))
    }

    fn conntrack_stats(&mut self) {
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
    fn conntrack_table_job(&mut self) -> Option<ConntrackTableJob> {
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

    fn merge_conntrack_table(&mut self, r: ConntrackTableResult) {
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

    fn kernel_log(&mut self) {
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

/// Records of a JSON Lines artifact, with a note when some lines could not be read.
struct JsonLines<T> {
    records: Vec<(u64, T)>,
    note: Option<String>,
}

/// Reads a JSON Lines artifact (one record per line, numbered from 1); needs no
/// builder, so the large API lists can be read on other threads.
fn load_jsonl<T: DeserializeOwned>(bundle: &Bundle, path: &str) -> JsonLines<T> {
    let mut out = Vec::new();
    let mut note = None;
    let Some(file) = bundle.open_artifact(path) else {
        return JsonLines { records: out, note };
    };
    let file = match file {
        Ok(f) => f,
        Err(e) => {
            note = Some(format!("{path}: {e}"));
            return JsonLines { records: out, note };
        }
    };
    let mut bad = 0u64;
    let mut first_bad = None;
    let read = lines::for_each_line(file, lines::MAX_LINE_BYTES, |n, line| {
        if line.trim_ascii().is_empty() {
            return true;
        }
        match serde_json::from_slice(line) {
            Ok(v) => out.push((n, v)),
            Err(e) => {
                bad += 1;
                first_bad.get_or_insert_with(|| format!("line {n}: {e}"));
            }
        }
        true
    });
    match read {
        Ok(cuts) => {
            bad += cuts.len() as u64;
            if let Some(c) = cuts.first() {
                first_bad.get_or_insert_with(|| {
                    format!(
                        "line {}: {} bytes, longer than {} MiB",
                        c.line,
                        c.bytes,
                        lines::MAX_LINE_BYTES >> 20
                    )
                });
            }
        }
        Err(e) => {
            bad += 1;
            first_bad.get_or_insert_with(|| e.to_string());
        }
    }
    if bad > 0 {
        note = Some(format!(
            "{path}: {bad} unreadable line(s), first at {}",
            first_bad.unwrap_or_default()
        ));
    }
    JsonLines { records: out, note }
}

/// Hash maps for the per-entry lookups of the conntrack pass (a million entries): foldhash
/// is several times faster than SipHash and still randomly seeded per map.
type FastMap<K, V> = foldhash::HashMap<K, V>;
type FastSet<T> = foldhash::HashSet<T>;

/// The conntrack table pass: read in line-aligned chunks that any number of workers
/// take in turn, aggregated on the fly; nothing per entry is kept.
struct ConntrackTableJob {
    path: &'static str,
    /// The table's content id (for its parse coverage).
    content: String,
    chunks: std::sync::Mutex<ChunkReader>,
    udp_services: FastMap<(IpAddr, u16), (String, FastSet<IpAddr>)>,
    live_pod_by_ip: HashMap<String, String>,
    dns_vips: FastSet<IpAddr>,
    /// The cluster's IPv4 pod ranges as (network, mask), for the SNAT tally.
    pod_nets: Vec<(u32, u32)>,
}

/// What the table pass found: the table-derived fields of [`ConntrackFacts`], and notes.
struct ConntrackTableResult {
    facts: ConntrackFacts,
    notes: Vec<String>,
    /// The table's parse coverage, as [`super::coverage::parse_coverage`] reports it; `None`
    /// after an I/O error (the coverage pass skips such a table too).
    coverage: Option<ArtifactCoverage>,
}

/// One worker's share of the table pass.
#[derive(Default)]
struct ConntrackPartial {
    facts: ConntrackFacts,
    dests: FastMap<(parse::conntrack::Protocol, IpAddr, u16), u64>,
    /// DNAT backend (reply source) -> its replied/unreplied tally.
    backends: FastMap<IpAddr, BackendTally>,
    /// Original destination port -> `[UNREPLIED]` UDP entries.
    unreplied_udp: FastMap<u16, u64>,
    /// (protocol, destination after DNAT, port) of SNATed pod flows -> (entries, first line).
    snat: FastMap<(parse::conntrack::Protocol, IpAddr, u16), (u64, u64)>,
    unparsed: u64,
    /// This worker's first unparsed lines (numbered in the table), at most [`MAX_QUOTED`].
    first_unparsed: Vec<parse::Unparsed>,
    /// Lines read, as the streaming parser counts them.
    lines: u64,
    error: Option<String>,
}

/// Replied and unreplied entries to one DNAT backend. Every field merges exactly (sums,
/// the lowest ports, the first line), so the workers' chunk split does not matter.
#[derive(Default, Debug, Clone, PartialEq)]
struct BackendTally {
    unreplied: u64,
    syn_sent: u64,
    udp_dns: u64,
    replied: u64,
    ports: BTreeSet<(&'static str, u16)>,
    first_line: Option<u64>,
}

impl BackendTally {
    fn add_port(&mut self, port: (&'static str, u16)) {
        if self.ports.len() < UNREPLIED_BACKEND_PORTS || self.ports.last() > Some(&port) {
            self.ports.insert(port);
            if self.ports.len() > UNREPLIED_BACKEND_PORTS {
                self.ports.pop_last();
            }
        }
    }

    fn merge(&mut self, o: BackendTally) {
        self.unreplied += o.unreplied;
        self.syn_sent += o.syn_sent;
        self.udp_dns += o.udp_dns;
        self.replied += o.replied;
        for p in o.ports {
            self.add_port(p);
        }
        self.first_line = match (self.first_line, o.first_line) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

/// `proto ip:port` (`[ip]:port` for IPv6), the key of a destination tally.
fn destination_key(proto: parse::conntrack::Protocol, ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(a) => format!("{} {a}:{port}", proto.as_str()),
        IpAddr::V6(a) => format!("{} [{a}]:{port}", proto.as_str()),
    }
}

/// SNATed pod flows to one destination below this are not listed.
const SNAT_DESTINATION_MIN: u64 = 100;
/// SNAT destinations listed.
const SNAT_DESTINATION_TOP: usize = 20;

/// The IPv4 CIDRs among `cidrs` as (network, mask).
fn ipv4_nets(cidrs: &[String]) -> Vec<(u32, u32)> {
    cidrs
        .iter()
        .filter_map(|c| {
            let (addr, len) = c.split_once('/')?;
            let addr: std::net::Ipv4Addr = addr.parse().ok()?;
            let len: u32 = len.parse().ok().filter(|l| *l <= 32)?;
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            Some((u32::from(addr) & mask, mask))
        })
        .collect()
}

/// Ports in an `ip_local_port_range` value (`32768\t60999`).
fn port_range_width(v: &str) -> Option<u64> {
    let mut it = v.split_whitespace().map(|p| p.parse::<u64>().ok());
    let (lo, hi) = (it.next()??, it.next()??);
    (hi >= lo).then(|| hi - lo + 1)
}

/// Bytes per chunk: large enough that handing chunks out costs nothing, small enough
/// that two workers finish together and memory stays flat.
const CONNTRACK_CHUNK: usize = 2 << 20;

/// Hands out the table in chunks that end at a line end, with the number of their
/// first line (workers number entries by it, so evidence lines stay exact).
struct ChunkReader {
    input: BufReader<std::fs::File>,
    next_line: u64,
    done: bool,
}

impl ChunkReader {
    fn new(file: std::fs::File) -> ChunkReader {
        ChunkReader {
            input: BufReader::with_capacity(1 << 16, file),
            next_line: 1,
            done: false,
        }
    }

    fn next_chunk(&mut self, buf: &mut Vec<u8>) -> std::io::Result<Option<u64>> {
        use std::io::Read;
        buf.clear();
        if self.done {
            return Ok(None);
        }
        let n = (&mut self.input)
            .take(CONNTRACK_CHUNK as u64)
            .read_to_end(buf)?;
        if n == 0 {
            self.done = true;
            return Ok(None);
        }
        // Finish the last line; and keep a line cut by conntrack's summary (see the
        // parser's splicing) together with its continuation.
        loop {
            if buf.last() != Some(&b'\n') && self.input.read_until(b'\n', buf)? == 0 {
                self.done = true;
                break;
            }
            let last_start = buf[..buf.len() - 1]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            if !buf[last_start..].windows(11).any(|w| w == b"conntrack v")
                || self.input.read_until(b'\n', buf)? == 0
            {
                break;
            }
        }
        let first = self.next_line;
        self.next_line += buf.iter().filter(|&&b| b == b'\n').count() as u64;
        Ok(Some(first))
    }
}

impl ConntrackTableJob {
    /// Takes chunks until none is left; returns this worker's share.
    fn work(&self) -> ConntrackPartial {
        let mut part = ConntrackPartial::default();
        let mut buf = Vec::with_capacity(CONNTRACK_CHUNK + 4096);
        loop {
            let first = match self.chunks.lock() {
                Ok(mut r) => r.next_chunk(&mut buf),
                // Another worker panicked holding the reader: stop, it is reported.
                Err(_) => return part,
            };
            match first {
                Ok(Some(first)) => self.chunk(&buf, first - 1, &mut part),
                Ok(None) => return part,
                Err(e) => {
                    part.error = Some(e.to_string());
                    return part;
                }
            }
        }
    }

    fn chunk(&self, text: &[u8], line_offset: u64, part: &mut ConntrackPartial) {
        let ConntrackPartial {
            facts: ct,
            dests,
            backends,
            unreplied_udp,
            snat,
            unparsed,
            first_unparsed,
            ..
        } = part;
        let path = self.path;
        let result = parse::conntrack::for_each_entry(text, |item| {
            let e = match item {
                Ok(e) => e,
                Err(mut u) => {
                    *unparsed += 1;
                    if first_unparsed.len() < MAX_QUOTED {
                        u.line += line_offset as usize;
                        first_unparsed.push(u);
                    }
                    return;
                }
            };
            ct.entries += 1;
            let proto = e.protocol.as_str();
            match ct.by_protocol.get_mut(proto) {
                Some(c) => *c += 1,
                None => {
                    ct.by_protocol.insert(proto.to_string(), 1);
                }
            }
            if let Some(st) = &e.state {
                match ct.by_state.get_mut(st.as_str()) {
                    Some(c) => *c += 1,
                    None => {
                        ct.by_state.insert(st.as_str().to_string(), 1);
                    }
                }
            }
            if e.flags.unreplied {
                ct.unreplied += 1;
            }
            let dst = e.original.dst;
            let dport = e.original.dport.unwrap_or(0);
            let dest = (e.protocol, dst, dport);
            if let Some(c) = dests.get_mut(&dest) {
                *c += 1;
            } else if dests.len() < CONNTRACK_DEST_CAP {
                dests.insert(dest, 1);
            }
            // SNAT rewrites the reply destination; a pod source so rewritten holds one of the
            // node's source ports for the destination it really reaches (the reply source).
            if e.reply.dst != e.original.src
                && let IpAddr::V4(src) = e.original.src
                && self
                    .pod_nets
                    .iter()
                    .any(|(net, mask)| u32::from(src) & mask == *net)
            {
                let line = e.line as u64 + line_offset;
                let key = (e.protocol, e.reply.src, e.reply.sport.unwrap_or(0));
                if let Some(v) = snat.get_mut(&key) {
                    v.0 += 1;
                    v.1 = v.1.min(line);
                } else if snat.len() < CONNTRACK_DEST_CAP {
                    snat.insert(key, (1, line));
                }
            }
            let udp = e.protocol == parse::conntrack::Protocol::Udp;
            let syn_sent = e.protocol == parse::conntrack::Protocol::Tcp
                && e.state == Some(parse::conntrack::ConntrackState::SynSent);
            if e.flags.unreplied && (udp || syn_sent) {
                ct.unreplied_expecting_reply += 1;
            }
            if udp && e.flags.unreplied {
                *unreplied_udp.entry(dport).or_default() += 1;
            }
            // Per DNAT backend: replied entries, and the unreplied ones that expect an
            // answer (UDP, or TCP still in SYN_SENT); other unreplied states say nothing.
            if e.reply.src != dst {
                let counted = !e.flags.unreplied || udp || syn_sent;
                let tally = (counted
                    && (backends.len() < CONNTRACK_BACKEND_CAP
                        || backends.contains_key(&e.reply.src)))
                .then(|| backends.entry(e.reply.src).or_default());
                if let Some(t) = tally {
                    if !e.flags.unreplied {
                        t.replied += 1;
                    } else {
                        t.unreplied += 1;
                        t.syn_sent += u64::from(syn_sent);
                        t.udp_dns += u64::from(udp && dport == 53);
                        t.add_port((e.protocol.as_str(), e.reply.sport.unwrap_or(0)));
                        t.first_line.get_or_insert(e.line as u64 + line_offset);
                    }
                }
            }
            if !udp {
                return;
            }
            if dport == 53 && self.dns_vips.contains(&dst) {
                ct.dns_via_vip += 1;
            }
            let Some((svc, eps)) = self.udp_services.get(&(dst, dport)) else {
                return;
            };
            let reply_src = e.reply.src;
            let entry = || StaleConntrackEntry {
                protocol: "udp".into(),
                src: e.original.src.to_string(),
                dst: ip_port(&dst.to_string(), dport),
                reply_src: reply_src.to_string(),
                service: svc.clone(),
                reply_src_pod: self.live_pod_by_ip.get(&reply_src.to_string()).cloned(),
                unreplied: e.flags.unreplied,
                source: Some(Source::line(path, e.line as u64 + line_offset)),
            };
            if reply_src == dst {
                if !eps.is_empty() {
                    ct.not_dnated_count += 1;
                    if ct.not_dnated.len() < CONNTRACK_LIST_CAP {
                        ct.not_dnated.push(entry());
                    }
                }
            } else if !eps.contains(&reply_src) {
                ct.stale_udp_count += 1;
                if ct.stale_udp.len() < CONNTRACK_LIST_CAP {
                    ct.stale_udp.push(entry());
                }
            }
        });
        match result {
            Ok(stats) => part.lines += stats.lines as u64,
            Err(e) => {
                part.error.get_or_insert_with(|| e.to_string());
            }
        }
    }

    /// Adds the workers' shares up. Each worker took its chunks in file order and kept
    /// its first entries, so sorting the kept entries by line and cutting at the cap
    /// gives the table's first entries, as one sequential pass would.
    fn finish(&self, parts: Vec<ConntrackPartial>) -> ConntrackTableResult {
        let path = self.path;
        let mut ct = ConntrackFacts::default();
        let mut dests: FastMap<(parse::conntrack::Protocol, IpAddr, u16), u64> = FastMap::default();
        let mut backends: FastMap<IpAddr, BackendTally> = FastMap::default();
        let mut unreplied_udp: FastMap<u16, u64> = FastMap::default();
        let mut snat: FastMap<(parse::conntrack::Protocol, IpAddr, u16), (u64, u64)> =
            FastMap::default();
        let mut unparsed = 0;
        let mut notes = Vec::new();
        let mut lines = 0;
        let mut first_unparsed = Vec::new();
        let mut failed = false;
        for p in parts {
            let f = p.facts;
            ct.entries += f.entries;
            ct.unreplied += f.unreplied;
            ct.unreplied_expecting_reply += f.unreplied_expecting_reply;
            ct.dns_via_vip += f.dns_via_vip;
            ct.stale_udp_count += f.stale_udp_count;
            ct.not_dnated_count += f.not_dnated_count;
            ct.stale_udp.extend(f.stale_udp);
            ct.not_dnated.extend(f.not_dnated);
            for (k, v) in f.by_protocol {
                *ct.by_protocol.entry(k).or_default() += v;
            }
            for (k, v) in f.by_state {
                *ct.by_state.entry(k).or_default() += v;
            }
            for (k, v) in p.dests {
                if let Some(c) = dests.get_mut(&k) {
                    *c += v;
                } else if dests.len() < CONNTRACK_DEST_CAP {
                    dests.insert(k, v);
                }
            }
            for (k, v) in p.backends {
                if let Some(t) = backends.get_mut(&k) {
                    t.merge(v);
                } else if backends.len() < CONNTRACK_BACKEND_CAP {
                    backends.insert(k, v);
                }
            }
            for (k, v) in p.unreplied_udp {
                *unreplied_udp.entry(k).or_default() += v;
            }
            for (k, (n, first)) in p.snat {
                if let Some(v) = snat.get_mut(&k) {
                    v.0 += n;
                    v.1 = v.1.min(first);
                } else if snat.len() < CONNTRACK_DEST_CAP {
                    snat.insert(k, (n, first));
                }
            }
            unparsed += p.unparsed;
            lines += p.lines;
            first_unparsed.extend(p.first_unparsed);
            if let Some(e) = p.error {
                failed = true;
                notes.push(format!("analyzer: {path}: {e}"));
            }
        }
        for list in [&mut ct.stale_udp, &mut ct.not_dnated] {
            list.sort_by_key(|e| e.source.as_ref().and_then(|s| s.line));
            list.truncate(CONNTRACK_LIST_CAP);
        }
        if unparsed > 0 {
            notes.push(format!(
                "analyzer: {path}: {unparsed} line(s) not understood"
            ));
        }
        let mut top: Vec<(String, u64)> = dests
            .into_iter()
            .map(|((proto, dst, dport), n)| (destination_key(proto, dst, dport), n))
            .collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        ct.top_destinations = top
            .into_iter()
            .take(10)
            .map(|(key, count)| CountedKey { key, count })
            .collect();
        let mut ports: Vec<(u16, u64)> = unreplied_udp.into_iter().collect();
        ports.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        ct.unreplied_udp_ports = ports
            .into_iter()
            .take(UNREPLIED_UDP_TOP)
            .map(|(port, count)| CountedKey {
                key: port.to_string(),
                count,
            })
            .collect();
        // Backends that never answered first (the ones a rule reports), then by count; the
        // IP breaks ties so the list does not depend on hashing.
        let mut listed: Vec<(IpAddr, BackendTally)> = backends
            .into_iter()
            .filter(|(_, t)| t.unreplied >= UNREPLIED_BACKEND_MIN)
            .collect();
        listed.sort_by(|a, b| {
            (a.1.replied > 0)
                .cmp(&(b.1.replied > 0))
                .then(b.1.unreplied.cmp(&a.1.unreplied))
                .then(a.0.cmp(&b.0))
        });
        ct.unreplied_backends = listed
            .into_iter()
            .take(CONNTRACK_LIST_CAP)
            .map(|(ip, t)| {
                let ip = ip.to_string();
                UnrepliedBackend {
                    pod: self.live_pod_by_ip.get(&ip).cloned(),
                    ip,
                    unreplied: t.unreplied,
                    syn_sent: t.syn_sent,
                    udp_dns: t.udp_dns,
                    replied: t.replied,
                    ports: t.ports.iter().map(|(p, n)| format!("{p}/{n}")).collect(),
                    source: t.first_line.map(|l| Source::line(path, l)),
                }
            })
            .collect();
        let mut crowded: Vec<(String, u64, u64)> = snat
            .into_iter()
            .filter(|(_, (n, _))| *n >= SNAT_DESTINATION_MIN)
            .map(|((proto, dst, port), (n, first))| (destination_key(proto, dst, port), n, first))
            .collect();
        crowded.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        ct.snat_destinations = crowded
            .into_iter()
            .take(SNAT_DESTINATION_TOP)
            .map(|(key, flows, first)| SnatDestination {
                key,
                flows,
                source: Some(Source::line(path, first)),
            })
            .collect();
        // Each worker kept its first unparsed lines in file order: the lowest of them
        // are the table's first, as one sequential pass would find.
        first_unparsed.sort_by_key(|u| u.line);
        first_unparsed.truncate(MAX_QUOTED);
        let coverage = (!failed).then(|| ArtifactCoverage {
            path: path.to_string(),
            content: self.content.clone(),
            lines: usize::try_from(lines).unwrap_or(usize::MAX),
            unparsed: usize::try_from(unparsed).unwrap_or(usize::MAX),
            first: first_unparsed,
        });
        ConntrackTableResult {
            facts: ct,
            notes,
            coverage,
        }
    }
}

/// A node as the pod-route lookup needs it.
struct Peer {
    name: String,
    /// This node (its routes to itself are not judged).
    local: bool,
    /// Every non-`Hostname` address.
    addresses: Vec<String>,
    internal_ips: Vec<String>,
    ready: Option<bool>,
    pod_cidrs: Vec<String>,
    /// IPs of its live non-hostNetwork pods.
    pod_ips: Vec<String>,
    source: Source,
}

/// The route a prefix matches, with the route's prefix length.
pub(crate) type RouteMatch<'r> = Option<(&'r RouteRecord, u32)>;

/// One pod range of another node to look up.
struct Lookup<'r> {
    range: String,
    /// `pod-cidr` or `pod-ips`.
    target: &'static str,
    /// Pod IPs in the range, for `pod-ips`.
    count: u64,
    /// Prefix length looked up (a pod IP's is the full length).
    len: u32,
    matched: RouteMatch<'r>,
}

/// `a.b.c.d/len`, `v6/len`, a bare address (full length) or `default` (of `family`).
pub(crate) fn parse_prefix(s: &str, family: &str) -> Option<(IpAddr, u32)> {
    if s == "default" {
        let any: IpAddr = if family == "inet6" {
            std::net::Ipv6Addr::UNSPECIFIED.into()
        } else {
            std::net::Ipv4Addr::UNSPECIFIED.into()
        };
        return Some((any, 0));
    }
    let (ip, len) = match s.split_once('/') {
        Some((ip, len)) => (ip.parse::<IpAddr>().ok()?, len.parse::<u32>().ok()?),
        None => {
            let ip: IpAddr = s.parse().ok()?;
            (ip, if ip.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((ip, len))
}

/// In the main table (id 0 is how an unspecified table is recorded, as `host_links` reads it).
fn main_table(r: &RouteRecord) -> bool {
    r.table == 254 || r.table == 0
}

/// `net/len` holds `ip` (numeric: the pod-route join runs it nodes × nodes times).
fn prefix_holds(net: IpAddr, len: u32, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) if len <= 32 => {
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            (u32::from(n) & mask) == (u32::from(i) & mask)
        }
        (IpAddr::V6(n), IpAddr::V6(i)) if len <= 128 => {
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            (u128::from(n) & mask) == (u128::from(i) & mask)
        }
        _ => false,
    }
}

/// Main-table routes that can carry traffic to other hosts, with their parsed destination.
/// Local, broadcast and multicast routes are not such paths; blackholes and the like are
/// kept because the kernel stops at them.
pub(crate) fn main_routes(routes: &[RouteRecord]) -> Vec<(&RouteRecord, IpAddr, u32)> {
    routes
        .iter()
        .filter(|r| main_table(r))
        .filter(|r| {
            matches!(
                r.route_type.as_str(),
                "" | "unicast" | "blackhole" | "unreachable" | "prohibit" | "throw"
            )
        })
        .filter_map(|r| parse_prefix(&r.dst, &r.family).map(|(n, l)| (r, n, l)))
        .collect()
}

/// The route the kernel picks for a whole prefix: the longest destination that contains
/// it, ties broken by the lowest metric.
pub(crate) fn longest_match<'r>(
    routes: &[(&'r RouteRecord, IpAddr, u32)],
    net: IpAddr,
    len: u32,
) -> RouteMatch<'r> {
    routes
        .iter()
        .filter(|(_, rnet, rlen)| *rlen <= len && prefix_holds(*rnet, *rlen, net))
        .map(|(r, _, rlen)| (*r, *rlen))
        .max_by_key(|(r, rlen)| (*rlen, std::cmp::Reverse(r.metric.unwrap_or(0))))
}

/// Devices that carry pod traffic to other nodes themselves (encapsulation, or a CNI's own
/// routing device), so the route's gateway is not a node address to compare.
fn is_tunnel_device(name: &str, kind: Option<&str>) -> bool {
    const PREFIXES: [&str; 11] = [
        "flannel",
        "vxlan.calico",
        "vxlan-v6.calico",
        "wireguard.cali",
        "tunl",
        "cilium_",
        "antrea-",
        "genev_sys",
        "vxlan_sys",
        "ovn-k8s",
        "weave",
    ];
    matches!(
        kind,
        Some("vxlan" | "ipip" | "ip6tnl" | "sit" | "gre" | "gretap" | "geneve" | "wireguard")
    ) || PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The cloud routes pods between nodes when its CNI runs here (pods get VPC addresses, or
/// the VPC route table carries the pod ranges): AWS VPC CNI names host veths `eni*` and
/// runs `aws-node`; Azure CNI uses `azure0`/`azv*`; GKE names veths `gke*`.
fn cloud_pod_routing(
    host: &NetnsSnapshot,
    labels: Option<&BTreeMap<String, String>>,
    pods: &[PodFacts],
) -> Option<String> {
    let link = |f: &dyn Fn(&str) -> bool| host.links.iter().any(|l| f(&l.name));
    let label = |k: &str| labels.is_some_and(|l| l.contains_key(k));
    let local_pod = |prefix: &str| {
        pods.iter()
            .any(|p| p.local && p.namespace == "kube-system" && p.name.starts_with(prefix))
    };
    if link(&|n| n.starts_with("eni")) || local_pod("aws-node-") {
        Some("aws-vpc-cni".into())
    } else if link(&|n| n == "azure0" || n.starts_with("azv"))
        || label("kubernetes.azure.com/cluster")
    {
        Some("azure".into())
    } else if link(&|n| n.starts_with("gke")) || label("cloud.google.com/gke-nodepool") {
        Some("gke".into())
    } else {
        None
    }
}

/// Every other node's pod range against the host routes. The podCIDRs are looked up unless
/// some pod sits outside its node's podCIDRs (the CNI's IPAM ignores them: Calico, Cilium
/// cluster-pool), in which case, and for nodes without podCIDRs, the pod IPs are, grouped
/// by the route they match.
fn route_peers(peers: &[Peer], host: &NetnsSnapshot, src: &Source) -> Vec<PeerPodRoute> {
    let mut out = Vec::new();
    // A snapshot without one main-table route was not really collected: judging it would
    // report every node unreachable.
    if !host.routes.iter().any(main_table) || !peers.iter().any(|p| !p.local) {
        return out;
    }
    let ips: Vec<Vec<IpAddr>> = peers
        .iter()
        .map(|p| {
            let set: BTreeSet<IpAddr> = p.pod_ips.iter().filter_map(|i| i.parse().ok()).collect();
            set.into_iter().collect()
        })
        .collect();
    let nets: Vec<Vec<(IpAddr, u32)>> = peers
        .iter()
        .map(|p| {
            p.pod_cidrs
                .iter()
                .filter_map(|c| parse_prefix(c, ""))
                .collect()
        })
        .collect();
    let cidrs_used = ips.iter().zip(&nets).all(|(ips, nets)| {
        ips.iter().all(|ip| {
            let same: Vec<&(IpAddr, u32)> = nets
                .iter()
                .filter(|(n, _)| n.is_ipv4() == ip.is_ipv4())
                .collect();
            same.is_empty() || same.iter().any(|(n, l)| prefix_holds(*n, *l, *ip))
        })
    });
    // A family with nothing but link-local routes is not in use on this host (a dual-stack
    // podCIDR the CNI does not route, or IPv6 disabled): its lookups would all fail.
    let table = main_routes(&host.routes);
    let family_routed = |v4: bool| {
        table.iter().any(|(_, n, _)| {
            n.is_ipv4() == v4
                && match n {
                    IpAddr::V4(a) => !a.is_link_local() && !a.is_multicast(),
                    IpAddr::V6(a) => (a.segments()[0] & 0xffc0) != 0xfe80 && !a.is_multicast(),
                }
        })
    };
    let routed = [family_routed(false), family_routed(true)];
    let owner: HashMap<IpAddr, &str> = peers
        .iter()
        .flat_map(|p| {
            p.addresses
                .iter()
                .filter_map(|a| a.parse().ok())
                .map(|a| (a, p.name.as_str()))
        })
        .collect();
    let devices: HashMap<&str, Option<&str>> = host
        .links
        .iter()
        .map(|l| (l.name.as_str(), l.kind.as_deref()))
        .collect();
    let dev_name = |r: &RouteRecord| -> Option<String> {
        r.dev.clone().or_else(|| {
            host.links
                .iter()
                .find(|l| Some(l.index) == r.oif)
                .map(|l| l.name.clone())
        })
    };
    // Whether a route also covers pods of a node other than the `i`th.
    let covers_others = |i: usize, rnet: IpAddr, rlen: u32| {
        (0..peers.len()).filter(|&o| o != i).any(|o| {
            nets[o]
                .iter()
                .any(|(n, l)| *l >= rlen && prefix_holds(rnet, rlen, *n))
                || ips[o].iter().any(|ip| prefix_holds(rnet, rlen, *ip))
        })
    };
    for (i, peer) in peers.iter().enumerate().filter(|(_, p)| !p.local) {
        let mut lookups: Vec<Lookup> = Vec::new();
        if cidrs_used && !nets[i].is_empty() {
            for &(net, len) in nets[i]
                .iter()
                .filter(|(n, _)| routed[usize::from(n.is_ipv4())])
            {
                lookups.push(Lookup {
                    range: format!("{net}/{len}"),
                    target: "pod-cidr",
                    count: 0,
                    len,
                    matched: longest_match(&table, net, len),
                });
            }
        } else {
            // Pod IPs matching the same route make one entry: (is IPv4, route) -> IPs.
            let mut groups: BTreeMap<(bool, String), (Vec<IpAddr>, RouteMatch)> = BTreeMap::new();
            for &ip in ips[i].iter().filter(|ip| routed[usize::from(ip.is_ipv4())]) {
                let len = if ip.is_ipv4() { 32 } else { 128 };
                let m = longest_match(&table, ip, len);
                let route = m
                    .map(|(r, _)| format!("{} {:?} {:?}", r.dst, dev_name(r), r.gateway))
                    .unwrap_or_default();
                groups
                    .entry((ip.is_ipv4(), route))
                    .or_insert_with(|| (Vec::new(), m))
                    .0
                    .push(ip);
            }
            for ((v4, _), (ips, matched)) in groups {
                let Some(range) = covering_prefix(ips.iter()) else {
                    continue;
                };
                lookups.push(Lookup {
                    range,
                    target: "pod-ips",
                    count: ips.len() as u64,
                    len: if v4 { 32 } else { 128 },
                    matched,
                });
            }
        }
        for Lookup {
            range,
            target,
            count,
            len,
            matched,
        } in lookups
        {
            let mut e = PeerPodRoute {
                node: peer.name.clone(),
                pod_cidr: range,
                target: target.to_string(),
                pod_ip_count: count,
                internal_ips: peer.internal_ips.clone(),
                node_ready: peer.ready,
                source: Some(src.clone()),
                node_source: Some(peer.source.clone()),
                ..PeerPodRoute::default()
            };
            let Some((r, rlen)) = matched else {
                e.kind = "none".into();
                e.missing = true;
                out.push(e);
                continue;
            };
            let dev = dev_name(r);
            e.route_dst = Some(r.dst.clone());
            e.dev = dev.clone();
            e.gateway = r.gateway.map(|g| g.to_string());
            e.gateway_node = r.gateway.and_then(|g| owner.get(&g)).map(|n| n.to_string());
            let tunnel = dev
                .as_deref()
                .is_some_and(|d| is_tunnel_device(d, devices.get(d).copied().flatten()));
            let via_peer = r.gateway.is_some_and(|g| {
                peer.addresses
                    .iter()
                    .any(|a| a.parse::<IpAddr>().ok() == Some(g))
            });
            let aggregate = || {
                (target == "pod-cidr" && rlen < len)
                    || parse_prefix(&r.dst, &r.family).is_some_and(|(n, l)| covers_others(i, n, l))
            };
            e.kind = if rlen == 0 {
                "default"
            } else if r.route_type != "unicast" && !r.route_type.is_empty() {
                "unreachable"
            } else if tunnel {
                "tunnel"
            } else if via_peer {
                "node-gateway"
            } else if aggregate() {
                "aggregate"
            } else if r.gateway.is_some() {
                "other-gateway"
            } else {
                "direct"
            }
            .to_string();
            e.missing = matches!(e.kind.as_str(), "default" | "unreachable");
            e.stale_gateway = e.kind == "other-gateway";
            out.push(e);
        }
    }
    out
}

/// Devices a CNI, kube-proxy or NodeLocal DNSCache owns: their addresses sit in the pod or
/// Service range on purpose.
fn is_cni_device(name: &str, kind: &str) -> bool {
    const NAMES: [&str; 7] = [
        "lo",
        "kube-ipvs0",
        "nodelocaldns",
        "cni0",
        "cbr0",
        "weave",
        "kube-bridge",
    ];
    const PREFIXES: [&str; 10] = [
        "flannel",
        "cali",
        "tunl",
        "vxlan.calico",
        "cilium_",
        "lxc",
        "antrea-",
        "genev_sys",
        "vxlan_sys",
        "kube-dummy",
    ];
    NAMES.contains(&name)
        || PREFIXES.iter().any(|p| name.starts_with(p))
        || matches!(kind, "vxlan" | "ipip" | "geneve" | "wireguard" | "dummy")
}

/// `10.1.2.3/24` -> `10.1.2.0/24`.
fn network_of(addr: &str) -> Option<String> {
    let (ip, len) = addr.split_once('/')?;
    let len: u32 = len.parse().ok()?;
    match ip.parse::<IpAddr>().ok()? {
        IpAddr::V4(a) if len <= 32 => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            Some(format!(
                "{}/{len}",
                std::net::Ipv4Addr::from(u32::from(a) & mask)
            ))
        }
        IpAddr::V6(a) if len <= 128 => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            Some(format!(
                "{}/{len}",
                std::net::Ipv6Addr::from(u128::from(a) & mask)
            ))
        }
        _ => None,
    }
}

/// Two CIDRs share addresses exactly when one contains the other's network address.
pub(crate) fn cidrs_overlap(a: &str, b: &str) -> bool {
    let (Some(na), Some(nb)) = (network_of(a), network_of(b)) else {
        return false;
    };
    let host = |c: &str| c.split('/').next().unwrap_or_default().to_string();
    cidr_contains(&na, &host(&nb)) || cidr_contains(&nb, &host(&na))
}

/// The smallest prefix holding every address (one family), or `None` for none.
fn covering_prefix<'a>(addrs: impl Iterator<Item = &'a IpAddr>) -> Option<String> {
    let mut lo: Option<u128> = None;
    let mut hi: Option<u128> = None;
    let mut v4 = true;
    for a in addrs {
        let (x, is_v4) = match a {
            IpAddr::V4(a) => (u128::from(u32::from(*a)), true),
            IpAddr::V6(a) => (u128::from(*a), false),
        };
        v4 = is_v4;
        lo = Some(lo.map_or(x, |l| l.min(x)));
        hi = Some(hi.map_or(x, |h| h.max(x)));
    }
    let (lo, hi) = (lo?, hi?);
    let bits = if v4 { 32 } else { 128 };
    // Common leading bits of the lowest and highest address.
    let diff = lo ^ hi;
    let len = if diff == 0 {
        bits
    } else {
        bits - (128 - diff.leading_zeros())
    };
    let mask = if len == 0 {
        0
    } else {
        (u128::MAX << (128 - len)) >> (128 - bits)
    };
    let net = lo & mask;
    Some(if v4 {
        format!("{}/{len}", std::net::Ipv4Addr::from(net as u32))
    } else {
        format!("{}/{len}", std::net::Ipv6Addr::from(net))
    })
}

fn strip_port(target: &str) -> String {
    if let Some(rest) = target.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default().to_string();
    }
    target
        .rsplit_once(':')
        .map(|(ip, _)| ip.to_string())
        .unwrap_or_else(|| target.to_string())
}

fn strip_prefix_len(a: &str) -> String {
    a.split('/').next().unwrap_or(a).to_string()
}

/// Joins the masquerade rules of every iptables backend and nftables: the kernel runs the
/// legacy, iptables-nft and native nft postrouting hooks alike, so a rule in any of them
/// SNATs the packet.
fn snat_facts(ipt: &[IptablesBackendFacts], nft: &NftFacts) -> SnatFacts {
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

    /// A table of `n` entries, 3 MB+ so it spans several chunks: TCP entries, plus UDP
    /// entries to the Service 10.96.0.10:53 every 997th line whose reply comes from a pod
    /// that is no endpoint (stale), and conntrack's summary cut into the line `cut_at`.
    fn table(n: usize, cut_at: usize) -> (String, Vec<u64>) {
        let mut text = String::new();
        let mut stale_lines = Vec::new();
        let mut line = 0u64;
        for i in 0..n {
            line += 1;
            let e = if i % 97 == 0 {
                stale_lines.push(line);
                format!(
                    "udp      17 29 src=10.244.1.{} dst=10.96.0.10 sport={} dport=53 src=10.244.9.9 dst=10.244.1.{} sport=53 dport={} mark=0 use=1",
                    i % 200,
                    1024 + i % 60000,
                    i % 200,
                    1024 + i % 60000
                )
            } else {
                format!(
                    "tcp      6 431999 ESTABLISHED src=10.244.1.{} dst=10.96.{}.{} sport={} dport=443 src=10.244.2.3 dst=10.244.1.{} sport=8443 dport={} [ASSURED] mark=0 use=1",
                    i % 200,
                    i % 7,
                    i % 250,
                    1024 + i % 60000,
                    i % 200,
                    1024 + i % 60000
                )
            };
            if i == cut_at {
                // The summary lands inside the entry; its tail goes to the next line.
                let (head, tail) = e.split_at(e.len() - 20);
                text.push_str(head);
                text.push_str(
                    "conntrack v1.4.7 (conntrack-tools): 5 flow entries have been shown.\n",
                );
                text.push_str(tail);
                text.push('\n');
                line += 1;
            } else {
                text.push_str(&e);
                text.push('\n');
            }
        }
        (text, stale_lines)
    }

    fn job(text: &str) -> (tempfile::NamedTempFile, ConntrackTableJob) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        let file = std::fs::File::open(f.path()).unwrap();
        let eps: FastSet<IpAddr> = ["10.244.2.3".parse().unwrap()].into_iter().collect();
        let mut udp_services = FastMap::default();
        udp_services.insert(
            ("10.96.0.10".parse().unwrap(), 53),
            ("kube-system/kube-dns".to_string(), eps),
        );
        let job = ConntrackTableJob {
            path: layout::conntrack::TABLE,
            content: netsnap_bundle::layout::content::CONNTRACK_LIST.to_string(),
            chunks: std::sync::Mutex::new(ChunkReader::new(file)),
            udp_services,
            live_pod_by_ip: HashMap::new(),
            dns_vips: FastSet::default(),
            pod_nets: ipv4_nets(&["10.244.0.0/16".to_string()]),
        };
        (f, job)
    }

    #[test]
    fn snat_destinations_count_pod_flows_per_real_destination() {
        let mut lines: Vec<String> = Vec::new();
        // 150 pod flows masqueraded to an external API.
        for i in 0..150 {
            lines.push(format!("tcp      6 117 TIME_WAIT src=10.244.1.{} dst=93.184.216.34 sport={} dport=443 src=93.184.216.34 dst=172.18.0.10 sport=443 dport={} [ASSURED] mark=0 use=1", i % 200, 40000 + i, 30000 + i));
        }
        // 120 pod flows to the kubernetes VIP, DNATed to the apiserver and SNATed: counted
        // under the real destination.
        for i in 0..120 {
            lines.push(format!("tcp      6 86000 ESTABLISHED src=10.244.2.{} dst=10.96.0.1 sport={} dport=443 src=172.18.0.20 dst=172.18.0.10 sport=6443 dport={} [ASSURED] mark=0 use=1", i % 200, 40000 + i, 31000 + i));
        }
        // Not counted: pod flows without SNAT, SNATed flows from a non-pod source, and a
        // destination with too few flows.
        for i in 0..200 {
            lines.push(format!("udp      17 20 src=10.244.1.{} dst=1.1.1.1 sport={} dport=53 src=1.1.1.1 dst=10.244.1.{} sport=53 dport={} mark=0 use=1", i % 200, 40000 + i, i % 200, 40000 + i));
            lines.push(format!("tcp      6 100 ESTABLISHED src=192.168.5.5 dst=93.184.216.34 sport={} dport=443 src=93.184.216.34 dst=172.18.0.10 sport=443 dport={} [ASSURED] mark=0 use=1", 40000 + i, 32000 + i));
        }
        for i in 0..50 {
            lines.push(format!("udp      17 20 src=10.244.1.{} dst=8.8.8.8 sport={} dport=53 src=8.8.8.8 dst=172.18.0.10 sport=53 dport={} mark=0 use=1", i, 40000 + i, 33000 + i));
        }
        let text = lines.join("\n") + "\n";
        let (_f, job) = job(&text);
        // Two workers, each with half of the table, finished in reverse order.
        let half = lines[..200].join("\n") + "\n";
        let rest = lines[200..].join("\n") + "\n";
        let (mut a, mut b) = (ConntrackPartial::default(), ConntrackPartial::default());
        job.chunk(half.as_bytes(), 0, &mut a);
        job.chunk(rest.as_bytes(), 200, &mut b);
        let shared = job.finish(vec![b, a]).facts.snat_destinations;
        let (_f2, one) = self::job(&text);
        let sequential = one.finish(vec![one.work()]).facts.snat_destinations;
        assert_eq!(shared, sequential);
        let got: Vec<(&str, u64, Option<u64>)> = shared
            .iter()
            .map(|d| {
                (
                    d.key.as_str(),
                    d.flows,
                    d.source.as_ref().and_then(|s| s.line),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("tcp 93.184.216.34:443", 150, Some(1)),
                ("tcp 172.18.0.20:6443", 120, Some(151)),
            ]
        );
    }

    #[test]
    fn port_range_and_pod_networks() {
        assert_eq!(port_range_width("32768\t60999"), Some(28232));
        assert_eq!(port_range_width("1024 65535"), Some(64512));
        assert_eq!(port_range_width("60999 32768"), None);
        assert_eq!(port_range_width("32768"), None);
        assert_eq!(
            ipv4_nets(&[
                "10.244.0.0/16".into(),
                "fd00::/64".into(),
                "0.0.0.0/0".into(),
                "bad".into()
            ]),
            [(0x0af4_0000, 0xffff_0000), (0, 0)]
        );
    }

    /// The table pass run by one worker taking every chunk, and by two workers taking
    /// chunks alternately (as the threads may), finished in reverse order.
    fn sequential_and_shared(text: &str) -> (ConntrackTableResult, ConntrackTableResult) {
        let (_f1, one) = job(text);
        let sequential = one.finish(vec![one.work()]);
        let (_f2, two) = job(text);
        let (mut a, mut b) = (ConntrackPartial::default(), ConntrackPartial::default());
        let mut buf = Vec::new();
        let mut chunks = 0;
        while let Some(first) = two.chunks.lock().unwrap().next_chunk(&mut buf).unwrap() {
            two.chunk(
                &buf,
                first - 1,
                if chunks % 2 == 0 { &mut a } else { &mut b },
            );
            chunks += 1;
        }
        assert!(chunks >= 2, "only {chunks} chunk(s)");
        (sequential, two.finish(vec![b, a]))
    }

    #[test]
    fn chunked_conntrack_pass_matches_one_sequential_pass() {
        // Cut the summary into the entry that straddles the first chunk boundary.
        let probe = table(40_000, usize::MAX).0;
        let boundary_line = probe.as_bytes()[..CONNTRACK_CHUNK]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        let (text, stale_lines) = table(40_000, boundary_line);
        assert!(
            text.len() > 3 * CONNTRACK_CHUNK / 2,
            "the table must span chunks"
        );

        let (sequential, shared) = sequential_and_shared(&text);

        for r in [&sequential, &shared] {
            let ct = &r.facts;
            // Every entry parsed, the spliced one included; nothing reported unreadable.
            assert_eq!(ct.entries, 40_000);
            assert!(r.notes.is_empty(), "{:?}", r.notes);
            assert_eq!(ct.by_protocol["udp"], stale_lines.len() as u64);
            assert_eq!(ct.stale_udp_count, stale_lines.len() as u64);
            // The kept entries are the table's first ones, with their real line numbers.
            let kept: Vec<u64> = ct
                .stale_udp
                .iter()
                .map(|e| e.source.as_ref().unwrap().line.unwrap())
                .collect();
            let want: Vec<u64> = stale_lines
                .iter()
                .copied()
                .take(CONNTRACK_LIST_CAP)
                .collect();
            assert_eq!(kept, want);
            let line_of = |n: u64| text.lines().nth(n as usize - 1).unwrap();
            assert!(line_of(kept[7]).starts_with("udp ") && line_of(kept[7]).contains("dport=53"));
        }
        assert_eq!(sequential.facts, shared.facts);
        // Later stale entries than the cap are counted, not kept.
        assert!(stale_lines.len() > CONNTRACK_LIST_CAP);
    }

    #[test]
    fn chunked_conntrack_pass_counts_coverage_like_one_whole_file_parse() {
        // Unparsed lines in several chunks, more than are quoted, the first ones late in
        // the table (a worker's first lines are not the table's first).
        let (clean, _) = table(40_000, usize::MAX);
        let mut text = String::new();
        let n_lines = clean.lines().count();
        for (i, l) in clean.lines().enumerate() {
            if i > 0 && (i % 9_000 == 0 || i == n_lines - 1) {
                text.push_str(&format!("garbage line {i}\n"));
            }
            text.push_str(l);
            text.push('\n');
        }
        text.push_str("no newline at the end");
        assert!(text.len() > 3 * CONNTRACK_CHUNK / 2);
        let mut whole = Vec::new();
        let mut count = 0;
        let stats = parse::conntrack::for_each_entry(text.as_bytes(), |r| {
            if let Err(u) = r {
                count += 1;
                if whole.len() < MAX_QUOTED {
                    whole.push(u);
                }
            }
        })
        .unwrap();
        assert!(count > MAX_QUOTED, "{count}");
        let (sequential, shared) = sequential_and_shared(&text);
        for r in [sequential, shared] {
            let c = r.coverage.expect("coverage of a table read whole");
            assert_eq!(c.path, layout::conntrack::TABLE);
            assert_eq!(c.lines, stats.lines);
            assert_eq!(c.unparsed, count);
            assert_eq!(c.first, whole);
        }
    }

    /// A main-table route from `ip route` text (`[type] dst [via gw] [dev d] …`).
    fn route(text: &str) -> RouteRecord {
        let mut w = text.split_whitespace().peekable();
        let mut r = RouteRecord {
            table: 254,
            route_type: "unicast".into(),
            ..RouteRecord::default()
        };
        if let Some(t) = w.next_if(|t| ["blackhole", "unreachable", "prohibit"].contains(t)) {
            r.route_type = t.into();
        }
        r.dst = w.next().unwrap().into();
        let v6 = r.dst.contains(':') || text.contains("via fd") || text.contains("via fe80");
        r.family = if v6 { "inet6" } else { "inet" }.into();
        while let Some(t) = w.next() {
            match t {
                "via" => r.gateway = w.next().map(|g| g.parse().unwrap()),
                "dev" => r.dev = w.next().map(String::from),
                "proto" => r.protocol = w.next().unwrap().into(),
                _ => {}
            }
        }
        r
    }

    fn host(links: &[(&str, Option<&str>)], routes: &[&str]) -> NetnsSnapshot {
        NetnsSnapshot {
            netns: "host".into(),
            links: links
                .iter()
                .enumerate()
                .map(|(i, (name, kind))| netsnap_bundle::native::LinkRecord {
                    index: i as u32 + 1,
                    name: name.to_string(),
                    kind: kind.map(String::from),
                    ..Default::default()
                })
                .collect(),
            routes: routes.iter().map(|r| route(r)).collect(),
            ..NetnsSnapshot::default()
        }
    }

    fn peer(name: &str, ip: &str, cidrs: &[&str], pods: &[&str]) -> Peer {
        Peer {
            name: name.into(),
            local: name == "node-a",
            addresses: vec![ip.into()],
            internal_ips: vec![ip.into()],
            ready: Some(true),
            pod_cidrs: cidrs.iter().map(|c| c.to_string()).collect(),
            pod_ips: pods.iter().map(|c| c.to_string()).collect(),
            source: Source::line(layout::k8s::NODES, 1),
        }
    }

    /// (node, pod range, kind, missing, stale) of every lookup.
    fn judged(peers: &[Peer], h: &NetnsSnapshot) -> Vec<(String, String, String, bool, bool)> {
        route_peers(peers, h, &Source::file("netns/host/netlink.json"))
            .into_iter()
            .map(|e| (e.node, e.pod_cidr, e.kind, e.missing, e.stale_gateway))
            .collect()
    }

    fn row(
        node: &str,
        cidr: &str,
        kind: &str,
        missing: bool,
        stale: bool,
    ) -> (String, String, String, bool, bool) {
        (node.into(), cidr.into(), kind.into(), missing, stale)
    }

    #[test]
    fn peer_pod_routes_by_longest_prefix() {
        let nodes = [
            peer(
                "node-a",
                "192.168.1.10",
                &["10.244.0.0/24"],
                &["10.244.0.5"],
            ),
            peer(
                "node-b",
                "192.168.1.11",
                &["10.244.1.0/24"],
                &["10.244.1.7"],
            ),
            peer("node-c", "192.168.1.12", &["10.244.2.0/24"], &[]),
        ];
        let base = [
            "default via 192.168.1.1 dev eth0",
            "192.168.1.0/24 dev eth0",
            "10.244.0.0/24 dev cni0",
        ];
        fn with<'s>(base: &[&'s str], extra: &[&'s str]) -> Vec<&'s str> {
            base.iter().chain(extra).copied().collect()
        }
        let links = [
            ("eth0", None),
            ("cni0", Some("bridge")),
            ("flannel.1", Some("vxlan")),
            ("tunl0", Some("ipip")),
        ];

        // flannel vxlan: the gateway is the peer's flannel.1 address, not its node IP.
        let h = host(
            &links,
            &with(
                &base,
                &[
                    "10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink",
                    "10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink",
                ],
            ),
        );
        assert_eq!(
            judged(&nodes, &h),
            vec![
                row("node-b", "10.244.1.0/24", "tunnel", false, false),
                row("node-c", "10.244.2.0/24", "tunnel", false, false),
            ]
        );

        // node-c's route is gone: only the default route matches.
        let h = host(
            &links,
            &with(
                &base,
                &["10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink"],
            ),
        );
        assert_eq!(
            judged(&nodes, &h)[1],
            row("node-c", "10.244.2.0/24", "default", true, false)
        );

        // host-gw: via the node's InternalIP; node-c's route still names its old address.
        let h = host(
            &links,
            &with(
                &base,
                &[
                    "10.244.1.0/24 via 192.168.1.11 dev eth0",
                    "10.244.2.0/24 via 192.168.1.99 dev eth0",
                ],
            ),
        );
        assert_eq!(
            judged(&nodes, &h),
            vec![
                row("node-b", "10.244.1.0/24", "node-gateway", false, false),
                row("node-c", "10.244.2.0/24", "other-gateway", false, true),
            ]
        );
        // …or another node's address (gateway_node names it).
        let h = host(
            &links,
            &with(&base, &["10.244.2.0/24 via 192.168.1.11 dev eth0"]),
        );
        let e = route_peers(&nodes, &h, &Source::file("x"));
        assert!(e[1].stale_gateway && e[1].gateway_node.as_deref() == Some("node-b"));
        assert!(e[0].missing && e[0].kind == "default");

        // An aggregate through a router covers every node; a blackhole is no path.
        let h = host(
            &links,
            &with(
                &base,
                &[
                    "10.244.0.0/16 via 192.168.1.254 dev eth0",
                    "blackhole 10.244.2.0/24",
                ],
            ),
        );
        assert_eq!(
            judged(&nodes, &h),
            vec![
                row("node-b", "10.244.1.0/24", "aggregate", false, false),
                row("node-c", "10.244.2.0/24", "unreachable", true, false),
            ]
        );

        // No main-table route at all: routes were not collected, nothing is judged.
        assert!(judged(&nodes, &host(&links, &[])).is_empty());
        // A single-node cluster has nothing to look up.
        assert!(judged(&nodes[..1], &host(&links, &base)).is_empty());
    }

    #[test]
    fn peer_pod_routes_skip_families_the_host_does_not_route() {
        let nodes = [
            peer(
                "node-a",
                "192.168.1.10",
                &["10.244.0.0/24", "fd00:10:244::/64"],
                &[],
            ),
            peer(
                "node-b",
                "192.168.1.11",
                &["10.244.1.0/24", "fd00:10:244:1::/64"],
                &[],
            ),
            peer("node-c", "192.168.1.12", &[], &[]),
        ];
        let links = [
            ("eth0", None),
            ("flannel.1", Some("vxlan")),
            ("flannel-v6.1", Some("vxlan")),
        ];
        // IPv6 has only link-local routes: the v6 podCIDR is not judged.
        let v4 = host(
            &links,
            &[
                "default via 192.168.1.1 dev eth0",
                "fe80::/64 dev eth0",
                "10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink",
            ],
        );
        assert_eq!(
            judged(&nodes, &v4),
            vec![row("node-b", "10.244.1.0/24", "tunnel", false, false)]
        );
        // Dual-stack routed: the v6 range is looked up too and falls to the v6 default.
        let dual = host(
            &links,
            &[
                "default via 192.168.1.1 dev eth0",
                "default via fd00::1 dev eth0",
                "10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink",
            ],
        );
        assert_eq!(
            judged(&nodes, &dual),
            vec![
                row("node-b", "10.244.1.0/24", "tunnel", false, false),
                row("node-b", "fd00:10:244:1::/64", "default", true, false),
            ]
        );
        let dual = host(
            &links,
            &[
                "default via 192.168.1.1 dev eth0",
                "default via fd00::1 dev eth0",
                "10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink",
                "fd00:10:244:1::/64 via fd00:10:244:1:: dev flannel-v6.1 onlink",
            ],
        );
        assert!(judged(&nodes, &dual).iter().all(|r| r.2 == "tunnel"));
    }

    #[test]
    fn peer_pod_routes_scale_to_large_clusters() {
        // 1500 nodes with 30 pods each, every route via a gateway no node owns: the worst
        // case, where each lookup scans every other node's pods for an aggregate.
        let nodes: Vec<Peer> = (0..1500u32)
            .map(|i| {
                let (a, b) = (i / 256, i % 256);
                let net = format!("10.{}.{b}", 100 + a);
                let pods: Vec<String> = (1..=30).map(|p| format!("{net}.{p}")).collect();
                let pods: Vec<&str> = pods.iter().map(String::as_str).collect();
                let cidr = format!("{net}.0/24");
                let mut p = peer(
                    &format!("n{i}"),
                    &format!("172.16.{a}.{b}"),
                    &[&cidr],
                    &pods,
                );
                p.local = i == 0;
                p
            })
            .collect();
        let routes: Vec<String> = std::iter::once("default via 172.16.0.1 dev eth0".to_string())
            .chain((1..1500u32).map(|i| {
                let (a, b) = (i / 256, i % 256);
                format!("10.{}.{b}.0/24 via 172.31.{a}.{b} dev eth0", 100 + a)
            }))
            .collect();
        let routes: Vec<&str> = routes.iter().map(String::as_str).collect();
        let h = host(&[("eth0", None)], &routes);
        let start = std::time::Instant::now();
        let e = route_peers(&nodes, &h, &Source::file("x"));
        let took = start.elapsed();
        assert_eq!(e.len(), 1499);
        assert!(e.iter().all(|r| r.stale_gateway), "{:?}", e[0]);
        assert!(took < std::time::Duration::from_secs(30), "{took:?}");
    }

    #[test]
    fn cloud_routed_cnis_are_recognised() {
        let aws = host(&[("ens5", None), ("eni3f2a9c1b7d0", Some("veth"))], &[]);
        assert_eq!(
            cloud_pod_routing(&aws, None, &[]).as_deref(),
            Some("aws-vpc-cni")
        );
        let azure = host(&[("eth0", None), ("azv1a2b3c4d5e", Some("veth"))], &[]);
        assert_eq!(
            cloud_pod_routing(&azure, None, &[]).as_deref(),
            Some("azure")
        );
        let labels: BTreeMap<String, String> = [(
            "cloud.google.com/gke-nodepool".to_string(),
            "default-pool".to_string(),
        )]
        .into();
        let plain = host(
            &[
                ("eth0", None),
                ("cni0", Some("bridge")),
                ("flannel.1", Some("vxlan")),
            ],
            &[],
        );
        assert_eq!(
            cloud_pod_routing(&plain, Some(&labels), &[]).as_deref(),
            Some("gke")
        );
        assert_eq!(cloud_pod_routing(&plain, None, &[]), None);
    }

    #[test]
    fn service_range_and_overlaps() {
        let ips: Vec<IpAddr> = ["10.96.0.1", "10.96.0.10", "10.100.3.7"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(covering_prefix(ips.iter()).as_deref(), Some("10.96.0.0/13"));
        let one: Vec<IpAddr> = vec!["10.96.0.10".parse().unwrap()];
        assert_eq!(
            covering_prefix(one.iter()).as_deref(),
            Some("10.96.0.10/32")
        );
        let v6: Vec<IpAddr> = vec!["fd00::1".parse().unwrap(), "fd00::ff".parse().unwrap()];
        assert_eq!(covering_prefix(v6.iter()).as_deref(), Some("fd00::/120"));
        assert_eq!(covering_prefix(std::iter::empty()), None);
        assert_eq!(
            network_of("10.244.7.9/16").as_deref(),
            Some("10.244.0.0/16")
        );
        assert!(cidrs_overlap("10.244.0.0/16", "10.244.5.0/24"));
        assert!(cidrs_overlap("10.244.5.3/24", "10.0.0.0/8"));
        assert!(!cidrs_overlap("10.244.0.0/16", "10.245.0.0/16"));
        assert!(!cidrs_overlap("10.96.0.0/12", "10.244.0.0/16"));
        assert!(is_cni_device("cni0", "bridge") && is_cni_device("flannel.1", "vxlan"));
        assert!(!is_cni_device("eth1", "") && !is_cni_device("docker0", "bridge"));
    }

    #[test]
    fn unreplied_backends_add_up_across_chunks() {
        // 40,000 entries (several chunks): a dead backend behind a TCP Service (SYN_SENT,
        // unreplied), a dead DNS endpoint (UDP/53, unreplied), a statsd backend (one-way
        // UDP/8125) and a healthy backend with a few SYN_SENT in flight among replies.
        let mut text = String::new();
        let (mut dead_tcp, mut dead_dns, mut statsd, mut healthy_syn) = (0u64, 0u64, 0u64, 0u64);
        let mut first_dead_tcp = None;
        for i in 0..40_000u64 {
            let port = 1024 + i % 60000;
            let line = if i % 50 == 7 {
                dead_tcp += 1;
                first_dead_tcp.get_or_insert(i + 1);
                format!(
                    "tcp      6 118 SYN_SENT src=10.244.1.15 dst=10.96.112.40 sport={port} dport=80 [UNREPLIED] src=10.244.4.22 dst=10.244.1.15 sport=8080 dport={port} mark=0 use=1"
                )
            } else if i % 70 == 3 {
                dead_dns += 1;
                format!(
                    "udp      17 28 src=10.244.1.31 dst=10.96.0.10 sport={port} dport=53 [UNREPLIED] src=10.244.1.7 dst=10.244.1.31 sport=53 dport={port} mark=0 use=1"
                )
            } else if i % 30 == 1 {
                statsd += 1;
                format!(
                    "udp      17 29 src=10.244.1.23 dst=10.96.77.5 sport={port} dport=8125 [UNREPLIED] src=10.244.3.40 dst=10.244.1.23 sport=8125 dport={port} mark=0 use=1"
                )
            } else if i % 40 == 9 {
                healthy_syn += 1;
                format!(
                    "tcp      6 118 SYN_SENT src=10.244.1.15 dst=10.96.5.5 sport={port} dport=443 [UNREPLIED] src=10.244.2.3 dst=10.244.1.15 sport=8443 dport={port} mark=0 use=1"
                )
            } else {
                format!(
                    "tcp      6 431999 ESTABLISHED src=10.244.1.15 dst=10.96.5.5 sport={port} dport=443 src=10.244.2.3 dst=10.244.1.15 sport=8443 dport={port} [ASSURED] mark=0 use=1"
                )
            };
            text.push_str(&line);
            text.push('\n');
        }
        let (sequential, shared) = sequential_and_shared(&text);
        assert_eq!(sequential.facts, shared.facts);
        let ct = &shared.facts;
        assert_eq!(ct.unreplied, dead_tcp + dead_dns + statsd + healthy_syn);
        assert_eq!(ct.unreplied_expecting_reply, ct.unreplied);
        let b: Vec<(&str, u64, u64, u64, u64)> = ct
            .unreplied_backends
            .iter()
            .map(|b| (b.ip.as_str(), b.unreplied, b.syn_sent, b.udp_dns, b.replied))
            .collect();
        // Never-answering backends first, by count; the healthy one last with its replies.
        let healthy_replied = 40_000 - dead_tcp - dead_dns - statsd - healthy_syn;
        assert_eq!(
            b,
            [
                ("10.244.3.40", statsd, 0, 0, 0),
                ("10.244.4.22", dead_tcp, dead_tcp, 0, 0),
                ("10.244.1.7", dead_dns, 0, dead_dns, 0),
                ("10.244.2.3", healthy_syn, healthy_syn, 0, healthy_replied),
            ]
        );
        let dead = &ct.unreplied_backends[1];
        assert_eq!(dead.ports, ["tcp/8080"]);
        assert_eq!(
            dead.source,
            Some(Source::line(
                layout::conntrack::TABLE,
                first_dead_tcp.unwrap()
            ))
        );
        let ports: Vec<(&str, u64)> = ct
            .unreplied_udp_ports
            .iter()
            .map(|p| (p.key.as_str(), p.count))
            .collect();
        assert_eq!(ports, [("8125", statsd), ("53", dead_dns)]);
    }

    #[test]
    fn backend_tally_keeps_the_lowest_ports_whatever_the_merge_order() {
        let tally = |ports: std::ops::Range<u16>| {
            let mut t = BackendTally::default();
            for p in ports.rev() {
                t.add_port(("udp", p));
            }
            t
        };
        let (mut a, mut b) = (tally(100..120), tally(1..5));
        a.merge(tally(1..5));
        b.merge(tally(100..120));
        assert_eq!(a, b);
        let want: Vec<u16> = (1..5).chain(100..104).collect();
        assert_eq!(a.ports.iter().map(|p| p.1).collect::<Vec<_>>(), want);
    }

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

    #[test]
    fn cidrs_aggregate_without_adding_addresses() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        // 64 node /24s of 10.244.0.0/18 are that /18.
        let all: Vec<String> = (0..64).map(|i| format!("10.244.{i}.0/24")).collect();
        assert_eq!(aggregate_cidrs(&all), s(&["10.244.0.0/18"]));
        // 62 of them (two missing): no address is added, so several prefixes remain.
        let some: Vec<String> = (0..64)
            .filter(|i| *i != 5 && *i != 40)
            .map(|i| format!("10.244.{i}.0/24"))
            .collect();
        let agg = aggregate_cidrs(&some);
        assert!(agg.len() <= 12, "62 ranges become a handful: {agg:?}");
        let covered: u64 = agg
            .iter()
            .map(|c| 1u64 << (32 - c.split_once('/').unwrap().1.parse::<u32>().unwrap()))
            .sum();
        assert_eq!(covered, 62 * 256, "{agg:?}");
        for c in &some {
            let ip = c.split_once('/').unwrap().0;
            assert!(agg.iter().any(|a| cidr_contains(a, ip)), "{c} lost");
        }
        assert!(
            !agg.iter().any(|a| cidr_contains(a, "10.244.5.1")),
            "{agg:?}"
        );
        // Contained ranges go, unrelated and IPv6 ones stay, garbage is kept as is.
        assert_eq!(
            aggregate_cidrs(&s(&[
                "10.0.0.0/8",
                "10.1.0.0/16",
                "192.168.0.0/24",
                "fd00::/65",
                "fd00:0:0:0:8000::/65",
                "x"
            ])),
            s(&["10.0.0.0/8", "192.168.0.0/24", "fd00::/64", "x"])
        );
    }

    #[test]
    fn cidr_containment() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(prefix_holds(ip("10.244.0.0"), 16, ip("10.244.3.9")));
        assert!(!prefix_holds(ip("10.244.0.0"), 16, ip("10.245.0.1")));
        assert!(prefix_holds(ip("0.0.0.0"), 0, ip("1.2.3.4")));
        assert!(prefix_holds(ip("10.1.2.3"), 32, ip("10.1.2.3")));
        assert!(
            prefix_holds(ip("::"), 0, ip("fd00::5"))
                && prefix_holds(ip("fd00::"), 64, ip("fd00::5"))
        );
        assert!(
            !prefix_holds(ip("fd00::"), 64, ip("10.0.0.1"))
                && !prefix_holds(ip("10.0.0.0"), 33, ip("10.0.0.1"))
        );
        assert!(cidr_contains("10.244.0.0/16", "10.244.3.9"));
        assert!(!cidr_contains("10.244.0.0/16", "10.245.0.1"));
        assert!(cidr_contains("0.0.0.0/0", "1.2.3.4"));
        assert!(cidr_contains("fd00::/64", "fd00::5"));
        assert!(!cidr_contains("fd00::/64", "10.0.0.1"));
        assert!(!cidr_contains("garbage", "10.0.0.1"));
    }

    #[test]
    fn keys_and_ports() {
        assert_eq!(service_key("10.96.0.10", 53, "UDP"), "10.96.0.10:53/udp");
        assert_eq!(service_key("fd00::a", 53, "TCP"), "[fd00::a]:53/tcp");
        assert_eq!(strip_port("[fd00::a]:53"), "fd00::a");
        assert_eq!(strip_port("10.1.2.3:80"), "10.1.2.3");
    }
}

//! The conntrack table pass: a pure, streaming, parallel engine. The table is read in
//! line-aligned chunks that any number of workers take in turn, aggregated on the fly
//! (nothing per entry is kept), and the workers' partial tallies are merged at the end.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::net::IpAddr;

use super::coverage::{ArtifactCoverage, MAX_QUOTED};
use super::keys::*;
use super::model::*;
use crate::parse;

/// Most entries kept in each derived conntrack list.
pub const CONNTRACK_LIST_CAP: usize = 100;

/// Most distinct DNAT backends tallied for `unreplied_backends` (a memory bound).
pub(crate) const CONNTRACK_BACKEND_CAP: usize = 10_000;

/// Unreplied entries a backend needs to be listed in `unreplied_backends`.
pub(crate) const UNREPLIED_BACKEND_MIN: u64 = 10;

/// Unreplied `proto/port` pairs kept per backend (the lowest, so merging is exact).
pub(crate) const UNREPLIED_BACKEND_PORTS: usize = 8;

/// UDP ports listed in `unreplied_udp_ports`.
pub(crate) const UNREPLIED_UDP_TOP: usize = 20;

/// Hash maps for the per-entry lookups of the conntrack pass (a million entries): foldhash
/// is several times faster than SipHash and still randomly seeded per map.
pub(crate) type FastMap<K, V> = foldhash::HashMap<K, V>;

pub(crate) type FastSet<T> = foldhash::HashSet<T>;

/// The conntrack table pass: read in line-aligned chunks that any number of workers
/// take in turn, aggregated on the fly; nothing per entry is kept.
pub(crate) struct ConntrackTableJob {
    pub(crate) path: &'static str,
    /// The table's content id (for its parse coverage).
    pub(crate) content: String,
    pub(crate) chunks: std::sync::Mutex<ChunkReader>,
    pub(crate) udp_services: FastMap<(IpAddr, u16), (String, FastSet<IpAddr>)>,
    pub(crate) live_pod_by_ip: HashMap<String, String>,
    pub(crate) dns_vips: FastSet<IpAddr>,
    /// The cluster's IPv4 pod ranges as (network, mask), for the SNAT tally.
    pub(crate) pod_nets: Vec<(u32, u32)>,
}

/// What the table pass found: the table-derived fields of [`ConntrackFacts`], and notes.
pub(crate) struct ConntrackTableResult {
    pub(crate) facts: ConntrackFacts,
    pub(crate) notes: Vec<String>,
    /// The table's parse coverage, as [`super::coverage::parse_coverage`] reports it; `None`
    /// after an I/O error (the coverage pass skips such a table too).
    pub(crate) coverage: Option<ArtifactCoverage>,
}

/// One worker's share of the table pass.
#[derive(Default)]
pub(crate) struct ConntrackPartial {
    pub(crate) facts: ConntrackFacts,
    pub(crate) dests: FastMap<(parse::conntrack::Protocol, IpAddr, u16), u64>,
    /// DNAT backend (reply source) -> its replied/unreplied tally.
    pub(crate) backends: FastMap<IpAddr, BackendTally>,
    /// Original destination port -> `[UNREPLIED]` UDP entries.
    pub(crate) unreplied_udp: FastMap<u16, u64>,
    /// (protocol, destination after DNAT, port) of SNATed pod flows -> (entries, first line).
    pub(crate) snat: FastMap<(parse::conntrack::Protocol, IpAddr, u16), (u64, u64)>,
    pub(crate) unparsed: u64,
    /// This worker's first unparsed lines (numbered in the table), at most [`MAX_QUOTED`].
    pub(crate) first_unparsed: Vec<parse::Unparsed>,
    /// Lines read, as the streaming parser counts them.
    pub(crate) lines: u64,
    pub(crate) error: Option<String>,
}

/// Replied and unreplied entries to one DNAT backend. Every field merges exactly (sums,
/// the lowest ports, the first line), so the workers' chunk split does not matter.
#[derive(Default, Debug, Clone, PartialEq)]
pub(crate) struct BackendTally {
    pub(crate) unreplied: u64,
    pub(crate) syn_sent: u64,
    pub(crate) udp_dns: u64,
    pub(crate) replied: u64,
    pub(crate) ports: BTreeSet<(&'static str, u16)>,
    pub(crate) first_line: Option<u64>,
}

impl BackendTally {
    pub(crate) fn add_port(&mut self, port: (&'static str, u16)) {
        if self.ports.len() < UNREPLIED_BACKEND_PORTS || self.ports.last() > Some(&port) {
            self.ports.insert(port);
            if self.ports.len() > UNREPLIED_BACKEND_PORTS {
                self.ports.pop_last();
            }
        }
    }

    pub(crate) fn merge(&mut self, o: BackendTally) {
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

/// SNATed pod flows to one destination below this are not listed.
pub(crate) const SNAT_DESTINATION_MIN: u64 = 100;

/// SNAT destinations listed.
pub(crate) const SNAT_DESTINATION_TOP: usize = 20;

/// Bytes per chunk: large enough that handing chunks out costs nothing, small enough
/// that two workers finish together and memory stays flat.
pub(crate) const CONNTRACK_CHUNK: usize = 2 << 20;

/// Hands out the table in chunks that end at a line end, with the number of their
/// first line (workers number entries by it, so evidence lines stay exact).
pub(crate) struct ChunkReader {
    pub(crate) input: BufReader<std::fs::File>,
    pub(crate) next_line: u64,
    pub(crate) done: bool,
}

impl ChunkReader {
    pub(crate) fn new(file: std::fs::File) -> ChunkReader {
        ChunkReader {
            input: BufReader::with_capacity(1 << 16, file),
            next_line: 1,
            done: false,
        }
    }

    pub(crate) fn next_chunk(&mut self, buf: &mut Vec<u8>) -> std::io::Result<Option<u64>> {
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
    pub(crate) fn work(&self) -> ConntrackPartial {
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

    pub(crate) fn chunk(&self, text: &[u8], line_offset: u64, part: &mut ConntrackPartial) {
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
    pub(crate) fn finish(&self, parts: Vec<ConntrackPartial>) -> ConntrackTableResult {
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

#[cfg(test)]
mod tests {
    use super::*;
    use netsnap_bundle::layout;

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
}

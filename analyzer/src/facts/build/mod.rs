//! Builds [`Facts`] from a bundle.
//!
//! Guarantees:
//! - never fails and never panics on bad content: an unreadable or malformed
//!   artifact becomes a note in `collection.notes` and its facts stay empty;
//! - large artifacts are streamed line by line (the conntrack table is
//!   aggregated on the fly and never held whole; lists derived from it are capped);
//! - ages are computed against the manifest's `finished_at`, never the local clock.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use netsnap_bundle::k8s::{EndpointSliceRecord, NodeRecord, PodRecord, ServiceRecord};
use netsnap_bundle::{Bundle, layout};
use serde::de::DeserializeOwned;

use super::coverage::ArtifactCoverage;
use super::model::*;
use crate::lines;
use crate::parse;

mod conntrack;
mod dataplane;
mod dns;
mod node;
mod pods;
mod services;

use super::conntrack_table::*;
use super::keys::*;
use super::routes::*;

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

/// [`from_bundle`] without the conntrack table pass (the bundle's largest artifact): every
/// join (pods, netns, veths, Services, endpoints, dataplanes, DNS) as `analyze` computes
/// it, the table's tallies left empty. For `inspect` views, which show the joins and must
/// never disagree with the findings.
pub fn from_bundle_for_views(bundle: &Bundle) -> Facts {
    let mut b = Builder::new(bundle);
    b.skip_conntrack_table = true;
    b.build()
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
    /// Whether to skip the conntrack table pass ([`from_bundle_for_views`]).
    skip_conntrack_table: bool,
    table_coverage: Option<ArtifactCoverage>,
    /// The parse coverage of the iptables saves it parsed (with `keep_table_coverage`).
    text_coverage: Vec<ArtifactCoverage>,
}

fn age(now: DateTime<Utc>, t: Option<DateTime<Utc>>) -> Option<i64> {
    t.map(|t| (now - t).num_seconds().max(0))
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
            skip_conntrack_table: false,
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
        let table_job = if self.skip_conntrack_table {
            None
        } else {
            self.conntrack_table_job()
        };
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

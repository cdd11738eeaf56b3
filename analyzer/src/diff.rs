//! `netsnap-analyze diff A B`: what changed between two bundles, semantically.
//!
//! Two uses: the same node before and after a change ("what did the upgrade break?") and
//! two nodes of one cluster ("works on node A, not on node B"). The inputs are what
//! `analyze` already computes (the [`Facts`] of each bundle and its findings), so `diff`
//! never disagrees with `analyze` or `inspect`: findings new / resolved / changed in
//! severity, and sections of facts (Services and their dataplane per port, pods, netns,
//! veths, sysctls, MTUs, conntrack pressure, rule counts, the kube-proxy mode) where only
//! the items that differ are listed.
//!
//! Pure: facts and findings in, a [`Diff`] out; rendering lives in `report::diff`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::analyze::{Finding, NotEvaluated};
use crate::facts::Facts;
use crate::rules::Severity;

/// Version of the JSON layout of [`Diff`].
pub const DIFF_SCHEMA_VERSION: u32 = 1;

/// One side of the comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Side {
    /// The bundle path as given.
    pub path: String,
    /// Node name.
    pub node: String,
    /// Capture time.
    pub captured_at: String,
}

/// A finding as the diff lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FindingRef {
    /// Rule id.
    pub rule_id: String,
    /// Subject.
    pub subject: String,
    /// Severity.
    pub severity: Severity,
    /// Message.
    pub message: String,
}

/// A finding present on both sides with a different severity or message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FindingChange {
    /// Rule id.
    pub rule_id: String,
    /// Subject.
    pub subject: String,
    /// Severity in A.
    pub before: Severity,
    /// Severity in B.
    pub after: Severity,
    /// Message in B.
    pub message: String,
}

/// A finding of A whose rule B could not evaluate: not resolved, unknown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FindingUnknown {
    /// The finding in A.
    pub finding: FindingRef,
    /// Why B did not evaluate the rule.
    pub reason: String,
}

/// Findings compared by (rule, subject).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FindingsDiff {
    /// In B, not in A.
    pub new: Vec<FindingRef>,
    /// In A, not in B (and B evaluated the rule).
    pub resolved: Vec<FindingRef>,
    /// In both, severity changed.
    pub changed: Vec<FindingChange>,
    /// In A; B did not evaluate the rule (missing data), so it is not known to be resolved.
    pub not_evaluated_in_b: Vec<FindingUnknown>,
}

/// One item that differs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// What (`default/kubernetes:https/tcp iptables endpoints`, `net.ipv4.ip_forward`).
    pub item: String,
    /// Value in A (`null`: absent).
    pub before: Option<String>,
    /// Value in B (`null`: absent).
    pub after: Option<String>,
}

/// A named group of changes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Section {
    /// Section name (`services`, `dataplane`, `pods`, …).
    pub name: String,
    /// Items that differ, in item order.
    pub changes: Vec<Change>,
}

/// The whole comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diff {
    /// Layout version ([`DIFF_SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// Always `netsnap-diff`.
    pub kind: &'static str,
    /// The "before" (or reference node) bundle.
    pub a: Side,
    /// The "after" (or other node) bundle.
    pub b: Side,
    /// True when B has a new finding, or a finding of higher severity, at or above the
    /// threshold the caller chose (the CLI's `--fail-on`).
    pub worse: bool,
    /// Findings compared.
    pub findings: FindingsDiff,
    /// Fact sections with at least one change.
    pub sections: Vec<Section>,
}

/// Everything `diff` needs from one bundle: what `analyze` computed for it.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The bundle path as given.
    pub path: &'a str,
    /// Its facts.
    pub facts: &'a Facts,
    /// Its findings.
    pub findings: &'a [Finding],
    /// The rules it did not evaluate.
    pub not_evaluated: &'a [NotEvaluated],
}

/// Compares two bundles; `worse` counts findings at or above `threshold`.
pub fn diff(a: Input<'_>, b: Input<'_>, threshold: Severity) -> Diff {
    let findings = diff_findings(a, b);
    let worse = findings.new.iter().any(|f| f.severity >= threshold)
        || findings
            .changed
            .iter()
            .any(|c| c.after > c.before && c.after >= threshold);
    let sections = [
        ("kube-proxy", kube_proxy(a.facts, b.facts)),
        ("services", services(a.facts, b.facts)),
        ("dataplane", dataplane(a.facts, b.facts)),
        ("pods", pods(a.facts, b.facts)),
        ("netns and veths", netns(a.facts, b.facts)),
        ("sysctls", sysctls(a.facts, b.facts)),
        ("mtu", mtu(a.facts, b.facts)),
        ("conntrack", conntrack(a.facts, b.facts)),
        ("rule counts", rule_counts(a.facts, b.facts)),
    ]
    .into_iter()
    .filter(|(_, c)| !c.is_empty())
    .map(|(n, changes)| Section {
        name: n.to_string(),
        changes,
    })
    .collect();
    Diff {
        schema_version: DIFF_SCHEMA_VERSION,
        kind: "netsnap-diff",
        a: side(a),
        b: side(b),
        worse,
        findings,
        sections,
    }
}

fn side(i: Input<'_>) -> Side {
    Side {
        path: i.path.to_string(),
        node: i.facts.node.name.clone(),
        captured_at: i.facts.node.captured_at.clone(),
    }
}

fn finding_ref(f: &Finding) -> FindingRef {
    FindingRef {
        rule_id: f.rule_id.clone(),
        subject: f.subject.clone(),
        severity: f.severity,
        message: f.message.clone(),
    }
}

fn diff_findings(a: Input<'_>, b: Input<'_>) -> FindingsDiff {
    // Keyed without the node: comparing two nodes must match their findings.
    let key = |f: &Finding| (f.rule_id.clone(), f.subject.clone());
    let am: BTreeMap<_, &Finding> = a.findings.iter().map(|f| (key(f), f)).collect();
    let bm: BTreeMap<_, &Finding> = b.findings.iter().map(|f| (key(f), f)).collect();
    let mut out = FindingsDiff::default();
    for (k, f) in &bm {
        match am.get(k) {
            None => out.new.push(finding_ref(f)),
            Some(old) if old.severity != f.severity => out.changed.push(FindingChange {
                rule_id: f.rule_id.clone(),
                subject: f.subject.clone(),
                before: old.severity,
                after: f.severity,
                message: f.message.clone(),
            }),
            Some(_) => {}
        }
    }
    for (k, f) in &am {
        if bm.contains_key(k) {
            continue;
        }
        match b.not_evaluated.iter().find(|n| n.rule_id == f.rule_id) {
            Some(n) => out.not_evaluated_in_b.push(FindingUnknown {
                finding: finding_ref(f),
                reason: n.reason.clone(),
            }),
            None => out.resolved.push(finding_ref(f)),
        }
    }
    out
}

/// Compares two maps item by item; only differing items are kept.
fn compare(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<Change> {
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter_map(|k| {
            let (x, y) = (a.get(k), b.get(k));
            (x != y).then(|| Change {
                item: k.clone(),
                before: x.cloned(),
                after: y.cloned(),
            })
        })
        .collect()
}

fn list(v: impl IntoIterator<Item = String>) -> String {
    let mut v: Vec<String> = v.into_iter().collect();
    v.sort();
    v.dedup();
    if v.is_empty() {
        "(none)".to_string()
    } else {
        v.join(", ")
    }
}

fn kube_proxy(a: &Facts, b: &Facts) -> Vec<Change> {
    let m = |f: &Facts| {
        let mut m = BTreeMap::new();
        let mode = serde_json::to_value(f.node.proxy_mode)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        m.insert("mode".to_string(), mode);
        m.insert(
            "dataplanes".to_string(),
            list(f.node.proxy_dataplanes.iter().cloned()),
        );
        if let Some(c) = &f.node.proxy_mode_configured {
            m.insert("configured mode".to_string(), c.clone());
        }
        if let Some(b) = &f.iptables.live_backend {
            m.insert("iptables backend".to_string(), b.clone());
        }
        if let Some(c) = &f.node.cni {
            m.insert("cni".to_string(), c.clone());
        }
        m
    };
    compare(&m(a), &m(b))
}

fn services(a: &Facts, b: &Facts) -> Vec<Change> {
    let m = |f: &Facts| {
        let mut m = BTreeMap::new();
        for s in &f.services {
            m.insert(
                format!("{} type", s.key),
                format!("{} {}", s.type_, list(s.cluster_ips.iter().cloned())),
            );
            m.insert(
                format!("{} ready endpoints", s.key),
                list(s.endpoints.iter().filter(|e| e.ready).map(|e| e.ip.clone())),
            );
        }
        m
    };
    compare(&m(a), &m(b))
}

fn dataplane(a: &Facts, b: &Facts) -> Vec<Change> {
    let m = |f: &Facts| {
        let mut m = BTreeMap::new();
        for s in &f.services {
            for p in &s.ports {
                if p.iptables.present || p.iptables.reject {
                    let v = if p.iptables.reject {
                        "REJECT (has no endpoints)".to_string()
                    } else {
                        list(p.iptables.endpoints.iter().cloned())
                    };
                    m.insert(format!("{} iptables", p.key), v);
                } else if f.node.proxy_dataplanes.iter().any(|d| d == "iptables") {
                    m.insert(format!("{} iptables", p.key), "missing".to_string());
                }
                if p.nft.present || p.nft.no_endpoints {
                    let v = if p.nft.no_endpoints {
                        "no-endpoint-services (reject)".to_string()
                    } else {
                        list(p.nft.endpoints.iter().cloned())
                    };
                    m.insert(format!("{} nft", p.key), v);
                }
                if p.ipvs.present {
                    m.insert(
                        format!("{} ipvs", p.key),
                        format!(
                            "{} [{}]",
                            p.ipvs.scheduler.as_deref().unwrap_or("?"),
                            list(
                                p.ipvs
                                    .real_servers
                                    .iter()
                                    .map(|r| format!("{} w{}", r.address, r.weight))
                            )
                        ),
                    );
                }
            }
        }
        m
    };
    compare(&m(a), &m(b))
}

fn pods(a: &Facts, b: &Facts) -> Vec<Change> {
    let m = |f: &Facts| {
        f.pods
            .iter()
            .filter(|p| p.local && !p.host_network)
            .map(|p| {
                (
                    p.key.clone(),
                    format!(
                        "{} {}{}",
                        p.ip.as_deref().unwrap_or("-"),
                        p.phase,
                        if p.ready { " ready" } else { "" }
                    ),
                )
            })
            .collect::<BTreeMap<_, _>>()
    };
    compare(&m(a), &m(b))
}

fn netns(a: &Facts, b: &Facts) -> Vec<Change> {
    let m = |f: &Facts| {
        let mut m = BTreeMap::new();
        let pod_netns = f.netns.iter().filter(|n| !n.is_host).count();
        m.insert("netns count".to_string(), pod_netns.to_string());
        for n in f.netns.iter().filter(|n| !n.is_host) {
            if let Some(p) = &n.pod {
                m.insert(format!("netns of {p}"), list(n.addresses.iter().cloned()));
            }
        }
        let unknown: Vec<String> = f
            .netns
            .iter()
            .filter(|n| !n.is_host && n.pod.is_none())
            .flat_map(|n| n.addresses.iter().cloned())
            .collect();
        m.insert("netns without a pod (addresses)".to_string(), list(unknown));
        for l in f
            .links
            .iter()
            .filter(|l| l.kind == "veth" && is_host(f, &l.netns))
        {
            m.insert(
                format!("veth {}", l.name),
                match (&l.pod, l.orphan) {
                    (Some(p), _) => format!("to {p}"),
                    (None, true) => "orphan".to_string(),
                    (None, false) => "no pod".to_string(),
                },
            );
        }
        m
    };
    compare(&m(a), &m(b))
}

fn is_host(f: &Facts, netns: &str) -> bool {
    f.netns.iter().any(|n| n.is_host && n.id == netns) || netns == "host"
}

fn sysctls(a: &Facts, b: &Facts) -> Vec<Change> {
    // Per-interface keys of pod veths come and go with the pods (listed under "netns and
    // veths"); the other keys are compared.
    let veths: BTreeSet<&str> = a
        .links
        .iter()
        .chain(&b.links)
        .filter(|l| l.kind == "veth")
        .map(|l| l.name.as_str())
        .collect();
    let per_veth = |k: &str| {
        ["net.ipv4.conf.", "net.ipv6.conf."].iter().any(|p| {
            k.strip_prefix(p)
                .and_then(|r| r.split_once('.'))
                .is_some_and(|(iface, _)| veths.contains(iface))
        })
    };
    let m = |f: &Facts| {
        f.node
            .sysctls
            .iter()
            .filter(|(k, _)| !per_veth(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    compare(&m(a), &m(b))
}

/// MTUs of interfaces and pods present on both sides (the ones that appear or go away are
/// listed under "pods" and "netns and veths").
fn mtu(a: &Facts, b: &Facts) -> Vec<Change> {
    let mut c = mtu_all(a, b);
    c.retain(|c| c.before.is_some() && c.after.is_some());
    c
}

fn mtu_all(a: &Facts, b: &Facts) -> Vec<Change> {
    let m = |f: &Facts| {
        let mut m = BTreeMap::new();
        for l in f.links.iter().filter(|l| is_host(f, &l.netns)) {
            if let Some(mtu) = l.mtu {
                m.insert(format!("{} (host)", l.name), mtu.to_string());
            }
        }
        for p in f.pods.iter().filter(|p| p.local && !p.host_network) {
            if let Some(mtu) = p.mtu {
                m.insert(format!("pod {}", p.key), mtu.to_string());
            }
        }
        m
    };
    compare(&m(a), &m(b))
}

fn conntrack(a: &Facts, b: &Facts) -> Vec<Change> {
    let m = |f: &Facts| {
        let c = &f.conntrack;
        let mut m = BTreeMap::new();
        let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
        m.insert(
            "count/max".to_string(),
            format!(
                "{}/{}{}",
                opt(c.count),
                opt(c.max),
                c.usage_ratio
                    .map(|r| format!(" ({:.0}%)", r * 100.0))
                    .unwrap_or_default()
            ),
        );
        for k in ["insert_failed", "drop", "early_drop"] {
            if let Some(v) = c.stats.get(k) {
                m.insert(k.to_string(), v.to_string());
            }
        }
        m.insert("entries listed".to_string(), c.entries.to_string());
        m.insert("unreplied".to_string(), c.unreplied.to_string());
        m.insert(
            "stale UDP to gone endpoints".to_string(),
            c.stale_udp_count.to_string(),
        );
        m.insert(
            "top destinations".to_string(),
            c.top_destinations
                .iter()
                .take(5)
                .map(|d| format!("{} ({})", d.key, d.count))
                .collect::<Vec<_>>()
                .join(", "),
        );
        m
    };
    compare(&m(a), &m(b))
}

fn rule_counts(a: &Facts, b: &Facts) -> Vec<Change> {
    let m = |f: &Facts| {
        let mut m = BTreeMap::new();
        for be in &f.iptables.backends {
            let name = format!("iptables {} v{}", be.backend, be.family);
            m.insert(format!("{name} rules"), be.rule_count.to_string());
            for (t, n) in &be.rules_per_table {
                m.insert(format!("{name} {t}"), n.to_string());
            }
            m.insert(
                format!("{name} KUBE-SVC chains"),
                be.kube_svc_chain_count.to_string(),
            );
            if let Some(v) = &be.forward_pod_verdict {
                m.insert(format!("{name} FORWARD verdict for pod traffic"), v.clone());
            }
        }
        if f.nft.collected {
            m.insert("nft tables".to_string(), list(f.nft.tables.iter().cloned()));
            m.insert(
                "nft service-ips elements".to_string(),
                f.nft.service_ips_count.to_string(),
            );
        }
        if f.ipvs.collected {
            m.insert(
                "ipvs virtual servers".to_string(),
                f.ipvs.virtual_server_count.to_string(),
            );
            m.insert(
                "ipvs real servers".to_string(),
                f.ipvs.real_server_count.to_string(),
            );
        }
        m
    };
    compare(&m(a), &m(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(rule: &str, subject: &str, sev: Severity) -> Finding {
        Finding {
            node: "n".into(),
            rule_id: rule.into(),
            title: String::new(),
            severity: sev,
            category: String::new(),
            subject: subject.into(),
            message: format!("{rule} on {subject}"),
            evidence: Vec::new(),
            remediation: String::new(),
            references: Vec::new(),
            aggregate: None,
        }
    }

    #[test]
    fn findings_new_resolved_changed_and_unknown() {
        let f = Facts::default();
        let a = [
            finding("r1", "x", Severity::Warning),
            finding("r2", "y", Severity::Error),
            finding("r3", "z", Severity::Error),
            finding("r4", "w", Severity::Error),
        ];
        let b = [
            finding("r1", "x", Severity::Critical),
            finding("r5", "v", Severity::Info),
        ];
        let ne = [NotEvaluated {
            node: "n".into(),
            rule_id: "r3".into(),
            reason: "needs conntrack".into(),
        }];
        let ia = Input {
            path: "a",
            facts: &f,
            findings: &a,
            not_evaluated: &[],
        };
        let ib = Input {
            path: "b",
            facts: &f,
            findings: &b,
            not_evaluated: &ne,
        };
        let d = diff(ia, ib, Severity::Info);
        assert_eq!(d.findings.new.len(), 1);
        assert_eq!(d.findings.new[0].rule_id, "r5");
        let resolved: Vec<&str> = d
            .findings
            .resolved
            .iter()
            .map(|f| f.rule_id.as_str())
            .collect();
        assert_eq!(resolved, ["r2", "r4"]);
        assert_eq!(d.findings.changed.len(), 1);
        assert_eq!(d.findings.changed[0].after, Severity::Critical);
        assert_eq!(d.findings.not_evaluated_in_b[0].finding.rule_id, "r3");
        assert!(d.worse);
        assert!(d.sections.is_empty(), "same facts: no section");
        // A raised severity below the threshold and a new info finding are not "worse"
        // at --fail-on critical... but r1 became critical: worse.
        assert!(diff(ia, ib, Severity::Critical).worse);
        // B -> A: only improvements (r5 gone, r1 lowered) plus new r2/r4 errors.
        let back = diff(ib, ia, Severity::Error);
        assert!(back.worse);
        let only_better = diff(
            ia,
            Input {
                findings: &a[..1],
                ..ia
            },
            Severity::Info,
        );
        assert!(!only_better.worse);
        assert_eq!(only_better.findings.resolved.len(), 3);
    }

    #[test]
    fn sections_list_only_differences() {
        let mut a = Facts::default();
        a.node
            .sysctls
            .insert("net.ipv4.ip_forward".into(), "1".into());
        a.node
            .sysctls
            .insert("net.core.somaxconn".into(), "4096".into());
        let mut b = a.clone();
        b.node
            .sysctls
            .insert("net.ipv4.ip_forward".into(), "0".into());
        b.conntrack.count = Some(10);
        let i = |f| Input {
            path: "p",
            facts: f,
            findings: &[],
            not_evaluated: &[],
        };
        let d = diff(i(&a), i(&b), Severity::Info);
        let names: Vec<&str> = d.sections.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["sysctls", "conntrack"]);
        assert_eq!(
            d.sections[0].changes,
            [Change {
                item: "net.ipv4.ip_forward".into(),
                before: Some("1".into()),
                after: Some("0".into())
            }]
        );
        assert!(!d.worse);
    }
}

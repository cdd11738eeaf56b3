//! A node bundle for the `resolv-conf-mismatch` join at scale (issue 12: 2,000 pods x 20,000
//! Services took 61 s while the rule compared every pod's nameserver with every Service):
//! `pods` local pods, each in its own network namespace with its own `resolv.conf`, and
//! `services` ClusterIP Services, one of them `kube-system/kube-dns`.
//!
//! Nameservers, by pod index: `i % 10 == 1` uses another Service's ClusterIP (an *error*
//! finding naming that Service), `i % 10 == 2` an address no Service has (*critical*), pod 0
//! is the CoreDNS endpoint using the node resolver (excluded), every other pod the kube-dns
//! VIP (silent). [`expected`] lists the findings this must give.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use netsnap_bundle::{
    ArtifactSource, ArtifactSpec, BundleWriter, CollectionInfo, CollectionOutcome, Completion,
    NodeInfo, ToolInfo, WriteError, WriterOptions, layout,
};

/// The node every pod runs on.
pub const NODE: &str = "big-node";
/// The cluster DNS Service's ClusterIP.
pub const DNS_VIP: &str = "10.96.0.10";
/// A nameserver no Service has.
pub const STRAY_NAMESERVER: &str = "10.255.0.53";

/// ClusterIP of Service `i` (Service 0 is kube-dns).
pub fn service_ip(i: usize) -> String {
    if i == 0 {
        DNS_VIP.to_string()
    } else {
        format!("10.{}.{}.{}", 97 + i / 65_000, (i / 250) % 260, i % 250 + 1)
    }
}

/// Key (`namespace/name`) of Service `i`.
pub fn service_key(i: usize) -> String {
    if i == 0 {
        "kube-system/kube-dns".into()
    } else {
        format!("ns{}/svc{i}", i % 50)
    }
}

/// Key of pod `i`.
pub fn pod_key(i: usize) -> String {
    format!("ns{}/p{i}", i % 50)
}

fn pod_ip(i: usize) -> String {
    format!("10.244.{}.{}", i / 250, i % 250 + 1)
}

/// The first nameserver of pod `i`'s `resolv.conf`, in a world of `services` Services.
fn nameserver(i: usize, services: usize) -> String {
    match i % 10 {
        _ if i == 0 => "192.168.10.1".into(),
        1 => service_ip(1 + (i * 7919) % (services - 1)),
        2 => STRAY_NAMESERVER.into(),
        _ => DNS_VIP.into(),
    }
}

/// One expected finding of `resolv-conf-mismatch`: subject, whether it is critical (no
/// Service has the nameserver) and the Service named otherwise.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Expected {
    /// Pod key.
    pub pod: String,
    /// The Service whose ClusterIP the pod uses as nameserver; `None`: critical.
    pub service: Option<String>,
}

/// The findings the bundle of [`write`] must give, sorted by pod key.
pub fn expected(pods: usize, services: usize) -> Vec<Expected> {
    let mut out: Vec<Expected> = (1..pods)
        .filter(|i| matches!(i % 10, 1 | 2))
        .map(|i| Expected {
            pod: pod_key(i),
            service: (i % 10 == 1).then(|| service_key(1 + (i * 7919) % (services - 1))),
        })
        .collect();
    out.sort();
    out
}

fn done() -> Completion {
    Completion {
        exit_status: Some(0),
        duration: Duration::from_millis(1),
        ..Completion::default()
    }
}

/// Writes the bundle at `path`.
pub fn write(path: &Path, pods: usize, services: usize) -> Result<(), WriteError> {
    assert!(
        services >= 2 && pods >= 1,
        "at least kube-dns and one other Service"
    );
    let w = BundleWriter::create(
        path,
        WriterOptions {
            max_artifact_bytes: None,
            max_total_bytes: None,
            compression_level: 3,
            ..WriterOptions::default()
        },
    )?;
    let mut svc = Vec::new();
    for i in 0..services {
        let (ns, name) = service_key(i)
            .split_once('/')
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .unwrap_or_default();
        writeln!(svc, r#"{{"namespace":"{ns}","name":"{name}","uid":"s{i}","type":"ClusterIP","cluster_ips":["{}"],"ports":[{{"name":"dns","protocol":"UDP","port":53}}],"selector":{{"app":"a{i}"}},"created_at":"2026-01-01T00:00:00Z"}}"#, service_ip(i)).unwrap_or_default();
    }
    // kube-dns has one endpoint: pod 0 (CoreDNS).
    let eps = format!(
        r#"{{"namespace":"kube-system","name":"kube-dns-x","service_name":"kube-dns","address_type":"IPv4","endpoints":[{{"addresses":["{}"],"ready":true,"node_name":"{NODE}"}}],"ports":[{{"name":"dns","port":53,"protocol":"UDP"}}],"created_at":"2026-01-01T00:00:00Z"}}
"#,
        pod_ip(0)
    );
    let mut pod_lines = Vec::new();
    let mut correlation = Vec::new();
    for i in 0..pods {
        let key = pod_key(i);
        let (ns, name) = key.split_once('/').unwrap_or_default();
        writeln!(pod_lines, r#"{{"namespace":"{ns}","name":"{name}","uid":"u{i}","node_name":"{NODE}","phase":"Running","ready":true,"pod_ips":["{}"],"host_network":false,"created_at":"2026-01-01T00:00:00Z"}}"#, pod_ip(i)).unwrap_or_default();
        correlation.push(serde_json::json!({
            "pod": key, "uid": format!("u{i}"), "pod_ips": [pod_ip(i)],
            "netns": netns(i), "matched_by": ["ip"], "ifname": "eth0", "mtu": 1450,
        }));
    }
    for (p, data) in [
        (layout::k8s::SERVICES, svc),
        (layout::k8s::ENDPOINT_SLICES, eps.into_bytes()),
        (layout::k8s::PODS, pod_lines),
    ] {
        w.add_bytes(
            ArtifactSpec::native(p, ArtifactSource::KubernetesApi),
            &data,
            done(),
        )?;
    }
    w.add_json(
        ArtifactSpec::native(layout::correlation::PODS, ArtifactSource::Derived),
        &serde_json::json!({"node_name": NODE, "pods": correlation}),
        Duration::ZERO,
    )?;
    w.add_json(
        ArtifactSpec::native(
            layout::netns_path("host", layout::netns::NETLINK),
            ArtifactSource::Netlink,
        )
        .in_netns("host"),
        &serde_json::json!({"netns": "host", "links": [], "addrs": [], "routes": [],
            "neighbours": {"ipv4": 0, "ipv6": 0, "by_state": {}}}),
        Duration::ZERO,
    )?;
    for i in 0..pods {
        let text = format!(
            "search ns{}.svc.cluster.local svc.cluster.local cluster.local\nnameserver {}\noptions ndots:5\n",
            i % 50,
            nameserver(i, services)
        );
        w.add_bytes(
            ArtifactSpec::raw_file(
                layout::netns_path(&netns(i), layout::netns::RESOLV_CONF),
                layout::content::RESOLV_CONF,
            )
            .in_netns(netns(i)),
            text.as_bytes(),
            done(),
        )?;
    }
    // 2026-11-28T03:00:00Z: a fixed time, so the bundle is the same on every run.
    let t = chrono::DateTime::from_timestamp(1_795_834_800, 0).unwrap_or_default();
    w.finish(
        ToolInfo {
            name: "netsnap-bench".into(),
            version: "0".into(),
        },
        NodeInfo {
            name: Some(NODE.into()),
            hostname: NODE.into(),
            kernel_release: "6.1.0".into(),
            machine: None,
        },
        CollectionInfo {
            started_at: t,
            finished_at: t,
            outcome: CollectionOutcome::Complete,
            options: serde_json::json!({}),
            notes: vec![],
            resource_usage: None,
        },
    )?;
    Ok(())
}

fn netns(i: usize) -> String {
    format!("ns-{}", 4_026_600_000u64 + i as u64)
}

/// Builds the facts of `bundle` (the join under test) and evaluates `resolv-conf-mismatch`
/// of the built-in rules over them.
pub fn facts_and_rule(
    bundle: &netsnap_bundle::Bundle,
    rules: &netsnap_analyzer::rules::RuleSet,
) -> (
    netsnap_analyzer::facts::Facts,
    netsnap_analyzer::rules::Outcome,
) {
    use netsnap_analyzer::rules::{Outcome, engine::prepare_facts};
    let facts = netsnap_analyzer::facts::from_bundle(bundle);
    let Some(rule) = rules.get("resolv-conf-mismatch") else {
        return (facts, Outcome::NotEvaluated("no such rule".into()));
    };
    let outcome = match prepare_facts(&facts) {
        Ok(prepared) => rule.evaluate(rules.env(), &facts, &prepared, &Default::default()),
        Err(e) => Outcome::NotEvaluated(e),
    };
    (facts, outcome)
}

//! `resolv-conf-mismatch` at the size that used to take a minute (issue 12): 2,000 pods x
//! 20,000 Services. The time is measured by `cargo bench -p netsnap-bench --bench
//! resolv_conf`; this test proves the answer is right at that size: exactly the pods whose
//! nameserver is not the cluster DNS, critical when no Service has it, naming the Service
//! otherwise, and neither CoreDNS nor the pods using the VIP.

#![allow(clippy::unwrap_used)]

use netsnap_analyzer::rules::{Outcome, RuleSet, Severity};
use netsnap_bench::resolv_scale::{self, Expected};
use netsnap_bundle::{Bundle, ReaderOptions};

const PODS: usize = 2_000;
const SERVICES: usize = 20_000;

#[test]
fn resolv_conf_mismatch_is_right_at_2000_pods_and_20000_services() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resolv.tar.zst");
    resolv_scale::write(&path, PODS, SERVICES).unwrap();
    let bundle = Bundle::open(&path, &ReaderOptions::default()).unwrap();
    let rules = RuleSet::builtin().unwrap();
    let (facts, outcome) = resolv_scale::facts_and_rule(&bundle, &rules);
    assert_eq!(facts.services.len(), SERVICES);
    assert_eq!(
        facts.dns.service_ips,
        vec![resolv_scale::DNS_VIP.to_string()]
    );
    // The join: every pod has its namespace's resolv.conf, and the Service owning its
    // nameserver when one does.
    assert_eq!(facts.pods.len(), PODS);
    let with_conf = facts
        .pods
        .iter()
        .filter(|p| p.resolv_conf.is_some())
        .count();
    assert_eq!(with_conf, PODS);
    let via_dns = facts
        .pods
        .iter()
        .filter(|p| {
            p.resolv_conf
                .as_ref()
                .and_then(|r| r.nameserver_service.as_deref())
                == Some("kube-system/kube-dns")
        })
        .count();
    assert_eq!(via_dns, PODS - 1 - 2 * (PODS / 10), "pods using the VIP");

    let Outcome::Findings(found) = outcome else {
        panic!("not evaluated: {outcome:?}");
    };
    let mut got: Vec<Expected> = found
        .iter()
        .map(|f| {
            let service = f
                .message
                .split_once("(the ClusterIP of ")
                .map(|(_, s)| s.trim_end_matches(')').to_string());
            assert_eq!(f.severity == Severity::Critical, service.is_none(), "{f:?}");
            if service.is_none() {
                assert!(
                    f.message.contains(resolv_scale::STRAY_NAMESERVER),
                    "{}",
                    f.message
                );
            }
            Expected {
                pod: f.subject.clone(),
                service,
            }
        })
        .collect();
    got.sort();
    let want = resolv_scale::expected(PODS, SERVICES);
    // Pod 0 (CoreDNS, on the node resolver) is excluded, not critical.
    assert_eq!(want.len(), 2 * (PODS / 10));
    assert_eq!(got, want);
    assert!(!got.iter().any(|e| e.pod == resolv_scale::pod_key(0)));
}

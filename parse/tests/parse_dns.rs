//! `parse::dns` over the real captures in `fixtures/raw/dns/` (dig 9.18 against dnsmasq
//! in lab namespaces; see fixtures/raw/README.md).
#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::path::Path;

use netsnap_bundle::native::{ClusterDns, DnsProbe, DnsProbeReport};
use netsnap_parse::dns::{self, DigErrorKind, DigOutcome, NslookupErrorKind, NslookupOutcome};

fn fixture(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/raw/dns")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn dig_snapshots() {
    insta::glob!("../../fixtures/raw/dns", "dig-*.txt", |path| {
        let d = dns::parse_dig(&std::fs::read_to_string(path).unwrap());
        assert!(d.unparsed.is_empty(), "{:?}", d.unparsed);
        insta::assert_yaml_snapshot!(d, {".when" => "[when]"});
    });
}

#[test]
fn resolv_snapshots() {
    insta::glob!("../../fixtures/raw/dns", "resolv-*.conf", |path| {
        let r = dns::parse_resolv_conf(&std::fs::read_to_string(path).unwrap());
        assert!(r.unparsed.is_empty(), "{:?}", r.unparsed);
        insta::assert_yaml_snapshot!(r);
    });
}

#[test]
fn dig_semantics() {
    let ok = dns::parse_dig(&fixture("dig-noerror.txt"));
    assert_eq!(ok.outcome(), DigOutcome::Answer);
    assert_eq!(ok.status.as_deref(), Some("NOERROR"));
    assert_eq!(ok.answers_of("A"), vec!["10.96.0.1"]);
    assert_eq!(ok.answer[0].name, "kubernetes.default.svc.cluster.local.");
    assert_eq!(ok.counts, Some([1, 1, 0, 1]));
    assert!(ok.flags.contains(&"aa".to_string()));
    assert_eq!(ok.query_time_ms, Some(0));
    let server = ok.server.as_ref().unwrap();
    assert_eq!(server.address, Some("10.96.0.10".parse().unwrap()));
    assert_eq!(
        (server.port, server.transport.as_deref()),
        (Some(53), Some("UDP"))
    );

    let tcp = dns::parse_dig(&fixture("dig-tcp.txt"));
    assert_eq!(tcp.server.unwrap().transport.as_deref(), Some("TCP"));

    let nx = dns::parse_dig(&fixture("dig-nxdomain.txt"));
    assert_eq!(nx.outcome(), DigOutcome::Rcode("NXDOMAIN".into()));
    assert!(nx.answer.is_empty());
    assert_eq!(
        nx.question[0].name,
        "nosuchservice.default.svc.cluster.local."
    );

    let to = dns::parse_dig(&fixture("dig-timeout.txt"));
    assert_eq!(to.outcome(), DigOutcome::Timeout);
    assert_eq!(to.status, None);
    assert_eq!(to.errors[0].kind, DigErrorKind::Timeout);
    assert_eq!(to.errors[0].server.as_deref(), Some("192.168.50.99#53"));
    assert!(to.errors.iter().any(|e| e.kind == DigErrorKind::NoServers));

    for f in ["dig-refused.txt", "dig-tcp-refused.txt"] {
        let r = dns::parse_dig(&fixture(f));
        assert_eq!(r.outcome(), DigOutcome::Refused, "{f}");
        assert_eq!(
            r.errors[0].server.as_deref(),
            Some("192.168.50.1#53"),
            "{f}"
        );
    }
}

#[test]
fn resolv_semantics() {
    let r = dns::parse_resolv_conf(&fixture("resolv-pod.conf"));
    assert_eq!(r.ndots(), 5);
    assert_eq!(r.options.ndots_line, Some(3));
    assert_eq!(r.search.len(), 3);
    assert_eq!(r.search[0], "default.svc.cluster.local");
    assert_eq!(
        r.nameserver_addrs(),
        vec!["10.96.0.10".parse::<std::net::IpAddr>().unwrap()]
    );
    let host = dns::parse_resolv_conf(&fixture("resolv-host.conf"));
    assert_eq!(host.ndots(), 1);
    assert!(host.search.is_empty());
}

fn probe(outcome: &str, latency: Option<f64>) -> DnsProbe {
    DnsProbe {
        from_netns: "host".into(),
        from_pod: None,
        server: "10.96.0.10".parse().unwrap(),
        server_role: "service-vip".into(),
        transport: "udp".into(),
        qname: "kubernetes.default.svc.cluster.local.".into(),
        qtype: "A".into(),
        outcome: outcome.into(),
        rcode: None,
        answers: vec![],
        latency_ms: latency,
        truncated: false,
        attempt: 1,
        error: None,
    }
}

#[test]
fn probe_report_load_and_summary() {
    let report = DnsProbeReport {
        cluster_dns: ClusterDns {
            service_ips: vec!["10.96.0.10".parse().unwrap()],
            endpoint_ips: vec![],
            cluster_domain: Some("cluster.local".into()),
            source: "api".into(),
        },
        probes: vec![
            probe("answer", Some(2.5)),
            probe("timeout", None),
            probe("nxdomain", Some(7.0)),
        ],
    };
    let text = serde_json::to_string(&report).unwrap();
    let back = dns::load_probe_report(&text).unwrap();
    assert_eq!(back, report);
    let s = dns::summarize(&back);
    assert_eq!((s.total, s.responded), (3, 2));
    assert_eq!(s.max_latency_ms, Some(7.0));
    assert_eq!(s.by_role_outcome["service-vip/timeout"], 1);
    let err = dns::load_probe_report("{\"probes\": 3}").unwrap_err();
    assert!(
        err.to_string().starts_with("invalid DNS probe report"),
        "{err}"
    );
}

proptest::proptest! {
    /// No input makes a parser panic.
    #[test]
    fn never_panics(text in "((;; [A-Za-z>< -]{0,20}: [A-Za-z0-9#(). ,:]{0,30})|(;; [A-Z]+ SECTION:)|([a-z.]{0,12} [0-9]{0,4} IN A [0-9.]{0,15})|(options [a-z:0-9 ]{0,20})|\n){0,12}") {
        let d = dns::parse_dig(&text);
        let _ = d.outcome();
        let r = dns::parse_resolv_conf(&text);
        proptest::prop_assert!(r.ndots() <= 15);
    }

    #[test]
    fn nslookup_never_panics_and_keeps_line_numbers(text in "((Server:|Address( [0-9])?:|Name:|\\*\\* server can't find|;;|[a-z. =]{0,12})[ \t]{0,2}[A-Za-z0-9#.:' -]{0,24}\n){0,12}") {
        let n = dns::parse_nslookup(&text);
        let lines = text.lines().count();
        for u in &n.unparsed {
            proptest::prop_assert!(u.line >= 1 && u.line <= lines);
        }
        for a in &n.answers {
            proptest::prop_assert!(a.line >= 1 && a.line <= lines);
        }
        let _ = n.outcome();
    }
}

/// Issue 19: dig prints `; (1 server found)` when the server is given by name
/// (`dig @kube-dns.example …`, real capture); the line is understood, not rejected.
#[test]
fn dig_with_a_named_server() {
    let d = dns::parse_dig(&fixture("dig-named-server.txt"));
    assert!(d.unparsed.is_empty(), "{:?}", d.unparsed);
    assert_eq!(d.servers_found, Some(1));
    assert_eq!(d.outcome(), DigOutcome::Answer);
    assert_eq!(d.answers_of("A"), vec!["10.96.0.1"]);
    assert_eq!(
        d.server.as_ref().unwrap().name.as_deref(),
        Some("kube-dns.example")
    );
    let two = dns::parse_dig(
        "; <<>> DiG 9.16.1-Ubuntu <<>> @localhost x\n; (2 servers found)\n;; global options: +cmd\n",
    );
    assert_eq!(two.servers_found, Some(2));
    assert!(two.unparsed.is_empty());
    assert_eq!(dns::parse_dig("; (many servers found)\n").unparsed.len(), 1);
}

fn nslookup_fixture(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/raw/nslookup")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn nslookup_snapshots() {
    insta::glob!("../../fixtures/raw/nslookup", "*.txt", |path| {
        let r = dns::parse_nslookup(&std::fs::read_to_string(path).unwrap());
        assert!(r.unparsed.is_empty(), "{:?}", r.unparsed);
        insta::assert_yaml_snapshot!(r);
    });
}

/// Issue 19: nslookup (BIND 9.18 real captures against dnsmasq, and BusyBox's form from
/// the Kubernetes DNS-debugging page) gives the server, the answers and the errors; an
/// A answer followed by the AAAA query's NXDOMAIN is still an answer.
#[test]
fn nslookup_semantics() {
    let ok = dns::parse_nslookup(&nslookup_fixture("nslookup-noerror.txt"));
    assert_eq!(ok.server.as_deref(), Some("10.79.0.1"));
    assert_eq!(ok.server_address.as_deref(), Some("10.79.0.1#53"));
    assert_eq!(
        ok.addresses(),
        ["10.96.0.1".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(ok.answers[0].name, "kubernetes.default.svc.cluster.local");
    assert_eq!(ok.answers[0].line, 5);
    assert_eq!(ok.errors.len(), 1);
    assert_eq!(ok.outcome(), NslookupOutcome::Answer);
    let search = dns::parse_nslookup(&nslookup_fixture("nslookup-search.txt"));
    assert_eq!(search.outcome(), NslookupOutcome::Answer);
    let nx = dns::parse_nslookup(&nslookup_fixture("nslookup-nxdomain.txt"));
    assert_eq!(
        nx.outcome(),
        NslookupOutcome::Failed(NslookupErrorKind::NxDomain)
    );
    assert_eq!(
        nx.errors[0].name.as_deref(),
        Some("nosuchservice.default.svc.cluster.local")
    );
    let timeout = dns::parse_nslookup(&nslookup_fixture("nslookup-timeout.txt"));
    assert_eq!(
        timeout.outcome(),
        NslookupOutcome::Failed(NslookupErrorKind::Timeout)
    );
    assert_eq!(timeout.server, None);
    let bb = dns::parse_nslookup(&nslookup_fixture("busybox-noerror.txt"));
    assert_eq!(bb.server_address.as_deref(), Some("10.0.0.10"));
    assert_eq!(
        bb.addresses(),
        ["10.0.0.1".parse::<std::net::IpAddr>().unwrap()]
    );
    let bb = dns::parse_nslookup(&nslookup_fixture("busybox-cant-resolve.txt"));
    assert_eq!(
        bb.outcome(),
        NslookupOutcome::Failed(NslookupErrorKind::Other)
    );
    assert_eq!(bb.errors[0].name.as_deref(), Some("kubernetes.default"));
}

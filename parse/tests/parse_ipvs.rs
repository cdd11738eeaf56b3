//! IPVS parser tests over `fixtures/raw/ipvs/` (ipvsadm/kernel formats rendered by
//! `generate.py`, plus the two real outputs of the seed tutorial; see fixtures/raw/README.md).

// Helpers outside #[test] fns unwrap too; a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::path::Path;

use netsnap_parse::ipvs::{
    ForwardMethod, IpvsConnectionLine, IpvsListKind, IpvsProtocol, ServiceKey, for_each_connection,
    parse_connection_line, parse_ipvs_connections, parse_ipvs_list,
};
use proptest::prelude::*;

fn fixture(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/raw/ipvs")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn tcp(addr: &str, port: u16) -> ServiceKey {
    ServiceKey::Address {
        protocol: IpvsProtocol::Tcp,
        address: ip(addr),
        port,
    }
}

#[test]
fn snapshots() {
    insta::glob!("../../fixtures/raw/ipvs", "*.txt", |path| {
        let text = std::fs::read_to_string(path).unwrap();
        let name = path.file_name().unwrap().to_str().unwrap();
        if name.contains("Lnc") || name.contains("ip_vs_conn") {
            insta::assert_yaml_snapshot!(parse_ipvs_connections(&text));
        } else {
            insta::assert_yaml_snapshot!(parse_ipvs_list(&text));
        }
    });
}

/// Service and real-server lines counted from the text, independent of the parser.
fn text_counts(text: &str) -> (usize, usize) {
    let mut svcs = 0;
    let mut rs = 0;
    for l in text.lines() {
        let t = l.trim_start();
        if t.starts_with("-> ") && !t.starts_with("-> RemoteAddress") {
            rs += 1;
        } else if ["TCP ", "UDP ", "SCTP ", "FWM "]
            .iter()
            .any(|p| t.starts_with(p))
        {
            svcs += 1;
        }
    }
    (svcs, rs)
}

#[test]
fn every_list_form_parses_completely() {
    for (name, kind) in [
        ("ipvsadm-Ln.txt", IpvsListKind::List),
        ("ipvsadm-Ln-stats.txt", IpvsListKind::Stats),
        ("ipvsadm-Ln-rate.txt", IpvsListKind::Rate),
        (
            "ipvsadm-Ln-persistent-conn.txt",
            IpvsListKind::PersistentConn,
        ),
        ("ipvsadm-Ln-thresholds.txt", IpvsListKind::Thresholds),
        ("proc-ip_vs.txt", IpvsListKind::Proc),
        ("seed-ipvsadm-Ln.txt", IpvsListKind::List),
        ("seed-ipvsadm-Ln-t.txt", IpvsListKind::List),
    ] {
        let text = fixture(name);
        let t = parse_ipvs_list(&text);
        assert!(t.unparsed.is_empty(), "{name}: {:?}", t.unparsed);
        assert_eq!(t.kind, kind, "{name}");
        let (svcs, rs) = text_counts(&text);
        assert_eq!(t.services.len(), svcs, "{name}");
        assert_eq!(
            t.services
                .iter()
                .map(|s| s.real_servers.len())
                .sum::<usize>(),
            rs,
            "{name}"
        );
        let lines: Vec<&str> = text.lines().collect();
        for s in &t.services {
            assert!(!lines[s.line - 1].trim_start().starts_with("->"));
            for r in &s.real_servers {
                assert!(
                    lines[r.line - 1].trim_start().starts_with("->"),
                    "{name}:{}",
                    r.line
                );
                assert!(r.line > s.line);
            }
        }
    }
}

#[test]
fn seed_outputs() {
    let t = parse_ipvs_list(&fixture("seed-ipvsadm-Ln.txt"));
    assert_eq!(t.version.as_deref(), Some("1.2.1"));
    assert_eq!(t.conn_table_size, Some(4096));
    let dns = t.service(&tcp("100.64.0.10", 53)).unwrap();
    assert_eq!(dns.scheduler.as_deref(), Some("rr"));
    let eps: Vec<_> = dns
        .real_servers
        .iter()
        .map(|r| (r.address, r.port))
        .collect();
    assert_eq!(eps, [(ip("100.96.1.3"), 53), (ip("100.96.1.4"), 53)]);
    let udp = ServiceKey::Address {
        protocol: IpvsProtocol::Udp,
        address: ip("100.64.0.10"),
        port: 53,
    };
    assert_eq!(t.service(&udp).unwrap().real_servers.len(), 2);
    let one = parse_ipvs_list(&fixture("seed-ipvsadm-Ln-t.txt"));
    assert_eq!(one.version, None);
    assert_eq!(one.services.len(), 1);
    assert_eq!(
        one.services[0].real_servers,
        dns.real_servers
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.line -= 3; // -t lacks the version line and the 10.96... service above and its real server
                r
            })
            .collect::<Vec<_>>()
    );
}

#[test]
fn list_semantics() {
    let t = parse_ipvs_list(&fixture("ipvsadm-Ln.txt"));
    let web = t.service(&tcp("10.96.45.7", 80)).unwrap();
    assert_eq!(
        web.persistence.as_ref().unwrap().timeout_seconds,
        Some(10800)
    );
    let weights: Vec<_> = web
        .real_servers
        .iter()
        .map(|r| (r.weight, r.is_draining()))
        .collect();
    assert_eq!(weights, [(Some(1), false), (Some(0), true)]);
    assert_eq!(web.real_servers[0].active_conns, Some(2));
    assert_eq!(web.real_servers[1].inactive_conns, Some(4));
    let fwm = t
        .service(&ServiceKey::Fwmark {
            mark: 42,
            ipv6: false,
        })
        .unwrap();
    assert_eq!(fwm.scheduler.as_deref(), Some("wlc"));
    let fwd: Vec<_> = fwm
        .real_servers
        .iter()
        .map(|r| r.forward.clone().unwrap())
        .collect();
    assert_eq!(fwd, [ForwardMethod::Route, ForwardMethod::Tunnel]);
    let ops = ServiceKey::Address {
        protocol: IpvsProtocol::Udp,
        address: ip("10.96.0.20"),
        port: 514,
    };
    let ops = t.service(&ops).unwrap();
    assert!(ops.one_packet);
    assert_eq!(ops.real_servers[0].forward, Some(ForwardMethod::Local));
    let sctp = ServiceKey::Address {
        protocol: IpvsProtocol::Sctp,
        address: ip("10.96.77.1"),
        port: 3868,
    };
    assert!(t.service(&sctp).is_some());
    let v6 = t.service(&tcp("fd00:10:96::1", 443)).unwrap();
    assert_eq!(v6.real_servers[0].address, ip("fd00:10:244:2::3"));
    assert_eq!(v6.real_servers[0].port, 8443);
}

#[test]
fn proc_hex_decodes_to_the_same_services() {
    let list = parse_ipvs_list(&fixture("ipvsadm-Ln.txt"));
    let proc = parse_ipvs_list(&fixture("proc-ip_vs.txt"));
    assert_eq!(proc.services.len(), list.services.len());
    for s in &list.services {
        let p = proc
            .service(&s.key)
            .unwrap_or_else(|| panic!("{:?} missing in /proc form", s.key));
        assert_eq!(p.scheduler, s.scheduler);
        assert_eq!(p.one_packet, s.one_packet);
        assert_eq!(p.persistence.is_some(), s.persistence.is_some());
        if let (Some(pp), Some(sp)) = (&p.persistence, &s.persistence) {
            // /proc prints jiffies: a whole multiple of the seconds ipvsadm prints.
            let j = pp.timeout_jiffies.unwrap();
            let secs = u64::from(sp.timeout_seconds.unwrap());
            assert!(j % secs == 0 && [100, 250, 300, 1000].contains(&(j / secs)));
        }
        let mut a: Vec<_> = s
            .real_servers
            .iter()
            .map(|r| {
                (
                    r.address,
                    r.port,
                    r.forward.clone(),
                    r.weight,
                    r.active_conns,
                    r.inactive_conns,
                )
            })
            .collect();
        let mut b: Vec<_> = p
            .real_servers
            .iter()
            .map(|r| {
                (
                    r.address,
                    r.port,
                    r.forward.clone(),
                    r.weight,
                    r.active_conns,
                    r.inactive_conns,
                )
            })
            .collect();
        a.sort_by_key(|x| format!("{x:?}"));
        b.sort_by_key(|x| format!("{x:?}"));
        assert_eq!(a, b, "{:?}", s.key);
    }
}

#[test]
fn stats_and_rate_merge_into_the_list() {
    let mut t = parse_ipvs_list(&fixture("ipvsadm-Ln.txt"));
    let stats = parse_ipvs_list(&fixture("ipvsadm-Ln-stats.txt"));
    let rate = parse_ipvs_list(&fixture("ipvsadm-Ln-rate.txt"));
    t.merge(&stats);
    t.merge(&rate);
    let api = t.service(&tcp("10.96.0.1", 443)).unwrap();
    let st = api.stats.unwrap();
    assert_eq!(
        (st.conns, st.in_packets, st.out_bytes, st.approximate),
        (41, 2230, 9_813_372, false)
    );
    assert_eq!(api.real_servers[0].stats.unwrap().conns, 41);
    assert_eq!(api.rate.unwrap().in_packets, 3);
    // K/M/G/T abbreviations: 1500000000 conns print as 1500M, 150e12 bytes as 150T.
    let web = t.service(&tcp("10.96.45.7", 80)).unwrap().stats.unwrap();
    assert!(web.approximate);
    assert_eq!(web.conns, 1_500_000_000);
    assert_eq!(web.in_packets, 99_999_999);
    assert_eq!(web.out_packets, 100_000_000);
    assert_eq!(web.in_bytes, 150_000_000_000_000);
    // Real-server forward/weight survive the merge (stats lines have none).
    assert_eq!(
        t.service(&tcp("10.96.45.7", 80)).unwrap().real_servers[1].weight,
        Some(0)
    );
}

#[test]
fn connections_both_forms_agree() {
    let a = parse_ipvs_connections(&fixture("ipvsadm-Lnc.txt"));
    let b = parse_ipvs_connections(&fixture("proc-ip_vs_conn.txt"));
    assert!(a.unparsed.is_empty(), "{:?}", a.unparsed);
    assert!(b.unparsed.is_empty(), "{:?}", b.unparsed);
    let strip = |c: &netsnap_parse::ipvs::IpvsConnection| {
        let mut c = c.clone();
        c.line = 0;
        c
    };
    assert_eq!(
        a.connections.iter().map(strip).collect::<Vec<_>>(),
        b.connections.iter().map(strip).collect::<Vec<_>>()
    );
    let first = &a.connections[0];
    assert_eq!(
        (first.line, first.expires_seconds, first.state.as_str()),
        (3, 14 * 60 + 58, "ESTABLISHED")
    );
    assert_eq!(
        (first.virtual_address, first.virtual_port),
        (ip("10.96.0.10"), 53)
    );
    assert_eq!(
        (first.destination, first.destination_port),
        (ip("10.244.2.4"), 53)
    );
    let templates: Vec<_> = a.connections.iter().filter(|c| c.is_template()).collect();
    assert_eq!(templates.len(), 1);
    assert_eq!(templates[0].expires_seconds, 10793);
    assert!(
        a.connections
            .iter()
            .any(|c| c.client == ip("fd00:10:244:1::5"))
    );
    let mut n = 0;
    let lines = for_each_connection(fixture("ipvsadm-Lnc.txt").as_bytes(), |r| {
        r.unwrap();
        n += 1;
    })
    .unwrap();
    assert_eq!((n, lines), (a.connections.len(), a.connections.len() + 2));
}

#[test]
fn bad_lines_are_unparsed_with_line_numbers() {
    let t = parse_ipvs_list(
        "Prot LocalAddress:Port Scheduler Flags\n  -> 10.0.0.1:80 Masq 1 0 0\nTCP  10.0.0.9:80 rr\n  -> 10.0.0.1:80 Masq x 0 0\nBOGUS line\n",
    );
    assert_eq!(
        t.unparsed.iter().map(|u| u.line).collect::<Vec<_>>(),
        [2, 4, 5]
    );
    assert!(
        matches!(parse_connection_line(7, "TCP zz:zz ESTABLISHED a b c"), IpvsConnectionLine::Unparsed(u) if u.line == 7)
    );
}

proptest! {
    #[test]
    fn never_panics_and_accounts_for_every_line(s in "((TCP|UDP|FWM|IP|  ->|\\[|\\]|:|0A600001|fd00::1|10\\.0\\.0\\.1|[0-9]{1,4}|[A-F]{1,4}|K|M| |Masq|rr|persistent|mask|pe|ops)*\n?){0,6}") {
        let t = parse_ipvs_list(&s);
        let _ = t.services.len();
        let c = parse_ipvs_connections(&s);
        let headers = s.lines().filter(|l| matches!(parse_connection_line(1, l), IpvsConnectionLine::Header)).count();
        let non_blank = s.lines().filter(|l| !l.trim().is_empty()).count();
        prop_assert_eq!(c.connections.len() + c.unparsed.len() + headers, non_blank);
        let rs: usize = t.services.iter().map(|s| s.real_servers.len()).sum();
        prop_assert!(t.services.len() + rs + t.unparsed.len() <= non_blank);
    }

    #[test]
    fn arbitrary_text_never_panics(s in any::<String>()) {
        let _ = parse_ipvs_list(&s);
        let _ = parse_ipvs_connections(&s);
    }
}

/// Issue 19: `ipvsadm -Ln --persistent-conn` (and `--thresholds`), written from
/// ipvsadm 1.31's print formats by `generate.py` from the same model as `-Ln`: the
/// services and real servers are the `-Ln` ones, and the PersistConn column counts the
/// `IP` persistence templates of `-Lnc` pointing at each real server.
#[test]
fn persistent_conn_and_thresholds_forms() {
    let list = parse_ipvs_list(&fixture("ipvsadm-Ln.txt"));
    let pc = parse_ipvs_list(&fixture("ipvsadm-Ln-persistent-conn.txt"));
    let th = parse_ipvs_list(&fixture("ipvsadm-Ln-thresholds.txt"));
    let conns = parse_ipvs_connections(&fixture("ipvsadm-Lnc.txt"));
    for t in [&pc, &th] {
        assert_eq!(t.services.len(), list.services.len());
        for (a, b) in t.services.iter().zip(&list.services) {
            assert_eq!(a.key, b.key);
            assert_eq!(a.scheduler, b.scheduler);
            assert_eq!(a.persistence, b.persistence);
            for (x, y) in a.real_servers.iter().zip(&b.real_servers) {
                assert_eq!((x.address, x.port), (y.address, y.port));
                assert_eq!(x.active_conns, y.active_conns);
                assert_eq!(x.inactive_conns, y.inactive_conns);
            }
        }
    }
    let templates = conns.connections.iter().filter(|c| c.is_template()).count() as u64;
    let counted: u64 = pc
        .services
        .iter()
        .flat_map(|s| &s.real_servers)
        .map(|r| r.persistent_conns.unwrap())
        .sum();
    assert!(templates > 0);
    assert_eq!(counted, templates);
    let sticky = pc.service(&tcp("10.96.45.7", 80)).unwrap();
    assert_eq!(sticky.real_servers[0].persistent_conns, Some(1));
    assert_eq!(sticky.real_servers[1].weight, Some(0));
    assert!(
        th.services
            .iter()
            .flat_map(|s| &s.real_servers)
            .all(|r| r.thresholds == Some((0, 0)))
    );
    // Merged into the -Ln table, the extra columns land on the same real servers.
    let mut merged = list.clone();
    merged.merge(&pc);
    let sticky = merged.service(&tcp("10.96.45.7", 80)).unwrap();
    assert_eq!(sticky.real_servers[0].persistent_conns, Some(1));
    assert_eq!(
        sticky.real_servers[0].forward,
        list.service(&tcp("10.96.45.7", 80)).unwrap().real_servers[0].forward
    );
}

//! iptables-save parser and kube-proxy iptables model over the captured fixtures
//! in `fixtures/raw/iptables/` (see fixtures/raw/README.md for how each was made).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use netsnap_parse::iptables::kube_proxy::FrontendKind;
use netsnap_parse::iptables::{
    Backend, IptablesDump, KubeProxyIptables, ServicePortRules, kube_proxy_model,
    parse_iptables_save,
};
use proptest::prelude::*;
use serde::Serialize;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/raw/iptables")
}

fn load(name: &str) -> (String, IptablesDump, KubeProxyIptables) {
    let text = std::fs::read_to_string(fixture_dir().join(name)).unwrap();
    let dump = parse_iptables_save(&text);
    let model = kube_proxy_model(&dump);
    (text, dump, model)
}

fn line_of(text: &str, line: usize) -> &str {
    text.lines().nth(line - 1).unwrap()
}

fn svc<'a>(
    m: &'a KubeProxyIptables,
    ns: &str,
    name: &str,
    port: &str,
    proto: &str,
) -> &'a ServicePortRules {
    m.services
        .iter()
        .find(|s| s.namespace == ns && s.name == name && s.port_name == port && s.protocol == proto)
        .unwrap_or_else(|| panic!("service {ns}/{name}:{port}/{proto} missing"))
}

fn ep_ips(s: &[netsnap_parse::iptables::kube_proxy::ServiceEndpoint]) -> Vec<String> {
    s.iter()
        .map(|e| format!("{}:{}", e.ip.as_deref().unwrap(), e.port.unwrap()))
        .collect()
}

#[derive(Serialize)]
struct TableSummary {
    name: String,
    line: usize,
    commit_line: Option<usize>,
    chains: usize,
    rules: usize,
    counted_packets: u64,
}

#[derive(Serialize)]
struct Summary {
    generator: Option<netsnap_parse::iptables::Generator>,
    lines: netsnap_parse::iptables::LineCounts,
    unparsed: usize,
    tables: Vec<TableSummary>,
    kube_proxy: KubeProxyIptables,
}

#[test]
fn snapshots() {
    insta::glob!("../../fixtures/raw/iptables", "*.txt", |path| {
        let text = std::fs::read_to_string(path).unwrap();
        let dump = parse_iptables_save(&text);
        let summary = Summary {
            generator: dump.generator.clone(),
            lines: dump.lines,
            unparsed: dump.unparsed.len(),
            tables: dump
                .tables
                .iter()
                .map(|t| TableSummary {
                    name: t.name.clone(),
                    line: t.line,
                    commit_line: t.commit_line,
                    chains: t.chains.len(),
                    rules: t.rules.len(),
                    counted_packets: t
                        .rules
                        .iter()
                        .filter_map(|r| r.counters)
                        .map(|c| c.packets)
                        .sum(),
                })
                .collect(),
            kube_proxy: kube_proxy_model(&dump),
        };
        insta::assert_yaml_snapshot!("iptables_summary", summary);
    });
}

#[test]
fn every_real_fixture_parses_completely_and_lines_point_at_evidence() {
    let mut seen = 0;
    for entry in std::fs::read_dir(fixture_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("txt") {
            continue;
        }
        seen += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        let dump = parse_iptables_save(&text);
        assert!(
            dump.unparsed.is_empty(),
            "{}: {:?}",
            path.display(),
            dump.unparsed
        );
        let l = dump.lines;
        assert_eq!(l.parsed + l.comments + l.blank + l.unparsed, l.total);
        assert_eq!(l.total, text.lines().count());
        assert!(dump.generator.is_some(), "{}", path.display());
        for t in &dump.tables {
            assert_eq!(line_of(&text, t.line), format!("*{}", t.name));
            assert_eq!(t.commit_line.map(|n| line_of(&text, n)), Some("COMMIT"));
            for c in &t.chains {
                assert!(line_of(&text, c.line).starts_with(&format!(":{} ", c.name)));
            }
            for r in &t.rules {
                let src = line_of(&text, r.line);
                assert!(src.contains(&format!("-A {} ", r.chain)), "{src}");
                if let Some(c) = &r.comment {
                    // The comment appears in the source line, quoted and escaped or bare.
                    let escaped = c.replace('\\', "\\\\").replace('"', "\\\"");
                    assert!(src.contains(&escaped), "{src} / {c}");
                }
            }
        }
        let m = kube_proxy_model(&dump);
        assert!(!m.services.is_empty(), "{}", path.display());
        for s in &m.services {
            if let (Some(line), Some(vip)) = (s.line, &s.vip) {
                assert!(
                    line_of(&text, line).contains(vip.as_str()),
                    "{}",
                    s.svc_port_name()
                );
            }
            for e in s.endpoints.iter().chain(&s.local_endpoints) {
                assert!(line_of(&text, e.line).contains(&format!("-j {}", e.chain)));
                let dnat = line_of(&text, e.dnat_line.unwrap());
                assert!(
                    dnat.starts_with(&format!("-A {} ", e.chain))
                        || dnat.contains(&format!("-A {} ", e.chain))
                );
                let garbled = dump
                    .tables
                    .iter()
                    .flat_map(|t| &t.rules)
                    .any(|r| Some(r.line) == e.dnat_line && r.garbled_target.is_some());
                // A garbled DNAT (version skew) names no address; the endpoint's comes
                // from the selecting rule's comment.
                assert!(garbled || dnat.contains(e.ip.as_deref().unwrap()), "{dnat}");
            }
            for n in &s.no_endpoints {
                assert!(line_of(&text, n.line).contains("endpoints"));
            }
            let total: f64 = s.endpoints.iter().map(|e| e.share).sum();
            if !s.endpoints.is_empty() {
                assert!(
                    (total - 1.0).abs() < 1e-6,
                    "{} shares sum to {total}",
                    s.svc_port_name()
                );
            }
        }
    }
    assert!(seen >= 5, "expected the captured fixtures, found {seen}");
}

#[test]
fn kube_proxy_v1_29_model() {
    for (file, backend) in [
        ("kube-proxy-v1.29-legacy.txt", Backend::Legacy),
        ("kube-proxy-v1.29-nft.txt", Backend::NfTables),
        ("kube-proxy-v1.29-legacy-counters.txt", Backend::Legacy),
    ] {
        let (_, dump, m) = load(file);
        assert_eq!(dump.backend(), backend, "{file}");
        assert!(!dump.is_ipv6());
        assert!(m.svl_ext_layout && !m.xlb_layout);
        assert_eq!(m.services.len(), 9, "{file}");

        let web = svc(&m, "lab", "web", "http", "tcp");
        assert_eq!(web.key(), Some(("10.96.100.10", 80, "tcp")));
        assert_eq!(
            ep_ips(&web.endpoints),
            ["10.244.1.5:8080", "10.244.1.6:8080", "10.244.2.7:8080"]
        );
        // iptables-save prints the kernel's fixed-point probability, not kube-proxy's input.
        let p: Vec<Option<f64>> = web.endpoints.iter().map(|e| e.probability).collect();
        assert_eq!(p, [Some(0.33333333349), Some(0.5), None]);
        for e in &web.endpoints {
            assert!((e.share - 1.0 / 3.0).abs() < 1e-6);
        }
        assert_eq!(web.node_port.as_ref().map(|n| n.port), Some(30080));
        assert!(web.ext_chain.as_deref().unwrap().starts_with("KUBE-EXT-"));
        assert!(!web.no_endpoints_reject);

        let empty = svc(&m, "lab", "empty", "http", "tcp");
        assert!(empty.endpoints.is_empty() && empty.svc_chain.is_none());
        assert!(empty.no_endpoints_reject);
        assert_eq!(empty.key(), Some(("10.96.100.40", 80, "tcp")));
        let ports: BTreeSet<_> = empty.no_endpoints.iter().filter_map(|n| n.port).collect();
        assert_eq!(ports, BTreeSet::from([80, 30082]));
        assert!(empty.no_endpoints.iter().all(|n| n.verdict == "REJECT"));

        let lb = svc(&m, "lab", "lb-local", "http", "tcp");
        assert!(lb.local_chain.as_deref().unwrap().starts_with("KUBE-SVL-"));
        assert!(lb.fw_chain.as_deref().unwrap().starts_with("KUBE-FW-"));
        assert!(lb.local_endpoints.is_empty());
        assert_eq!(ep_ips(&lb.endpoints), ["10.244.2.9:8080"]);
        assert!(!lb.no_endpoints_reject);
        assert!(
            lb.no_endpoints
                .iter()
                .all(|n| n.local_only && n.verdict == "DROP")
        );
        assert_eq!(lb.external.len(), 1);
        assert_eq!(lb.external[0].kind, FrontendKind::LoadBalancerIp);
        assert_eq!(lb.external[0].ip, "172.18.255.10");

        let sticky = svc(&m, "lab", "sticky", "http", "tcp");
        assert!(sticky.session_affinity);
        assert_eq!(
            sticky.endpoints.len(),
            2,
            "affinity rules are not endpoints"
        );

        let local = svc(&m, "lab", "node-local", "", "tcp");
        assert!(local.svc_chain.is_none());
        assert_eq!(ep_ips(&local.local_endpoints), ["10.244.1.10:8080"]);
        assert_eq!(local.key(), Some(("10.96.100.60", 8080, "tcp")));

        let dns = svc(&m, "kube-system", "kube-dns", "dns", "udp");
        assert_eq!(dns.key(), Some(("10.96.0.10", 53, "udp")));
        assert_eq!(ep_ips(&dns.endpoints), ["10.244.0.2:53", "10.244.0.3:53"]);
    }
}

#[test]
fn counters_are_consistent_between_service_match_and_endpoints() {
    for file in [
        "kube-proxy-v1.29-legacy-counters.txt",
        "kube-proxy-v1.29-nft-counters.txt",
    ] {
        let (_, dump, m) = load(file);
        let nat = dump.table("nat").unwrap();
        let dns = svc(&m, "kube-system", "kube-dns", "dns", "udp");
        let front = nat
            .rules
            .iter()
            .find(|r| r.line == dns.line.unwrap())
            .and_then(|r| r.counters)
            .unwrap();
        let dnat: u64 = dns
            .endpoints
            .iter()
            .map(|e| {
                nat.rules
                    .iter()
                    .find(|r| r.line == e.dnat_line.unwrap())
                    .and_then(|r| r.counters)
                    .unwrap()
                    .packets
            })
            .sum();
        assert!(front.packets > 0, "{file}: traffic was sent during capture");
        assert_eq!(front.packets, dnat, "{file}");
    }
}

#[test]
fn kube_proxy_v1_20_model() {
    let (text, dump, m) = load("kube-proxy-v1.20-legacy.txt");
    assert_eq!(dump.backend(), Backend::Legacy);
    assert!(m.xlb_layout && !m.svl_ext_layout);

    let web = svc(&m, "legacy", "web", "http", "tcp");
    assert_eq!(
        ep_ips(&web.endpoints),
        ["10.244.1.5:8080", "10.244.1.6:8080", "10.244.2.7:8080"]
    );
    assert_eq!(web.endpoints[0].probability, Some(0.33333333349));
    // The three KUBE-SERVICES rules for the external IP are one frontend.
    assert_eq!(web.external.len(), 1);
    assert_eq!(web.external[0].kind, FrontendKind::ExternalIp);
    assert_eq!(web.node_port.as_ref().map(|n| n.port), Some(30180));

    let lb = svc(&m, "legacy", "lb-local", "http", "tcp");
    assert!(lb.local_chain.as_deref().unwrap().starts_with("KUBE-XLB-"));
    assert_eq!(ep_ips(&lb.local_endpoints), ["10.244.1.9:8080"]);
    assert_eq!(
        lb.node_port
            .as_ref()
            .map(|n| n.chain.starts_with("KUBE-XLB-")),
        Some(true)
    );

    let away = svc(&m, "legacy", "away", "http", "tcp");
    assert!(away.local_endpoints.is_empty());
    assert!(!away.no_endpoints_reject);
    assert_eq!(away.no_endpoints.len(), 1);
    assert_eq!(away.no_endpoints[0].verdict, "KUBE-MARK-DROP");

    for (name, proto, port) in [("empty", "tcp", 80), ("syslog", "udp", 514)] {
        let s = m.services.iter().find(|s| s.name == name).unwrap();
        assert_eq!(s.protocol, proto);
        assert_eq!(s.port, Some(port));
        assert!(s.no_endpoints_reject && s.endpoints.is_empty());
    }
    let sticky = svc(&m, "legacy", "sticky", "http", "tcp");
    assert!(sticky.session_affinity);
    assert_eq!(sticky.endpoints.len(), 2);

    // Escaped quotes and backslashes in a comment.
    let filter = dump.table("filter").unwrap();
    let ssh = filter
        .rules
        .iter()
        .find(|r| r.dport.as_deref() == Some("22"))
        .unwrap();
    assert_eq!(ssh.comment.as_deref(), Some(r#"ops: "keep" ssh \ open"#));
    assert!(line_of(&text, ssh.line).contains(r#""ops: \"keep\" ssh \\ open""#));
    let reject = filter
        .rules
        .iter()
        .find(|r| r.target_name() == "REJECT")
        .unwrap();
    assert_eq!(
        reject.target.as_ref().unwrap().args,
        ["--reject-with", "icmp-port-unreachable"]
    );
}

#[test]
fn ipv6_dump() {
    let (_, dump, m) = load("kube-proxy-v1.29-ip6tables-nft.txt");
    assert!(dump.is_ipv6());
    let dns = svc(&m, "kube-system", "kube-dns", "dns", "udp");
    assert_eq!(dns.key(), Some(("fd00:10:96::a", 53, "udp")));
    assert_eq!(
        ep_ips(&dns.endpoints),
        ["fd00:10:244::2:53", "fd00:10:244::3:53"]
    );
    let sep = dump
        .table("nat")
        .unwrap()
        .rules
        .iter()
        .find(|r| r.line == dns.endpoints[0].dnat_line.unwrap())
        .unwrap();
    assert_eq!(sep.to_destination.as_deref(), Some("[fd00:10:244::2]:53"));
}

#[test]
fn unknown_lines_are_kept_not_dropped() {
    let text = "*nat\n:A - [0:0]\n-A A -j RETURN\nbogus line\n-X A\n-A A -m comment --comment \"unterminated\nCOMMIT\n# Warning: iptables-legacy tables present, use iptables-legacy-save to see them\n";
    let d = parse_iptables_save(text);
    assert_eq!(d.warnings.len(), 1);
    assert_eq!(d.warnings[0].line, 8);
    // `-X A` is restore input: it deletes chain A and its rule (issue 19).
    assert_eq!(d.unparsed.len(), 2);
    assert_eq!(
        d.unparsed.iter().map(|u| u.line).collect::<Vec<_>>(),
        [4, 6]
    );
    assert_eq!(d.rule_count(), 0);
    assert!(d.tables[0].chain("A").is_none());
    assert_eq!(d.lines.parsed, 5);
}

proptest! {
    #[test]
    fn never_panics_and_accounts_every_line(lines in prop::collection::vec(
        prop_oneof![
            Just("*nat".to_string()),
            Just("*filter".to_string()),
            Just("COMMIT".to_string()),
            Just(":KUBE-SERVICES - [0:0]".to_string()),
            Just("-A KUBE-SERVICES -d 10.0.0.1/32 -p tcp -m comment --comment \"a/b:c cluster IP\" -m tcp --dport 80 -j KUBE-SVC-X".to_string()),
            Just("-A KUBE-SVC-X -m statistic --mode random --probability 0.5 -j KUBE-SEP-Y".to_string()),
            Just("-A KUBE-SEP-Y -p tcp -j DNAT --to-destination 10.1.1.1:80".to_string()),
            Just("[1:2] -A X -j".to_string()),
            "[ -~\\t\"'\\\\\\[\\]:]{0,40}",
            any::<String>(),
        ],
        0..40,
    )) {
        let text = lines.join("\n");
        let d = parse_iptables_save(&text);
        let l = d.lines;
        prop_assert_eq!(l.parsed + l.comments + l.blank + l.unparsed, l.total);
        prop_assert_eq!(l.total, text.lines().count());
        prop_assert_eq!(l.unparsed, d.unparsed.len());
        let _ = kube_proxy_model(&d);
    }
}

proptest! {
    /// Cut-off and partial real dumps (a collector killed mid-write, lines lost) still
    /// parse, keep their accounting, and give a model without panicking.
    #[test]
    fn truncated_real_dumps(which in 0usize..2, cut in 0usize..20_000, drop_every in 2usize..40) {
        let name = ["kube-proxy-v1.29-legacy.txt", "kube-proxy-v1.20-legacy.txt"][which];
        let text = std::fs::read_to_string(fixture_dir().join(name)).unwrap();
        let mut cut = cut.min(text.len());
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let partial: Vec<&str> = text[..cut]
            .lines()
            .enumerate()
            .filter(|(i, _)| i % drop_every != 0)
            .map(|(_, l)| l)
            .collect();
        let partial = partial.join("\n");
        let d = parse_iptables_save(&partial);
        let l = d.lines;
        prop_assert_eq!(l.parsed + l.comments + l.blank + l.unparsed, l.total);
        let m = kube_proxy_model(&d);
        for s in &m.services {
            let total: f64 = s.endpoints.iter().map(|e| e.share).sum();
            prop_assert!(total <= 1.0 + 1e-6);
        }
    }
}

/// Issue 19: a DNAT printed by an iptables of another version than the writer's
/// (`--to-destination :0 --persistent ...`, `--to-destination --random`,
/// `[unsupported revision]`) never yields an option as the destination; every such
/// rule is marked garbled, and the intact ones still parse.
#[test]
fn garbled_dnat_targets_are_marked_not_taken() {
    let (text, dump, model) = load("garbled-dnat-version-skew.txt");
    let garbled: Vec<_> = dump
        .tables
        .iter()
        .flat_map(|t| &t.rules)
        .filter(|r| r.garbled_target.is_some())
        .collect();
    assert_eq!(garbled.len(), 4, "{garbled:#?}");
    for r in &garbled {
        assert_eq!(r.to_destination, None);
        assert!(line_of(&text, r.line).contains("-j DNAT"));
    }
    // No destination anywhere starts with an option or names port 0.
    for r in dump.tables.iter().flat_map(|t| &t.rules) {
        if let Some(d) = &r.to_destination {
            assert!(!d.starts_with('-') && !d.ends_with(":0"), "{d}");
        }
    }
    let reasons: BTreeSet<&str> = garbled
        .iter()
        .map(|r| r.garbled_target.as_deref().unwrap())
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("--random")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("unsupported revision")));
    assert!(reasons.iter().any(|r| r.contains(":0")));
    // The model still lists web's three endpoints (intact DNATs).
    let web = svc(&model, "lab", "web", "http", "tcp");
    assert_eq!(web.endpoints.len(), 3);
    assert!(web.endpoints.iter().all(|e| e.ip.is_some()));
}

/// kube-proxy's restore input deletes stale endpoint chains with `:CHAIN` + `-X CHAIN`
/// and may zero counters with `-Z`: replaying the real rule set plus that input
/// through the parser gives the same nat table iptables-legacy-save printed after
/// `iptables-legacy-restore --noflush` applied it (`fixtures/raw/capture-variants.sh`).
#[test]
fn restore_commands_replay_like_iptables_restore() {
    let setup = fixture_dir().join("setup");
    let base = std::fs::read_to_string(setup.join("kp-v1.29.rules")).unwrap();
    let delta = std::fs::read_to_string(setup.join("kp-restore-delete-chains.rules")).unwrap();
    let delta_dump = parse_iptables_save(&delta);
    assert!(delta_dump.unparsed.is_empty(), "{:?}", delta_dump.unparsed);
    assert_eq!(delta_dump.lines.parsed, delta.lines().count());
    // --noflush: a declared chain is flushed, the rest of the table is kept.
    let mut replay = parse_iptables_save(&base);
    let nat = replay.tables.iter_mut().find(|t| t.name == "nat").unwrap();
    let d = &delta_dump.tables[0];
    for c in &d.chains {
        nat.rules.retain(|r| r.chain != c.name);
    }
    nat.rules.extend(d.rules.iter().cloned());
    for line in delta.lines().filter(|l| l.starts_with("-X ")) {
        let gone = line[3..].trim();
        nat.chains.retain(|c| c.name != gone);
        nat.rules.retain(|r| r.chain != gone);
    }
    let after = parse_iptables_save(
        &std::fs::read_to_string(fixture_dir().join("kube-proxy-after-delete-chains-legacy.txt"))
            .unwrap(),
    );
    let want = after.table("nat").unwrap();
    let chains = |t: &netsnap_parse::iptables::Table| -> BTreeSet<String> {
        t.chains.iter().map(|c| c.name.clone()).collect()
    };
    assert!(!chains(want).contains("KUBE-SEP-6E7XQMQ4RAYOWTTM"));
    // The delta's own model already dropped the deleted chain.
    assert!(
        delta_dump.tables[0]
            .chain("KUBE-SEP-6E7XQMQ4RAYOWTTM")
            .is_none()
    );
    let rules = |t: &netsnap_parse::iptables::Table| -> BTreeSet<(String, Vec<String>)> {
        t.rules
            .iter()
            .map(|r| (r.chain.clone(), r.tokens.to_vec_from(0)))
            .collect()
    };
    let nat = replay.table("nat").unwrap();
    assert_eq!(chains(nat), chains(want));
    assert_eq!(rules(nat).len(), rules(want).len());
}

/// `-N`, `-P`, `-F`, `-I` (restore input and `iptables -S`-style lines inside a table).
#[test]
fn chain_commands_inside_a_table() {
    let d = parse_iptables_save(
        "*filter\n-P FORWARD DROP\n-N KUBE-X\n-A KUBE-X -j ACCEPT\n-I KUBE-X 1 -s 10.0.0.1 -j DROP\n-F KUBE-X\n-A KUBE-X -j RETURN\n-D KUBE-X 1\nCOMMIT\n",
    );
    let t = d.table("filter").unwrap();
    assert_eq!(t.chain("FORWARD").unwrap().policy.as_deref(), Some("DROP"));
    assert!(t.chain("KUBE-X").is_some());
    let rules: Vec<&str> = t.rules.iter().map(|r| r.target_name()).collect();
    assert_eq!(rules, ["RETURN"]);
    assert_eq!(d.unparsed.len(), 1);
    assert_eq!(d.unparsed[0].line, 8);
    let d = parse_iptables_save("*nat\n-A C -j A\n-A C -j B\n-I C 2 -j X\n-I C -j Y\nCOMMIT\n");
    let order: Vec<&str> = d.tables[0].rules.iter().map(|r| r.target_name()).collect();
    assert_eq!(order, ["Y", "A", "X", "B"]);
}

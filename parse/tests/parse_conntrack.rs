//! conntrack parser tests over the real captures in `fixtures/raw/conntrack/`
//! (produced by `fixtures/raw/conntrack/capture.sh`; see fixtures/raw/README.md).

// Helpers outside #[test] fns unwrap too; a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use netsnap_parse::conntrack::{
    ConntrackEntry, ConntrackEvent, ConntrackFilter, ConntrackLine, ConntrackState, ConntrackTally,
    L3Family, Protocol, for_each_entry, parse_conntrack_count, parse_conntrack_line,
    parse_conntrack_list, parse_conntrack_stats, parse_proc_stat,
};
use proptest::prelude::*;

fn fixture(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/raw/conntrack")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn snapshots() {
    insta::glob!("../../fixtures/raw/conntrack", "*.txt", |path| {
        let text = std::fs::read_to_string(path).unwrap();
        let name = path.file_name().unwrap().to_str().unwrap();
        if name.starts_with("conntrack-S") {
            insta::assert_yaml_snapshot!(parse_conntrack_stats(&text));
        } else if name.starts_with("proc-stat") {
            insta::assert_yaml_snapshot!(parse_proc_stat(&text));
        } else if name.starts_with("conntrack-C") {
            insta::assert_yaml_snapshot!(parse_conntrack_count(&text).unwrap());
        } else {
            insta::assert_yaml_snapshot!(parse_conntrack_list(&text));
        }
    });
}

/// Protocol names counted straight from the text (first word after an optional
/// `ipvN N` prefix), independent of the parser.
fn text_protocol_counts(text: &str) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for line in text.lines() {
        let mut w = line.split_whitespace();
        let mut first = w.next().unwrap_or("");
        if first == "ipv4" || first == "ipv6" {
            w.next();
            first = w.next().unwrap_or("");
        }
        // Skips the stderr summary and the tail of a line it split (`t=8080 ...`).
        if first.is_empty() || first == "conntrack" || first.contains('=') {
            continue;
        }
        *m.entry(first.to_string()).or_insert(0) += 1;
    }
    m
}

#[test]
fn every_real_listing_parses_completely() {
    for name in [
        "conntrack-L.txt",
        "conntrack-L.stdout+stderr.txt",
        "conntrack-L-o-extended.txt",
        "conntrack-L-o-extended-id.txt",
        "conntrack-L-f-ipv6.txt",
        "conntrack-L-zone7.txt",
        "proc-nf_conntrack.txt",
    ] {
        let text = fixture(name);
        let list = parse_conntrack_list(&text);
        assert!(list.unparsed.is_empty(), "{name}: {:?}", list.unparsed);
        let mut tally = ConntrackTally::default();
        for e in &list.entries {
            tally.add(e);
        }
        assert_eq!(tally.by_protocol, text_protocol_counts(&text), "{name}");
        // Line numbers point at the line the entry came from.
        let lines: Vec<&str> = text.lines().collect();
        for e in &list.entries {
            let src = lines[e.line - 1];
            assert!(
                src.contains(&format!("{}", e.original.src)) || name.starts_with("proc"),
                "{name}:{} does not hold {}",
                e.line,
                e.original.src
            );
            assert!(src.contains(e.protocol.as_str()));
        }
    }
}

#[test]
fn summary_line_from_stderr_is_the_count() {
    let merged = parse_conntrack_list(&fixture("conntrack-L.stdout+stderr.txt"));
    assert_eq!(merged.reported_count, Some(merged.entries.len() as u64));
    let stderr_only = parse_conntrack_list(&fixture("conntrack-L.stderr.txt"));
    assert!(stderr_only.entries.is_empty() && stderr_only.unparsed.is_empty());
    let plain = parse_conntrack_list(&fixture("conntrack-L.txt"));
    assert_eq!(plain.reported_count, None);
    assert_eq!(stderr_only.reported_count, Some(plain.entries.len() as u64));
    let count = parse_conntrack_count(&fixture("conntrack-C.txt")).unwrap();
    assert_eq!(count, plain.entries.len() as u64);
}

fn find(list: &[ConntrackEntry], pred: impl Fn(&ConntrackEntry) -> bool) -> &ConntrackEntry {
    let found: Vec<_> = list.iter().filter(|e| pred(e)).collect();
    assert_eq!(found.len(), 1, "expected exactly one match");
    found[0]
}

#[test]
fn semantics_of_the_plain_listing() {
    let list = parse_conntrack_list(&fixture("conntrack-L.txt")).entries;
    // Real flow through the nft DNAT 10.96.77.10:80 -> 10.77.0.2:8080.
    let dnat = find(&list, |e| {
        e.original.dst == ip("10.96.77.10") && e.protocol == Protocol::Tcp
    });
    assert_eq!(dnat.dnat_destination(), Some((ip("10.77.0.2"), Some(8080))));
    assert_eq!(dnat.state, Some(ConntrackState::Established));
    assert!(dnat.flags.assured && !dnat.flags.unreplied);
    assert_eq!(dnat.original.packets, Some(4));
    assert!(dnat.reply.bytes.unwrap() > 0);
    // Inserted kube-proxy-like UDP DNS entry: reply source is the real pod.
    let dns = find(&list, |e| {
        e.original.dst == ip("10.96.0.10") && e.original.sport == Some(53124)
    });
    assert_eq!(dns.dnat_destination(), Some((ip("10.244.2.3"), Some(53))));
    assert!(dns.flags.unreplied);
    // Not DNATed: reply source == original destination.
    let plain = find(&list, |e| e.original.dst == ip("10.244.3.9"));
    assert_eq!(plain.dnat_destination(), None);
    assert_eq!((plain.zone, plain.mark), (Some(7), Some(1)));
    let marked = find(&list, |e| e.original.dst == ip("10.96.0.1"));
    assert_eq!(marked.mark, Some(0x4000));
    assert_eq!(
        marked.dnat_destination(),
        Some((ip("192.168.10.11"), Some(6443)))
    );
    // Real ICMP echo, id 0x4242.
    let ping = find(&list, |e| {
        e.protocol == Protocol::Icmp && e.original.src == ip("10.77.0.1")
    });
    let icmp = ping.original.icmp.unwrap();
    assert_eq!(
        (icmp.icmp_type, icmp.code, icmp.id),
        (Some(8), Some(0), Some(0x4242))
    );
    assert_eq!(ping.reply.icmp.unwrap().icmp_type, Some(0));
    assert!(!ping.flags.unreplied);
    // IPv6, GRE keys, unknown protocol, sctp states.
    let v6 = find(&list, |e| e.original.dst == ip("fd00:10:96::1"));
    assert_eq!(v6.family, L3Family::Ipv6);
    assert_eq!(
        v6.dnat_destination(),
        Some((ip("fd00:10:244:2::3"), Some(8443)))
    );
    let gre = find(&list, |e| e.protocol == Protocol::Gre);
    assert_eq!(
        (gre.original.src_key, gre.original.dst_key),
        (Some(0x10), Some(0x20))
    );
    let unknown = find(&list, |e| e.protocol == Protocol::Unknown);
    assert_eq!(unknown.protocol_number, 112);
    assert_eq!(unknown.original.sport, None);
    let mut tally = ConntrackTally::default();
    list.iter().for_each(|e| tally.add(e));
    assert_eq!(tally.by_state.get("sctp/COOKIE_WAIT"), Some(&1));
    assert_eq!(tally.by_state.get("sctp/ESTABLISHED"), Some(&1));
    assert_eq!(tally.by_state.get("tcp/TIME_WAIT"), Some(&2));
    for st in [
        "SYN_SENT",
        "SYN_RECV",
        "FIN_WAIT",
        "CLOSE_WAIT",
        "LAST_ACK",
        "CLOSE",
    ] {
        assert_eq!(tally.by_state.get(&format!("tcp/{st}")), Some(&1), "{st}");
    }
    assert!(
        list.iter()
            .all(|e| e.delta_time.is_some() && e.use_count == Some(1))
    );
}

#[test]
fn filters_and_top_destinations_like_conntrack_l() {
    let list = parse_conntrack_list(&fixture("conntrack-L.txt")).entries;
    // The zone-7 capture is what `conntrack -L -w 7` printed: the filter must agree.
    let zone7 = parse_conntrack_list(&fixture("conntrack-L-zone7.txt")).entries;
    let f = ConntrackFilter {
        zone: Some(7),
        ..Default::default()
    };
    let picked: Vec<_> = list
        .iter()
        .filter(|e| f.matches(e))
        .map(|e| (e.original.src, e.original.sport))
        .collect();
    assert_eq!(
        picked,
        zone7
            .iter()
            .map(|e| (e.original.src, e.original.sport))
            .collect::<Vec<_>>()
    );
    // `conntrack -L -f ipv6` likewise, by family.
    let v6 = parse_conntrack_list(&fixture("conntrack-L-f-ipv6.txt")).entries;
    assert_eq!(
        list.iter().filter(|e| e.family == L3Family::Ipv6).count(),
        v6.len()
    );
    let f = ConntrackFilter {
        orig_dst: Some(ip("10.96.0.10")),
        protocol: Some(Protocol::Udp),
        ..Default::default()
    };
    assert_eq!(list.iter().filter(|e| f.matches(e)).count(), 2);
    let f = ConntrackFilter {
        state: Some(ConntrackState::TimeWait),
        ..Default::default()
    };
    assert_eq!(list.iter().filter(|e| f.matches(e)).count(), 2);
    let f = ConntrackFilter {
        reply_src: Some(ip("10.77.0.2")),
        orig_dport: Some(80),
        ..Default::default()
    };
    assert_eq!(list.iter().filter(|e| f.matches(e)).count(), 1);
    let mut tally = ConntrackTally::default();
    list.iter().for_each(|e| tally.add(e));
    let top = tally.top_destinations(1);
    let max = list.iter().filter(|e| e.original.dst == top[0].0).count() as u64;
    assert_eq!(top[0].1, max);
    assert!(tally.by_destination.values().all(|&c| c <= max));
    assert_eq!(tally.by_destination.values().sum::<u64>(), tally.total);
}

#[test]
fn extended_and_proc_forms_match_the_plain_listing() {
    let key = |e: &ConntrackEntry| {
        (
            e.protocol,
            e.original.src,
            e.original.dst,
            e.original.sport,
            e.original.icmp.and_then(|i| i.id),
            e.reply.src,
            e.reply.sport,
            e.state.clone(),
        )
    };
    // The kernel here has no dccp tracker: conntrack-tools names protocol 33 `dccp` (with
    // bogus zero ports) while /proc prints it as `unknown 33`. Compared apart below.
    let not_dccp = |e: &&ConntrackEntry| e.protocol_number != 33;
    let mut plain: Vec<_> = parse_conntrack_list(&fixture("conntrack-L.txt"))
        .entries
        .iter()
        .filter(not_dccp)
        .map(key)
        .collect();
    plain.sort_by_key(|k| format!("{k:?}"));
    for name in [
        "conntrack-L-o-extended.txt",
        "conntrack-L-o-extended-id.txt",
        "proc-nf_conntrack.txt",
    ] {
        let list = parse_conntrack_list(&fixture(name)).entries;
        let mut other: Vec<_> = list.iter().filter(not_dccp).map(key).collect();
        assert_eq!(list.iter().filter(|e| e.protocol_number == 33).count(), 1);
        other.sort_by_key(|k| format!("{k:?}"));
        assert_eq!(plain, other, "{name}");
        for e in &list {
            let want = if e.original.src.is_ipv4() {
                L3Family::Ipv4
            } else {
                L3Family::Ipv6
            };
            assert_eq!(e.family, want);
        }
    }
    let ids = parse_conntrack_list(&fixture("conntrack-L-o-extended-id.txt")).entries;
    assert!(ids.iter().all(|e| e.id.is_some()));
    // The ICMP entries keep their echo id apart from the conntrack id.
    assert!(
        ids.iter()
            .filter(|e| e.protocol == Protocol::Icmp)
            .all(|e| e.original.icmp.unwrap().id != e.id.map(|v| v as u16))
    );
    let proc = parse_conntrack_list(&fixture("proc-nf_conntrack.txt")).entries;
    assert!(proc.iter().all(|e| e.zone.is_some()));
    let dccp = find(&proc, |e| e.protocol_number == 33);
    assert_eq!(
        (dccp.protocol, dccp.original.sport),
        (Protocol::Unknown, None)
    );
}

/// Wherever the unbuffered stderr summary cuts a line, the entry comes back whole.
#[test]
fn summary_cut_into_any_position_is_spliced_out() {
    let text = fixture("conntrack-L-o-extended-id.txt");
    let summary = "conntrack v1.4.7 (conntrack-tools): 1 flow entries have been shown.";
    for line in text.lines().take(3) {
        let want = parse_conntrack_list(line).entries;
        for k in 1..line.len() {
            let cut = format!("{}{summary}\n{}\n", &line[..k], &line[k..]);
            let got = parse_conntrack_list(&cut);
            assert!(got.unparsed.is_empty(), "cut at {k}: {:?}", got.unparsed);
            assert_eq!(got.entries, want, "cut at {k}");
            assert_eq!(got.reported_count, Some(1));
            let mut streamed = Vec::new();
            let st = for_each_entry(cut.as_bytes(), |e| streamed.push(e.unwrap())).unwrap();
            assert_eq!((streamed, st.lines), (want.clone(), 2));
        }
    }
}

#[test]
fn streaming_matches_collecting() {
    let text = fixture("conntrack-L.stdout+stderr.txt");
    let mut seen = Vec::new();
    let stats = for_each_entry(text.as_bytes(), |r| seen.push(r.unwrap())).unwrap();
    assert_eq!(seen, parse_conntrack_list(&text).entries);
    assert_eq!(stats.entries, seen.len());
    assert_eq!(stats.lines, text.lines().count());
    assert_eq!(stats.reported_count, Some(seen.len() as u64));
    // Invalid UTF-8 becomes an unparsed line, not an error.
    let mut bad = Vec::new();
    let s = for_each_entry(&b"\xff\xfe tcp\nudp 17 1 src=1.1.1.1\n"[..], |r| {
        bad.push(r)
    })
    .unwrap();
    assert_eq!((s.unparsed, s.lines), (2, 2));
    assert_eq!(bad[0].as_ref().unwrap_err().line, 1);
}

#[test]
fn stats_both_forms_and_totals() {
    let s = parse_conntrack_stats(&fixture("conntrack-S.txt"));
    assert!(s.unparsed.is_empty());
    assert_eq!(s.cpus.iter().map(|c| c.cpu).collect::<Vec<_>>(), [0, 1]);
    let t = s.totals();
    assert_eq!(
        t["insert"],
        s.cpus
            .iter()
            .map(|c| c.counter("insert").unwrap())
            .sum::<u64>()
    );
    assert!(t.contains_key("chaintoolong") && t.contains_key("clash_resolve"));

    let p = parse_proc_stat(&fixture("proc-stat-nf_conntrack.txt"));
    assert!(p.unparsed.is_empty());
    assert_eq!(p.cpus.len(), 2);
    let pt = p.totals();
    // Same moment, two views of the same kernel counters.
    assert_eq!(pt["insert"], t["insert"]);
    // `entries` is a gauge repeated per row: taken once, and equal to conntrack -C.
    let count = parse_conntrack_count(&fixture("conntrack-C.txt")).unwrap();
    assert_eq!(pt["entries"], count);
    assert!(pt.contains_key("chainlength"), "header decides the columns");
}

#[test]
fn proc_stat_header_variants_and_errors() {
    let old = "entries  searched found new invalid ignore delete delete_list insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart\n\
               00000010  00000001 00000002 00000003 00000000 00000000 00000000 00000000 00000004 00000000 0000000a 00000000 00000000  00000000 00000000 00000000 00000000\n\
               00000010  00000001 00000002 00000003 00000000 00000000 00000000 00000000 00000004 00000000 0000000b 00000000 00000000  00000000 00000000 00000000 00000000\n\
               zz\n";
    let p = parse_proc_stat(old);
    assert_eq!(p.totals()["drop"], 21);
    assert_eq!(p.totals()["searched"], 2);
    assert_eq!(p.unparsed.len(), 1);
    assert_eq!(p.unparsed[0].line, 4);
    assert!(parse_conntrack_count("").is_err());
    assert!(
        parse_conntrack_count("abc\n")
            .unwrap_err()
            .to_string()
            .contains("line 1")
    );
}

proptest! {
    #[test]
    fn never_panics_and_accounts_for_every_line(s in "((tcp|udp|icmp|ipv4|ipv6| 2| 6| 17|src=10.0.0.1|dst=::1|sport=1|id=5|type=3|\\[ASSURED\\]|mark=x|zone=9|=| |[0-9]{1,6}|[a-z=\\[\\]]{1,4})*\n?){0,6}") {
        let list = parse_conntrack_list(&s);
        let non_blank = s.lines().filter(|l| !l.trim().is_empty()).count();
        let summaries = s.lines().filter(|l| matches!(parse_conntrack_line(1, l), ConntrackLine::Summary(_))).count();
        prop_assert_eq!(list.entries.len() + list.unparsed.len() + summaries, non_blank);
        let _ = parse_conntrack_stats(&s);
        let _ = parse_proc_stat(&s);
        let _ = parse_conntrack_count(&s);
    }

    #[test]
    fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&b);
        let _ = parse_conntrack_list(&text);
        let _ = for_each_entry(&b[..], |_| {}).unwrap();
        let _ = parse_proc_stat(&text);
    }
}

/// Issue 19: `conntrack -E` event lines (real captures of a TCP and a UDP flow through a
/// DNAT, plain and `-o timestamp,extended`) parse as entries carrying their event kind;
/// every line is an entry, in order, and the flows' DNAT is read from the reply tuple.
#[test]
fn conntrack_events_parse_with_their_kind() {
    for name in ["conntrack-E.txt", "conntrack-E-o-timestamp-extended.txt"] {
        let text = fixture(name);
        let list = parse_conntrack_list(&text);
        assert!(list.unparsed.is_empty(), "{name}: {:?}", list.unparsed);
        assert_eq!(list.entries.len(), text.lines().count(), "{name}");
        let kinds: Vec<ConntrackEvent> = list.entries.iter().map(|e| e.event.unwrap()).collect();
        // Counted from the text, independently of the parser.
        for (tag, kind) in [
            ("[NEW]", ConntrackEvent::New),
            ("[UPDATE]", ConntrackEvent::Update),
            ("[DESTROY]", ConntrackEvent::Destroy),
        ] {
            let n = text.lines().filter(|l| l.contains(tag)).count();
            assert!(n > 0, "{name}: no {tag}");
            assert_eq!(
                kinds.iter().filter(|k| **k == kind).count(),
                n,
                "{name} {tag}"
            );
        }
        assert_eq!(kinds[0], ConntrackEvent::New);
        let first = &list.entries[0];
        assert_eq!(first.protocol, Protocol::Tcp);
        assert_eq!(first.state, Some(ConntrackState::SynSent));
        assert_eq!(first.original.dst, ip("10.96.79.10"));
        assert_eq!(
            first.dnat_destination(),
            Some((ip("10.79.0.2"), Some(8080)))
        );
        let timestamped = name.contains("timestamp");
        assert_eq!(
            list.entries.iter().all(|e| e.event_time.is_some()),
            timestamped,
            "{name}"
        );
        let destroy = list
            .entries
            .iter()
            .find(|e| e.event == Some(ConntrackEvent::Destroy))
            .unwrap();
        assert_eq!(destroy.protocol, Protocol::Udp);
        assert!(
            text.lines()
                .nth(destroy.line - 1)
                .unwrap()
                .contains("[DESTROY]")
        );
    }
    // A timestamp without an event is not silently accepted.
    assert!(matches!(
        parse_conntrack_line(1, "[1796306105.025051]\tgarbage"),
        ConntrackLine::Unparsed(_)
    ));
}

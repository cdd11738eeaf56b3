//! Kernel log parser tests over `fixtures/raw/kernel-log/` (real dmesg and /dev/kmsg
//! captures after provoking networking messages in throwaway namespaces, plus hand-made
//! lines in the kernel's exact wording for events that cannot be provoked safely).

// Helpers outside #[test] fns unwrap too; a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use netsnap_parse::kernel_log::{KernelEventKind as K, classify, parse_kernel_log};
use proptest::prelude::*;

fn fixture(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/raw/kernel-log")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn snapshots() {
    insta::glob!("../../fixtures/raw/kernel-log", "*.txt", |path| {
        let text = std::fs::read_to_string(path).unwrap();
        let log = parse_kernel_log(&text);
        insta::assert_yaml_snapshot!((log.counts(), log.unparsed.len(), log.records));
    });
}

#[test]
fn real_captures_parse_completely_and_agree() {
    let forms = ["dmesg.txt", "dmesg-T.txt", "dmesg-r.txt", "dmesg-x.txt"];
    let logs: Vec<_> = forms
        .iter()
        .map(|n| parse_kernel_log(&fixture(n)))
        .collect();
    for (n, l) in forms.iter().zip(&logs) {
        assert!(l.unparsed.is_empty(), "{n}: {:?}", l.unparsed);
        assert_eq!(
            l.records.len(),
            fixture(n).lines().filter(|x| !x.trim().is_empty()).count()
        );
    }
    // Same 60 records in four renderings: same messages and kinds.
    for l in &logs[1..] {
        let a: Vec<_> = logs[0]
            .records
            .iter()
            .map(|r| (&r.message, r.kind))
            .collect();
        let b: Vec<_> = l.records.iter().map(|r| (&r.message, r.kind)).collect();
        assert_eq!(a, b);
    }
    // -r and -x carry levels, and they agree.
    let lr: Vec<_> = logs[2].records.iter().map(|r| r.level).collect();
    let lx: Vec<_> = logs[3].records.iter().map(|r| r.level).collect();
    assert_eq!(lr, lx);
    assert!(lr.iter().all(Option::is_some));
    assert!(
        logs[1]
            .records
            .iter()
            .all(|r| r.wall_time.is_some() && r.monotonic_us.is_none())
    );
    // The capture provoked these for real.
    let c = logs[0].counts();
    assert!(c[&K::MartianSource] >= 1);
    assert!(c[&K::MartianLlHeader] >= 1);
    assert!(c[&K::PromiscuousEntered] >= 1 && c[&K::PromiscuousLeft] >= 1);
    assert!(c[&K::BridgePortState] >= 2);
    let m = logs[0].of_kind(K::MartianSource).last().unwrap();
    assert!(m.message.contains("from 10.99.0.1, on dev klcap-vb"));
}

#[test]
fn kmsg_records_and_continuations() {
    let text = fixture("dev-kmsg.txt");
    let log = parse_kernel_log(&text);
    assert!(log.unparsed.is_empty(), "{:?}", log.unparsed);
    let heads = text.lines().filter(|l| !l.starts_with(' ')).count();
    assert_eq!(log.records.len(), heads);
    let props: usize = log.records.iter().map(|r| r.properties.len()).sum();
    assert_eq!(props, text.lines().filter(|l| l.starts_with(' ')).count());
    let seqs: Vec<u64> = log.records.iter().map(|r| r.sequence.unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    // Same martian record as dmesg shows, with the same timestamp.
    let km = log.of_kind(K::MartianSource).last().unwrap();
    let dm = parse_kernel_log(&fixture("dmesg.txt"));
    let dm = dm.of_kind(K::MartianSource).last().unwrap();
    assert_eq!(
        (km.message.as_str(), km.monotonic_us),
        (dm.message.as_str(), dm.monotonic_us)
    );
    assert_eq!(km.level, Some(4));
}

#[test]
fn handmade_networking_lines_classify() {
    let log = parse_kernel_log(&fixture("handmade-networking.dmesg.txt"));
    assert!(log.unparsed.is_empty());
    let c = log.counts();
    let expect = [
        (K::ConntrackTableFull, 2),
        (K::ConntrackVmallocFallback, 1),
        (K::ConntrackExpectationTableFull, 1),
        (K::NeighbourTableOverflow, 2),
        (K::SynFlooding, 2),
        (K::OutOfSocketMemory, 2),
        (K::TooManyOrphanedSockets, 1),
        (K::MartianSource, 1),
        (K::MartianDestination, 1),
        (K::IpvsNoDestination, 1),
        (K::Ipvs, 4),
        (K::BrNetfilter, 2),
        (K::PromiscuousEntered, 1),
        (K::InterfaceRenamed, 1),
        (K::LinkNotReady, 1),
        (K::LinkBecomesReady, 2),
        (K::BridgePortState, 2),
        (K::RateLimited, 2),
    ];
    for (k, n) in expect {
        assert_eq!(c.get(&k), Some(&n), "{k:?}");
    }
    let full = log.of_kind(K::ConntrackTableFull).next().unwrap();
    assert_eq!((full.line, full.monotonic_us), (17, Some(1_234_567_890)));
    let t = parse_kernel_log(&fixture("handmade-T.dmesg.txt"));
    assert_eq!(
        t.records[0].wall_time.as_deref(),
        Some("Sat Nov 28 09:35:12 2026")
    );
    let k = parse_kernel_log(&fixture("handmade-kmsg.txt"));
    assert!(k.unparsed.is_empty());
    assert_eq!(k.records.last().unwrap().facility, Some(1));
    assert_eq!(
        classify("eth0: renamed from veth5a6b7c8d"),
        K::InterfaceRenamed
    );
    assert_eq!(classify("hello"), K::Other);
}

proptest! {
    #[test]
    fn every_line_is_a_record_continuation_or_unparsed(s in "((\\[|\\]|<|>|[0-9]{1,4}|\\.|,|;|-| |kern|:|info|SUBSYSTEM=x|Nov| kernel: |[a-z]{1,5})*\n?){0,8}") {
        let log = parse_kernel_log(&s);
        let non_blank = s.lines().filter(|l| !l.trim().is_empty()).count();
        let props: usize = log.records.iter().map(|r| r.properties.len()).sum();
        prop_assert_eq!(log.records.len() + log.unparsed.len() + props, non_blank);
    }

    #[test]
    fn arbitrary_text_never_panics(s in any::<String>()) {
        let _ = parse_kernel_log(&s);
    }
}

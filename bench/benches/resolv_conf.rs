//! `resolv-conf-mismatch` at 2,000 pods x 20,000 Services (issue 12: it took 61 s when the
//! rule compared every pod with every Service; the join is now an index built once with
//! the facts). Two figures: the fact build plus that one rule, and `analyze` with all the
//! built-in rules on the same bundle. The answer at this size is checked by
//! `bench/tests/resolv_conf_scale.rs`.
//!
//! ```sh
//! cargo bench -p netsnap-bench --bench resolv_conf
//! ```

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use netsnap_analyzer::analyze::analyze;
use netsnap_analyzer::rules::{Outcome, RuleSet};
use netsnap_bench::resolv_scale;
use netsnap_bundle::{Bundle, ReaderOptions};

const PODS: usize = 2_000;
const SERVICES: usize = 20_000;

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resolv.tar.zst");
    resolv_scale::write(&path, PODS, SERVICES).unwrap();
    let bundle = Bundle::open(&path, &ReaderOptions::default()).unwrap();
    let rules = RuleSet::builtin().unwrap();
    let want = resolv_scale::expected(PODS, SERVICES).len();
    let mut g = c.benchmark_group("resolv_conf_mismatch_2000_pods_20000_services");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.bench_function("facts_and_rule", |b| {
        b.iter(|| {
            let (_, outcome) = resolv_scale::facts_and_rule(&bundle, &rules);
            assert!(matches!(outcome, Outcome::Findings(ref f) if f.len() == want));
        })
    });
    g.bench_function("analyze_all_rules", |b| {
        b.iter(|| {
            let r = analyze(&[("resolv".into(), &bundle)], &rules).unwrap();
            assert!(!r.findings.is_empty());
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

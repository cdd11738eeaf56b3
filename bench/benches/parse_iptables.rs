//! iptables-save parsing throughput on a generated kube-proxy dump (~50,000 rules).
//!
//! Run: `cargo bench -p netsnap-bench --bench parse_iptables`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use netsnap_analyzer::parse::iptables::{kube_proxy_model, parse_iptables_save};
use netsnap_bench::kube_proxy_iptables_dump;

fn bench(c: &mut Criterion) {
    // 4,500 services x 3 endpoints = 49,516 rules.
    let text = kube_proxy_iptables_dump(4_500, 3);
    let mut g = c.benchmark_group("iptables_save");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.sample_size(20);
    g.bench_function("parse", |b| b.iter(|| parse_iptables_save(black_box(&text))));
    let dump = parse_iptables_save(&text);
    g.bench_function("kube_proxy_model", |b| b.iter(|| kube_proxy_model(black_box(&dump))));
    g.bench_function("parse_and_model", |b| {
        b.iter(|| kube_proxy_model(&parse_iptables_save(black_box(&text))))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

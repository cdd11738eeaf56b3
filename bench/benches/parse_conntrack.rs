//! conntrack listing throughput (MB/s): collect-all and streaming aggregation.
//!
//! Run: `cargo bench -p netsnap-bench --bench parse_conntrack`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use netsnap_parse::conntrack::{ConntrackTally, for_each_entry, parse_conntrack_list};

fn bench(c: &mut Criterion) {
    // 200,000 lines (~50 MB) per iteration: the per-line cost of a 1,000,000-line table
    // without making each sample take seconds.
    let text = netsnap_bench::conntrack_extended_table(200_000);
    let mut g = c.benchmark_group("conntrack");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("stream_tally_200k_lines", |b| {
        b.iter(|| {
            let mut tally = ConntrackTally::default();
            let stats = for_each_entry(black_box(text.as_bytes()), |e| {
                if let Ok(e) = e {
                    tally.add(&e);
                }
            });
            black_box((stats.ok(), tally))
        })
    });
    g.bench_function("stream_count_200k_lines", |b| {
        b.iter(|| {
            let mut n = 0u64;
            let _ = for_each_entry(black_box(text.as_bytes()), |e| n += u64::from(e.is_ok()));
            black_box(n)
        })
    });
    g.bench_function("collect_200k_lines", |b| {
        b.iter(|| black_box(parse_conntrack_list(black_box(&text)).entries.len()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

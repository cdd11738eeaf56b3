//! `ipvsadm -Lnc` throughput (MB/s).
//!
//! Run: `cargo bench -p netsnap-bench --bench parse_ipvs`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use netsnap_parse::ipvs::{for_each_connection, parse_ipvs_connections};

fn bench(c: &mut Criterion) {
    let text = netsnap_bench::ipvsadm_connections(200_000);
    let mut g = c.benchmark_group("ipvsadm_lnc");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("collect_200k_lines", |b| {
        b.iter(|| black_box(parse_ipvs_connections(black_box(&text)).connections.len()))
    });
    g.bench_function("stream_200k_lines", |b| {
        b.iter(|| {
            let mut n = 0u64;
            let _ = for_each_connection(black_box(text.as_bytes()), |c| n += u64::from(c.is_ok()));
            black_box(n)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

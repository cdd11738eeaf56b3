//! iptables-save parsing throughput on a generated kube-proxy dump (~50,000 rules).
//!
//! Run: `cargo bench -p netsnap-bench --bench parse_iptables`
//!
//! Two groups: `iptables_save` is wall-clock time; `iptables_save_cpu` measures the
//! benchmark thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), which is the single-core
//! figure even when other processes compete for the CPU.

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use netsnap_bench::kube_proxy_iptables_dump;
use netsnap_parse::iptables::{kube_proxy_model, parse_iptables_save};

/// Thread CPU time as a criterion measurement; reported in the same units as wall time.
struct ThreadCpuTime;

static WALL: WallTime = WallTime;

fn thread_cpu() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        thread_cpu()
    }
    fn end(&self, start: Duration) -> Duration {
        thread_cpu().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        WALL.formatter()
    }
}

fn run<M: Measurement>(g: &mut BenchmarkGroup<'_, M>, text: &str) {
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.sample_size(20);
    g.bench_function("parse", |b| b.iter(|| parse_iptables_save(black_box(text))));
    let dump = parse_iptables_save(text);
    g.bench_function("kube_proxy_model", |b| {
        b.iter(|| kube_proxy_model(black_box(&dump)))
    });
    g.bench_function("parse_and_model", |b| {
        b.iter(|| kube_proxy_model(&parse_iptables_save(black_box(text))))
    });
}

fn wall(c: &mut Criterion) {
    // 4,500 services x 3 endpoints = 49,516 rules, about 7.4 MB.
    let text = kube_proxy_iptables_dump(4_500, 3);
    run(&mut c.benchmark_group("iptables_save"), &text);
}

fn cpu(c: &mut Criterion<ThreadCpuTime>) {
    let text = kube_proxy_iptables_dump(4_500, 3);
    run(&mut c.benchmark_group("iptables_save_cpu"), &text);
}

criterion_group!(wall_benches, wall);
criterion_group! {
    name = cpu_benches;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = cpu
}
criterion_main!(wall_benches, cpu_benches);

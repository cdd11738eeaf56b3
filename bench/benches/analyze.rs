//! `analyze` on a large generated bundle (1,000,000 conntrack entries, ~100,000
//! iptables rules, 10,000 Services, 5,000 IPVS virtual servers), compared in the
//! same run with just decompressing the bundle (the issue's goal: within 4x),
//! and redacting it (`open_and_redact`, issue 16: a few times the analysis).
//!
//! `NETSNAP_BENCH_BUNDLE=/path/big.tar.zst` keeps the generated bundle there (and
//! reuses it), so peak RSS can be measured with
//! `/usr/bin/time -v target/release/netsnap-analyze analyze /path/big.tar.zst`.

#![allow(clippy::unwrap_used, missing_docs)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use netsnap_analyzer::analyze::analyze;
use netsnap_analyzer::rules::RuleSet;
use netsnap_bundle::{
    ArtifactSource, ArtifactSpec, Bundle, BundleWriter, CollectionInfo, CollectionOutcome,
    Completion, NodeInfo, ReaderOptions, ToolInfo, WriterOptions, layout,
};

const SERVICES: usize = 10_000;
const IPVS_SERVICES: usize = 5_000;
const CONNTRACK: usize = 1_000_000;

fn vip(i: usize) -> String {
    format!("10.96.{}.{}", i / 250, i % 250 + 1)
}

fn pod_ip(i: usize) -> String {
    format!("10.244.{}.{}", i / 250, i % 250 + 1)
}

fn generate(path: &Path) {
    let w = BundleWriter::create(
        path,
        WriterOptions {
            max_artifact_bytes: None,
            max_total_bytes: None,
            compression_level: 3,
            ..WriterOptions::default()
        },
    )
    .unwrap();
    let done = || Completion {
        exit_status: Some(0),
        duration: Duration::from_millis(1),
        ..Completion::default()
    };
    // Services, slices, pods.
    let mut svc = Vec::new();
    let mut eps = Vec::new();
    let mut pods = Vec::new();
    for i in 0..SERVICES {
        writeln!(svc, r#"{{"namespace":"ns{}","name":"svc{i}","uid":"s{i}","type":"ClusterIP","cluster_ips":["{}"],"ports":[{{"name":"http","protocol":"TCP","port":80}},{{"name":"dns","protocol":"UDP","port":53}}],"selector":{{"app":"a{i}"}},"created_at":"2026-01-01T00:00:00Z"}}"#, i % 50, vip(i)).unwrap();
        writeln!(eps, r#"{{"namespace":"ns{}","name":"svc{i}-x","service_name":"svc{i}","address_type":"IPv4","endpoints":[{{"addresses":["{}"],"ready":true,"node_name":"big-node"}}],"ports":[{{"name":"http","port":8080,"protocol":"TCP"}},{{"name":"dns","port":53,"protocol":"UDP"}}],"created_at":"2026-01-01T00:00:00Z"}}"#, i % 50, pod_ip(i)).unwrap();
        writeln!(pods, r#"{{"namespace":"ns{}","name":"p{i}","uid":"u{i}","node_name":"big-node","phase":"Running","ready":true,"pod_ips":["{}"],"created_at":"2026-01-01T00:00:00Z"}}"#, i % 50, pod_ip(i)).unwrap();
    }
    for (p, data) in [
        (layout::k8s::SERVICES, svc),
        (layout::k8s::ENDPOINT_SLICES, eps),
        (layout::k8s::PODS, pods),
    ] {
        w.add_bytes(
            ArtifactSpec::native(p, ArtifactSource::KubernetesApi),
            &data,
            done(),
        )
        .unwrap();
    }
    // iptables: ~10 rules per Service => ~100,000 rules.
    let mut sink = w
        .artifact(
            ArtifactSpec::raw_command(
                layout::iptables::SAVE,
                layout::content::IPTABLES_SAVE,
                &["iptables-save", "-c"],
            )
            .with_attribute("backend", "nft"),
        )
        .unwrap();
    let mut b = std::io::BufWriter::new(&mut sink);
    writeln!(b, "*mangle\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]").unwrap();
    writeln!(
        b,
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"
    )
    .unwrap();
    for i in 0..SERVICES {
        for (proto, port, tport) in [("tcp", 80, 8080), ("udp", 53, 53)] {
            let h = format!("{i:06}{proto}");
            writeln!(b, ":KUBE-SVC-{h} - [0:0]\n:KUBE-SEP-{h} - [0:0]").unwrap();
            writeln!(b, "-A KUBE-SERVICES -d {}/32 -p {proto} -m comment --comment \"ns/svc{i}:x cluster IP\" -m {proto} --dport {port} -j KUBE-SVC-{h}", vip(i)).unwrap();
            writeln!(b, "-A KUBE-SVC-{h} ! -s 10.244.0.0/16 -d {}/32 -p {proto} -m {proto} --dport {port} -j KUBE-MARK-MASQ", vip(i)).unwrap();
            writeln!(b, "-A KUBE-SVC-{h} -m comment --comment \"ns/svc{i}:x -> {}:{tport}\" -j KUBE-SEP-{h}", pod_ip(i)).unwrap();
            writeln!(b, "-A KUBE-SEP-{h} -s {}/32 -j KUBE-MARK-MASQ", pod_ip(i)).unwrap();
            writeln!(
                b,
                "-A KUBE-SEP-{h} -p {proto} -m {proto} -j DNAT --to-destination {}:{tport}",
                pod_ip(i)
            )
            .unwrap();
        }
    }
    writeln!(b, "COMMIT").unwrap();
    drop(b);
    sink.finish(done()).unwrap();
    // IPVS: 5,000 virtual servers with two real servers each.
    let mut ipvs = String::from(
        "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n",
    );
    for i in 0..IPVS_SERVICES {
        ipvs.push_str(&format!("TCP  {}:80 rr\n  -> {}:8080               Masq    1      0          0\n  -> {}:8080               Masq    1      0          0\n", vip(i), pod_ip(i), pod_ip(i + 1)));
    }
    w.add_bytes(
        ArtifactSpec::raw_command(
            layout::ipvs::LIST,
            layout::content::IPVSADM_LIST,
            &["ipvsadm", "-Ln"],
        ),
        ipvs.as_bytes(),
        done(),
    )
    .unwrap();
    // conntrack: 1,000,000 entries, streamed.
    let mut sink = w
        .artifact(ArtifactSpec::raw_command(
            layout::conntrack::TABLE,
            layout::content::CONNTRACK_LIST,
            &["conntrack", "-L"],
        ))
        .unwrap();
    let mut b = std::io::BufWriter::new(&mut sink);
    for i in 0..CONNTRACK {
        let s = i % SERVICES;
        if i % 2 == 0 {
            writeln!(b, "tcp      6 86397 ESTABLISHED src={} dst={} sport={} dport=80 src={} dst={} sport=8080 dport={} [ASSURED] mark=0 use=1", pod_ip(i % 9000), vip(s), 10000 + i % 50000, pod_ip(s), pod_ip(i % 9000), 10000 + i % 50000).unwrap();
        } else {
            writeln!(b, "udp      17 112 src={} dst={} sport={} dport=53 src={} dst={} sport=53 dport={} mark=0 use=1", pod_ip(i % 9000), vip(s), 10000 + i % 50000, pod_ip(s), pod_ip(i % 9000), 10000 + i % 50000).unwrap();
        }
    }
    drop(b);
    sink.finish(done()).unwrap();
    w.add_json(
        ArtifactSpec::native(layout::conntrack::SYSCTLS, ArtifactSource::File),
        &serde_json::json!({"nf_conntrack_count": "1000000", "nf_conntrack_max": "4194304"}),
        Duration::ZERO,
    )
    .unwrap();
    let t = chrono::DateTime::parse_from_rfc3339("2026-11-28T03:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    w.finish(
        ToolInfo {
            name: "netsnap-bench".into(),
            version: "0".into(),
        },
        NodeInfo {
            name: Some("big-node".into()),
            hostname: "big-node".into(),
            kernel_release: "6.1.0".into(),
            machine: None,
        },
        CollectionInfo {
            started_at: t,
            finished_at: t,
            outcome: CollectionOutcome::Complete,
            options: serde_json::json!({}),
            notes: vec![],
            resource_usage: None,
        },
    )
    .unwrap();
}

fn bundle_path() -> (Option<tempfile::TempDir>, PathBuf) {
    if let Some(p) = std::env::var_os("NETSNAP_BENCH_BUNDLE") {
        let p = PathBuf::from(p);
        if !p.exists() {
            generate(&p);
        }
        return (None, p);
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("big.tar.zst");
    generate(&p);
    (Some(dir), p)
}

fn bench(c: &mut Criterion) {
    let (_dir, path) = bundle_path();
    let rules = RuleSet::builtin().unwrap();
    let mut g = c.benchmark_group("analyze_1m_conntrack");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(30));
    g.bench_function("zstd_decompress_only", |b| {
        b.iter(|| {
            let f = std::fs::File::open(&path).unwrap();
            zstd::stream::copy_decode(f, std::io::sink()).unwrap();
        })
    });
    g.bench_function("open_and_analyze", |b| {
        b.iter(|| {
            let bundle = Bundle::open(
                &path,
                &ReaderOptions {
                    verify: false,
                    ..ReaderOptions::default()
                },
            )
            .unwrap();
            let r = analyze(&[("big".into(), &bundle)], &rules).unwrap();
            assert!(r.findings.len() < 10_000);
        })
    });
    // Redaction of the same bundle (issue 16: a few times the analysis at most):
    // open, rewrite every artifact line by line, write the redacted bundle.
    let out_dir = tempfile::tempdir().unwrap();
    let options = netsnap_redact::RedactOptions {
        key: netsnap_redact::Key::from_bytes([7; 32]),
        tool: ToolInfo {
            name: "netsnap-bench".into(),
            version: "0".into(),
        },
        keep_unredactable: false,
    };
    g.bench_function("open_and_redact", |b| {
        b.iter(|| {
            let out = out_dir.path().join("redacted.tar.zst");
            let done = netsnap_redact::redact_bundle(&path, &out, &options).unwrap();
            assert!(done.map.addrs.len() > 10_000);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

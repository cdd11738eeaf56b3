//! `netsnap-collect`: thin CLI over the `netsnap_collector` library.
//!
//! Parses flags once into `Options`, lowers the process priority before any
//! thread exists, wires Ctrl-C/SIGTERM/SIGHUP to the cancellation token, runs the
//! collection and prints the closing summary. Exit codes: 0 a bundle was
//! written (possibly partial), 2 no bundle could be written.

#[cfg(target_os = "linux")]
mod cli {
    use std::path::PathBuf;
    use std::process::ExitCode;
    use std::time::Duration;

    use anyhow::Context;
    use clap::Parser;
    use netsnap_bundle::{ArtifactStatus, CollectionOutcome};
    use netsnap_collector::progress::Progress;
    use netsnap_collector::{Cancel, Options, StopReason};

    const AFTER_HELP: &str = "\
READ-ONLY: netsnap-collect never changes the node. It does not flush tables, \
load kernel modules or write sysctls, and it skips tools that would load a module \
(ipvsadm when the kernel has no IPVS, conntrack when nf_conntrack is not loaded). \
It runs at low CPU and I/O priority (nice 10, best-effort I/O 7).

Every command and every namespace read has a timeout (--timeout) and the whole \
run a deadline (--deadline). A step that fails or times out is recorded in the \
manifest with its reason and the rest still lands. Ctrl-C, SIGTERM and SIGHUP write \
a valid partial bundle.

NO SECRETS: files are read inside the node's (or the pod's) root, regular files \
only; credentials in CNI and kubelet files (tokens, passwords, keys, certificates, \
kubeconfigs) are withheld and the manifest says where. An existing --output file \
is refused unless --force.

Exit codes:
  0  a bundle was written (it may be partial: see the warning summary on stderr)
  2  no bundle could be written (bad option, existing output without --force, unwritable output path)

Progress and logs go to stderr; stdout only receives the bundle path.";

    /// Captures the networking state of this Kubernetes node into one bundle.
    #[derive(Debug, Parser)]
    #[command(name = "netsnap-collect", version, about, after_help = AFTER_HELP)]
    struct Cli {
        /// Bundle to write [default: netsnap-<node>-<UTC>.tar.zst in the current directory].
        #[arg(short, long, value_name = "PATH")]
        output: Option<PathBuf>,
        /// Replace the file at --output if one exists (without it, an existing file is refused).
        #[arg(long)]
        force: bool,
        /// Do not contact the Kubernetes API (node-local data only).
        #[arg(long)]
        no_api: bool,
        /// Kubernetes node name of this node.
        #[arg(long, env = "NODE_NAME", value_name = "NAME")]
        node_name: Option<String>,
        /// Root of the host filesystem (read files and /proc under it), e.g. /host in a privileged pod.
        #[arg(long, value_name = "DIR")]
        host_root: Option<PathBuf>,
        /// Timeout in seconds of one command / one namespace read (the conntrack table gets 4x).
        #[arg(long, default_value_t = 5.0, value_name = "SECS")]
        timeout: f64,
        /// Deadline in seconds for the whole run.
        #[arg(long, default_value_t = 60.0, value_name = "SECS")]
        deadline: f64,
        /// Seconds between the first and second sample of counters (conntrack stats, link stats).
        #[arg(long, default_value_t = 2.0, value_name = "SECS")]
        sample_interval: f64,
        /// Per-artifact cap in bytes (0 = unlimited).
        #[arg(long, default_value_t = 1 << 30, value_name = "BYTES")]
        max_artifact_size: u64,
        /// Whole-bundle cap in bytes before compression (0 = unlimited).
        #[arg(long, default_value_t = 4 << 30, value_name = "BYTES")]
        max_bundle_size: u64,
        /// Keep at most this many conntrack entries (default: all).
        #[arg(long, value_name = "N")]
        conntrack_max_entries: Option<u64>,
        /// Keep at most N lines of `ipvsadm -Lnc` and `/proc/net/ip_vs_conn`.
        #[arg(long, default_value_t = 100_000, value_name = "N")]
        ipvs_max_connections: u64,
        /// Raw `ip addr`/`ip route` text for at most N non-host namespaces (native data is always complete).
        #[arg(long, default_value_t = 100, value_name = "N")]
        max_ip_text_netns: usize,
        /// Threads reading network namespaces.
        #[arg(long, default_value_t = 4, value_name = "N")]
        netns_workers: usize,
        /// Kubeconfig file [default: $KUBECONFIG, ~/.kube/config, in-cluster, /etc/kubernetes/kubelet.conf].
        #[arg(long, value_name = "PATH")]
        kubeconfig: Option<PathBuf>,
        /// Kubeconfig context to use [default: its current-context].
        #[arg(long, value_name = "NAME")]
        context: Option<String>,
        /// Which API data to collect: full (cluster lists + this node, alone), node (only
        /// this node's objects, for fan-out), cluster (only the cluster lists, once per run).
        #[arg(long, default_value = "full", value_name = "SCOPE", value_parser = ["full", "node", "cluster"])]
        api_scope: String,
        /// Id shared by the node bundles and the cluster bundle of one collection run.
        #[arg(long, value_name = "ID")]
        run_id: Option<String>,
        /// Client-side API request rate after the burst (requests per second, 0 = unlimited).
        #[arg(long, default_value_t = netsnap_collector::kube::DEFAULT_QPS, value_name = "QPS")]
        api_qps: f64,
        /// API requests allowed back to back before --api-qps applies.
        #[arg(long, default_value_t = netsnap_collector::kube::DEFAULT_BURST, value_name = "N")]
        api_burst: u32,
        /// Hard cap on API response bytes [default: 32 MiB for node scope, 2 GiB otherwise].
        #[arg(long, value_name = "BYTES")]
        api_max_bytes: Option<u64>,
        /// Most retries after `429 Too Many Requests` (each waits Retry-After, within the deadline).
        #[arg(long, default_value_t = netsnap_collector::kube::DEFAULT_MAX_RETRIES, value_name = "N")]
        api_max_retries: u32,
        /// Delay the first API request by this node's share of DURATION (e.g. 30s), so a
        /// DaemonSet's collectors do not all ask at once. Bounded by half the deadline.
        #[arg(long, default_value = "0s", value_name = "DURATION", value_parser = parse_duration)]
        start_jitter: Duration,
        /// Pod namespaces to send DNS probes from: `all`, a number N, or `namespace/pod` (plus the host).
        #[arg(long, default_value = "3", value_name = "WHICH")]
        dns_from: String,
        /// Extra name to resolve from pods (repeatable), besides kubernetes.default.svc.<domain>.
        #[arg(long, value_name = "NAME")]
        dns_name: Vec<String>,
        /// Timeout in seconds of one DNS query attempt.
        #[arg(long, default_value_t = 2.0, value_name = "SECS")]
        dns_timeout: f64,
        /// No progress lines (warnings and the summary still print).
        #[arg(short, long)]
        quiet: bool,
        /// More logging (-v info, -vv debug).
        #[arg(short, long, action = clap::ArgAction::Count)]
        verbose: u8,
    }

    /// `30s`, `500ms`, `2m` or plain seconds.
    fn parse_duration(v: &str) -> Result<Duration, String> {
        let v = v.trim();
        let (num, unit) = match v.find(|c: char| c.is_ascii_alphabetic()) {
            Some(i) => v.split_at(i),
            None => (v, "s"),
        };
        let n: f64 = num
            .parse()
            .map_err(|_| format!("{v:?} is not a duration (e.g. 30s, 500ms, 2m)"))?;
        let secs = match unit {
            "ms" => n / 1000.0,
            "s" => n,
            "m" => n * 60.0,
            _ => return Err(format!("{v:?}: unknown unit {unit:?} (ms, s or m)")),
        };
        if !(secs.is_finite() && secs >= 0.0) {
            return Err(format!("{v:?} must be a non-negative duration"));
        }
        Ok(Duration::from_secs_f64(secs))
    }

    fn secs(name: &str, v: f64) -> anyhow::Result<Duration> {
        anyhow::ensure!(
            v.is_finite() && v > 0.0,
            "--{name} must be a positive number of seconds"
        );
        Ok(Duration::from_secs_f64(v))
    }

    impl Cli {
        fn options(&self) -> anyhow::Result<Options> {
            let cap = |v: u64| (v > 0).then_some(v);
            Ok(Options {
                output: self.output.clone(),
                no_api: self.no_api,
                node_name: self.node_name.clone().filter(|s| !s.is_empty()),
                host_root: self.host_root.clone(),
                timeout: secs("timeout", self.timeout)?,
                deadline: secs("deadline", self.deadline)?,
                sample_interval: secs("sample-interval", self.sample_interval)?,
                max_artifact_size: cap(self.max_artifact_size),
                max_bundle_size: cap(self.max_bundle_size),
                conntrack_max_entries: self.conntrack_max_entries,
                netns_workers: self.netns_workers.clamp(1, 64),
                max_ip_text_netns: self.max_ip_text_netns,
                ipvs_conn_max_lines: self.ipvs_max_connections.max(1),
                force: self.force,
                ..Options::default()
            })
        }
    }

    impl Cli {
        /// Options of the Kubernetes and DNS steps.
        fn kube_dns(
            &self,
            options: &Options,
        ) -> anyhow::Result<(
            netsnap_collector::kube::KubeOptions,
            netsnap_collector::dns::DnsOptions,
        )> {
            let kube = netsnap_collector::kube::KubeOptions {
                no_api: options.no_api,
                kubeconfig: self.kubeconfig.clone(),
                context: self.context.clone(),
                node_name: options.node_name.clone(),
                scope: self.api_scope.parse().map_err(anyhow::Error::msg)?,
                run_id: self.run_id.clone().filter(|s| !s.is_empty()),
                qps: self.api_qps,
                burst: self.api_burst,
                max_bytes: self.api_max_bytes,
                max_retries: self.api_max_retries,
                start_jitter: self.start_jitter,
                ..Default::default()
            }
            .with_environment();
            let dns = netsnap_collector::dns::DnsOptions {
                from: self.dns_from.parse().map_err(anyhow::Error::msg)?,
                names: self.dns_name.clone(),
                timeout: secs("dns-timeout", self.dns_timeout)?,
                ..Default::default()
            };
            Ok((kube, dns))
        }
    }

    fn human(bytes: u64) -> String {
        const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
        let mut v = bytes as f64;
        let mut u = 0;
        while v >= 1024.0 && u < UNITS.len() - 1 {
            v /= 1024.0;
            u += 1;
        }
        format!("{v:.1} {}", UNITS[u])
    }

    pub fn main() -> ExitCode {
        let cli = Cli::parse();
        match run(cli) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("netsnap-collect: error: {e:#}");
                ExitCode::from(2)
            }
        }
    }

    fn run(cli: Cli) -> anyhow::Result<ExitCode> {
        let mut options = cli.options()?;
        if let Some(out) = &options.output
            && !options.force
            && out.as_os_str() != "-"
            && std::fs::symlink_metadata(out).is_ok()
        {
            anyhow::bail!(
                "{} already exists; refusing to overwrite it (use --force to replace it)",
                out.display()
            );
        }
        let (kube_opts, dns_opts) = cli.kube_dns(&options)?;
        let cluster_pass = kube_opts.scope == netsnap_bundle::k8s::ApiScope::Cluster;
        if cluster_pass {
            anyhow::ensure!(
                !options.no_api,
                "--api-scope cluster collects only from the API: it cannot be combined with --no-api"
            );
            // A cluster bundle describes no node.
            options.node_name = None;
            if options.output.is_none() {
                let label = match &kube_opts.run_id {
                    Some(id) => format!("cluster-{id}"),
                    None => "cluster".to_string(),
                };
                options.output = Some(PathBuf::from(netsnap_bundle::layout::default_bundle_name(
                    &label,
                    chrono::Utc::now(),
                )));
            }
        }
        for (key, value) in [
            ("kubeconfig", serde_json::json!(cli.kubeconfig)),
            ("context", serde_json::json!(cli.context)),
            ("dns_from", serde_json::json!(cli.dns_from)),
            ("dns_names", serde_json::json!(cli.dns_name)),
            ("dns_timeout", serde_json::json!(cli.dns_timeout)),
            ("api_scope", serde_json::json!(kube_opts.scope)),
            ("run_id", serde_json::json!(kube_opts.run_id)),
            ("api_qps", serde_json::json!(cli.api_qps)),
            ("api_burst", serde_json::json!(cli.api_burst)),
            ("api_max_bytes", serde_json::json!(cli.api_max_bytes)),
            ("api_max_retries", serde_json::json!(cli.api_max_retries)),
            (
                "start_jitter",
                serde_json::json!(cli.start_jitter.as_secs_f64()),
            ),
        ] {
            options.step_options.insert(key.to_string(), value);
        }
        // Before any thread exists, so every thread and child inherits it.
        let prio = netsnap_collector::exec::lower_priority();
        let level = match cli.verbose {
            0 => "warn",
            1 => "info",
            _ => "debug",
        };
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
            )
            .init();
        if let Err(e) = prio {
            tracing::warn!("could not lower priority: {e}");
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let progress = Progress::detect(cli.quiet);
        let outcome = runtime.block_on(async {
            let cancel = Cancel::new();
            let sig = cancel.clone();
            // Registered here, before any work starts, so an early SIGTERM is never
            // the default action (death without a bundle).
            use tokio::signal::unix::{SignalKind, signal};
            let mut int = signal(SignalKind::interrupt()).ok();
            let mut term = signal(SignalKind::terminate()).ok();
            // SIGHUP: the SSH session dropped; same as SIGTERM (a partial bundle).
            let mut hup = signal(SignalKind::hangup()).ok();
            tokio::spawn(async move {
                async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
                    match s.as_mut() {
                        Some(s) => {
                            s.recv().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                }
                tokio::select! {
                    _ = recv(&mut int) => {}
                    _ = recv(&mut term) => {}
                    _ = recv(&mut hup) => {}
                }
                sig.stop(StopReason::Interrupted);
                // Never eprintln! here: after a hangup stderr may be gone, and a failed
                // write must not panic the handler.
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "netsnap-collect: interrupted, writing a partial bundle (Ctrl-C again to abort)"
                );
                tokio::select! {
                    _ = recv(&mut int) => {}
                    _ = recv(&mut term) => {}
                    _ = recv(&mut hup) => {}
                }
                // exit() runs no destructor: remove the spool (0700, artifacts inside) first.
                netsnap_bundle::remove_live_spools();
                std::process::exit(130);
            });
            let (kube_step, pods_step) = netsnap_collector::kube::step::steps(kube_opts, dns_opts);
            // The cluster pass captures nothing node-local: only the API lists.
            let mut steps: Vec<std::sync::Arc<dyn netsnap_collector::Step>> = if cluster_pass {
                Vec::new()
            } else {
                netsnap_collector::default_steps()
            };
            steps.push(kube_step);
            if !cluster_pass {
                steps.push(pods_step);
            }
            netsnap_collector::collect(options, steps, cancel, progress).await
        })?;
        runtime.shutdown_timeout(Duration::from_millis(200));

        let m = &outcome.manifest;
        let count = |s: ArtifactStatus| m.artifacts.iter().filter(|a| a.status == s).count();
        let (ok, partial, failed, skipped, unavail) = (
            count(ArtifactStatus::Ok),
            count(ArtifactStatus::Partial),
            count(ArtifactStatus::Failed),
            count(ArtifactStatus::Skipped),
            count(ArtifactStatus::Unavailable),
        );
        eprintln!(
            "netsnap-collect: {} artifacts: {ok} ok, {partial} partial, {failed} failed, {unavail} unavailable, {skipped} skipped",
            m.artifacts.len()
        );
        let problems: Vec<_> = m
            .artifacts
            .iter()
            .filter(|a| matches!(a.status, ArtifactStatus::Failed | ArtifactStatus::Partial))
            .collect();
        for a in problems.iter().take(20) {
            let why = a
                .error
                .clone()
                .or_else(|| {
                    a.truncated
                        .as_ref()
                        .map(|t| format!("truncated ({:?})", t.reason))
                })
                .unwrap_or_default();
            let tool_said = a
                .stderr
                .as_deref()
                .and_then(|e| e.lines().find(|l| !l.trim().is_empty()))
                .map(|l| format!(" ({})", l.trim()))
                .unwrap_or_default();
            eprintln!("  warning: {} {:?}: {why}{tool_said}", a.path, a.status);
        }
        if problems.len() > 20 {
            eprintln!("  … and {} more (see manifest.json)", problems.len() - 20);
        }
        for (name, why) in &outcome.step_failures {
            eprintln!("  warning: step {name}: {why}");
        }
        match m.collection.outcome {
            CollectionOutcome::Complete => {}
            CollectionOutcome::DeadlineExceeded => {
                eprintln!("  warning: the --deadline cut the run short; the bundle is partial")
            }
            CollectionOutcome::Interrupted => {
                eprintln!("  warning: interrupted; the bundle is partial")
            }
        }
        eprintln!(
            "netsnap-collect: wrote {} ({})",
            outcome.path.display(),
            human(outcome.size)
        );
        println!("{}", outcome.path.display());
        Ok(ExitCode::SUCCESS)
    }
}

#[cfg(target_os = "linux")]
fn main() -> std::process::ExitCode {
    cli::main()
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("netsnap-collect runs on Linux only");
    std::process::exit(2);
}

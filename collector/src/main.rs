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
    use clap::{CommandFactory, Parser};
    use netsnap_bundle::{ArtifactStatus, CollectionOutcome};
    use netsnap_collector::sys::progress::Progress;
    use netsnap_collector::{Cancel, Options, StopReason};

    const AFTER_HELP: &str = "\
READ-ONLY: netsnap-collect never changes the node. It does not flush tables, \
load kernel modules or write sysctls, and it skips tools that would load a module \
(ipvsadm when the kernel has no IPVS, conntrack when nf_conntrack is not loaded). \
It runs at low CPU and I/O priority (nice 10, best-effort I/O 7).

A command that prints nothing for --timeout is cut (ruleset dumps and the conntrack \
table get 4x; one still printing runs on), every namespace read has that timeout, \
and the whole run a deadline (--deadline). Durations take a unit: 500ms, 60s, 2m, 1h \
(plain numbers are seconds). A step that fails or times out is recorded in the \
manifest with its reason and the rest still lands; if a ruleset, the conntrack table \
or an API list is incomplete, the outcome is `partial` and the summary says which \
option would get it. Ctrl-C, SIGTERM and SIGHUP write a valid partial bundle.

NO SECRETS: files are read inside the node's (or the pod's) root, regular files \
only; credentials in CNI and kubelet files (tokens, passwords, keys, certificates, \
kubeconfigs) are withheld and the manifest says where. An existing --output file \
is refused unless --force.

Exit codes:
  0  a bundle was written (it may be partial: see the warning summary on stderr)
  2  no bundle could be written (bad option, existing output without --force, unwritable output path)

Progress and logs go to stderr; stdout only receives the bundle path, or with `-o -` the finished bundle itself (spooled under $TMPDIR first, so stdout never gets half a bundle).";

    /// `--version`: the package version and the git revision it was built from.
    const VERSION: &str = concat!(
        env!("CARGO_PKG_VERSION"),
        " (git ",
        env!("NETSNAP_GIT_REV"),
        ")"
    );

    /// Captures the networking state of this Kubernetes node into one bundle.
    #[derive(Debug, Parser)]
    #[command(
        name = "netsnap-collect",
        version = VERSION,
        about,
        after_help = AFTER_HELP,
        args_conflicts_with_subcommands = true
    )]
    struct Cli {
        /// Instead of capturing: print completions or write man pages.
        #[command(subcommand)]
        command: Option<Extra>,
        /// Bundle to write, `-` for stdout [default: netsnap-<node>-<UTC>.tar.zst in the current directory].
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
        /// A command printing nothing this long is cut (ruleset dumps and the conntrack table: 4x); one namespace read.
        #[arg(
            long,
            default_value = "5s",
            value_name = "DURATION",
            allow_negative_numbers = true
        )]
        timeout: String,
        /// Deadline for the whole run.
        #[arg(
            long,
            default_value = "60s",
            value_name = "DURATION",
            allow_negative_numbers = true
        )]
        deadline: String,
        /// Time between the first and second sample of counters (conntrack stats, link stats).
        #[arg(
            long,
            default_value = "2s",
            value_name = "DURATION",
            allow_negative_numbers = true
        )]
        sample_interval: String,
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
        #[arg(long, default_value = "0s", value_name = "DURATION", value_parser = parse_jitter)]
        start_jitter: Duration,
        /// Pod namespaces to send DNS probes from: `all`, a number N, or `namespace/pod` (plus the host).
        #[arg(long, default_value = "3", value_name = "WHICH")]
        dns_from: String,
        /// Extra name to resolve from pods (repeatable), besides kubernetes.default.svc.<domain>.
        #[arg(long, value_name = "NAME")]
        dns_name: Vec<String>,
        /// Timeout of one DNS query attempt.
        #[arg(
            long,
            default_value = "2s",
            value_name = "DURATION",
            allow_negative_numbers = true
        )]
        dns_timeout: String,
        /// Write only a redacted bundle, safe to attach to a ticket: addresses
        /// anonymized prefix-preserving, names, UIDs, MACs and kube-proxy hashes
        /// replaced, secrets removed (docs/redaction.md). The map is written beside
        /// the bundle (--map), never inside it.
        #[arg(long)]
        redact: bool,
        /// With --redact: key file (64 hex digits, 32+ random bytes, or a map file)
        /// [default: the --map file's key, else a new random key]. Use one key for
        /// every node so the redacted bundles still join.
        #[arg(long, value_name = "KEYFILE", requires = "redact")]
        key: Option<PathBuf>,
        /// With --redact: the map to write or extend [default: BUNDLE.map.json; required with `-o -`].
        #[arg(long, value_name = "MAP.json", requires = "redact")]
        map: Option<PathBuf>,
        /// No progress lines (warnings and the summary still print).
        #[arg(short, long)]
        quiet: bool,
        /// More logging (-v info, -vv debug).
        #[arg(short, long, action = clap::ArgAction::Count)]
        verbose: u8,
    }

    /// Commands besides the capture itself.
    #[derive(Debug, clap::Subcommand)]
    enum Extra {
        /// Print a shell completion script, e.g. `netsnap-collect completions bash > /etc/bash_completion.d/netsnap-collect`.
        Completions {
            /// Shell to complete for.
            #[arg(value_enum)]
            shell: netsnap_clidoc::Shell,
        },
        /// Write the man pages into DIR (scripts/gen-docs does this for docs/man/).
        #[command(hide = true)]
        Man {
            /// Directory to write `netsnap-collect*.1` into.
            dir: PathBuf,
        },
    }

    fn extra(command: &Extra) -> anyhow::Result<ExitCode> {
        match command {
            Extra::Completions { shell } => {
                let script =
                    netsnap_clidoc::completions(&mut Cli::command(), "netsnap-collect", *shell);
                netsnap_clidoc::write_stdout(&script).context("writing to stdout")?;
            }
            Extra::Man { dir } => {
                netsnap_clidoc::write_man_pages(&Cli::command(), dir)
                    .with_context(|| format!("writing man pages into {}", dir.display()))?;
            }
        }
        Ok(ExitCode::SUCCESS)
    }

    /// `--start-jitter`: a duration as everywhere else, or zero for no jitter.
    fn parse_jitter(v: &str) -> Result<Duration, String> {
        let number = v.trim().trim_end_matches(|c: char| c.is_ascii_alphabetic());
        if number.parse::<f64>() == Ok(0.0) {
            return Ok(Duration::ZERO);
        }
        netsnap_collector::options::parse_duration(v)
    }

    fn secs(name: &str, v: &str) -> anyhow::Result<Duration> {
        netsnap_collector::options::parse_duration(v).map_err(|e| anyhow::anyhow!("--{name}: {e}"))
    }

    impl Cli {
        fn options(&self) -> anyhow::Result<Options> {
            let cap = |v: u64| (v > 0).then_some(v);
            Ok(Options {
                output: self.output.clone(),
                no_api: self.no_api,
                node_name: self.node_name.clone().filter(|s| !s.is_empty()),
                host_root: self.host_root.clone(),
                timeout: secs("timeout", &self.timeout)?,
                deadline: secs("deadline", &self.deadline)?,
                sample_interval: secs("sample-interval", &self.sample_interval)?,
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
                timeout: secs("dns-timeout", &self.dns_timeout)?,
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
        if let Some(command) = &cli.command {
            return extra(command);
        }
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
        let spool = match options.output.as_deref() {
            Some(p) if netsnap_collector::stdout::is_stdout(p) => {
                let spool = netsnap_collector::stdout::StdoutSpool::new().with_context(|| {
                    format!(
                        "-o -: cannot create a spool directory in {} (set TMPDIR to a writable directory)",
                        std::env::temp_dir().display()
                    )
                })?;
                options.output = Some(spool.bundle_path());
                Some(spool)
            }
            _ => None,
        };
        // --redact: collect into a private spool directory beside the output (the
        // next run removes it if this one is killed), redact from there, and only
        // the redacted bundle reaches the output.
        let redaction = if cli.redact {
            let user_out = options.output.clone();
            let dir = match user_out.as_deref().and_then(|p| p.parent()) {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            let map_path = match (&cli.map, &user_out, &spool) {
                (Some(m), _, _) => m.clone(),
                (None, _, Some(_)) => {
                    anyhow::bail!("--redact with -o - needs --map: the map cannot go to stdout")
                }
                (None, Some(out), None) => netsnap_redact::map::default_map_path(out),
                // Known once the redacted node name is (the default bundle name).
                (None, None, None) => PathBuf::new(),
            };
            let known_map = (!map_path.as_os_str().is_empty()).then_some(map_path.as_path());
            let (key, existing) = netsnap_redact::map::resolve_key(cli.key.as_deref(), known_map)?;
            let tmp = tempfile::Builder::new()
                .prefix(&format!(
                    "{}{}-",
                    netsnap_bundle::SPOOL_PREFIX,
                    std::process::id()
                ))
                .suffix(netsnap_bundle::SPOOL_SUFFIX)
                .tempdir_in(&dir)
                .with_context(|| format!("--redact: cannot create a spool in {}", dir.display()))?;
            options.output = Some(tmp.path().join("unredacted.tar.zst"));
            Some((tmp, user_out, map_path, key, existing))
        } else {
            None
        };
        let (kube_opts, dns_opts) = cli.kube_dns(&options)?;
        options.kube = kube_opts;
        options.dns = dns_opts;
        let cluster_pass = options.kube.scope == netsnap_bundle::k8s::ApiScope::Cluster;
        if cluster_pass {
            anyhow::ensure!(
                !options.no_api,
                "--api-scope cluster collects only from the API: it cannot be combined with --no-api"
            );
            // A cluster bundle describes no node.
            options.node_name = None;
            if options.output.is_none() {
                let label = match &options.kube.run_id {
                    Some(id) => format!("cluster-{id}"),
                    None => "cluster".to_string(),
                };
                options.output = Some(PathBuf::from(netsnap_bundle::layout::default_bundle_name(
                    &label,
                    chrono::Utc::now(),
                )));
            }
        }
        // Before any thread exists, so every thread and child inherits it.
        let prio = netsnap_collector::sys::exec::lower_priority();
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
            // The cluster pass captures nothing node-local: only the API lists.
            let plan = netsnap_collector::steps::plan(&options);
            netsnap_collector::collect(options, plan, cancel, progress).await
        })?;
        runtime.shutdown_timeout(Duration::from_millis(200));
        let mut outcome = outcome;
        if let Some((tmp, user_out, map_path, key, existing)) = redaction {
            let redacted = tmp.path().join("redacted.tar.zst");
            let done = netsnap_redact::redact_bundle(
                &outcome.path,
                &redacted,
                &netsnap_redact::RedactOptions {
                    key,
                    tool: netsnap_bundle::ToolInfo {
                        name: "netsnap-collect".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                    },
                    keep_unredactable: false,
                },
            )
            .context("--redact: redacting the bundle")?;
            let m = &done.manifest;
            let final_out = user_out.unwrap_or_else(|| {
                PathBuf::from(netsnap_bundle::layout::default_bundle_name(
                    m.node.name.as_deref().unwrap_or(&m.node.hostname),
                    m.collection.started_at,
                ))
            });
            let map_path = if map_path.as_os_str().is_empty() {
                netsnap_redact::map::default_map_path(&final_out)
            } else {
                map_path
            };
            std::fs::rename(&redacted, &final_out)
                .with_context(|| format!("--redact: writing {}", final_out.display()))?;
            netsnap_redact::map::write_map(&map_path, &done.map, existing)?;
            eprintln!(
                "netsnap-collect: redacted (key {}): the map is {}; keep it, attach only the bundle",
                done.map.key_fingerprint,
                map_path.display()
            );
            outcome.size = std::fs::metadata(&final_out).map(|m| m.len()).unwrap_or(0);
            outcome.path = final_out;
            outcome.manifest = done.manifest;
            // Dropping `tmp` removes the unredacted bundle.
            drop(tmp);
        }

        let m = &outcome.manifest;
        let count = |s: ArtifactStatus| m.artifacts.iter().filter(|a| a.status == s).count();
        let (ok, partial, failed, skipped, unavail) = (
            count(ArtifactStatus::Ok),
            count(ArtifactStatus::Partial),
            count(ArtifactStatus::Failed),
            count(ArtifactStatus::Skipped),
            count(ArtifactStatus::Unavailable),
        );
        // What the analysis cannot do without comes first: it decides whether the bundle answers.
        let incomplete: Vec<&str> = m
            .collection
            .notes
            .iter()
            .filter_map(|n| n.strip_prefix("incomplete: "))
            .collect();
        if !incomplete.is_empty() {
            eprintln!(
                "netsnap-collect: PARTIAL bundle: {} core artifact(s) incomplete; the analysis will not judge what needs them",
                incomplete.len()
            );
            for line in &incomplete {
                eprintln!("  missing: {line}");
            }
        }
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
            CollectionOutcome::Complete | CollectionOutcome::Partial => {}
            CollectionOutcome::DeadlineExceeded => {
                eprintln!("  warning: the --deadline cut the run short; the bundle is partial")
            }
            CollectionOutcome::Interrupted => {
                eprintln!("  warning: interrupted; the bundle is partial")
            }
        }
        if let Some(spool) = spool {
            let sent = spool
                .send(&mut std::io::stdout().lock())
                .context("writing the bundle to stdout")?;
            eprintln!(
                "netsnap-collect: wrote the bundle to stdout ({})",
                human(sent)
            );
            return Ok(ExitCode::SUCCESS);
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

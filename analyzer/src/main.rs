//! `netsnap-analyze`: thin CLI over the `netsnap_analyzer` library.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use netsnap_analyzer::{analyze, exit, facts, inert, inspect, report, rules};
use netsnap_bundle::{Bundle, ReaderOptions};

/// `--version`: the package version and the git revision it was built from.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("NETSNAP_GIT_REV"),
    ")"
);

/// Reads netsnap bundles offline and explains what is wrong with a node's networking.
#[derive(Parser, Debug)]
#[command(name = "netsnap-analyze", version = VERSION, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log verbosity on stderr (-v info, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Colour: auto (on a terminal, unless NO_COLOR is set), always, never. Every command
    /// takes it; bundle text is made inert whatever the choice.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    color: ColorChoice,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print a bundle's manifest: what was collected, what failed and why.
    Manifest {
        /// Bundle: .tar.zst, .tar, or an extracted directory.
        bundle: PathBuf,
        #[command(flatten)]
        open: OpenArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t = DataFormat::Text)]
        format: DataFormat,
    },
    /// Show one view of a bundle like the live command would (exit 3: the bundle lacks its data).
    Inspect {
        /// Bundle: .tar.zst, .tar, or an extracted directory.
        bundle: PathBuf,
        #[command(flatten)]
        open: OpenArgs,
        #[command(flatten)]
        args: Box<inspect::InspectArgs>,
    },
    /// Analyze bundles (one per node) and report findings with evidence.
    ///
    /// The node bundles of a fan-out run (--api-scope node) are joined with the
    /// cluster bundle of the same run id when it is given too. With two or more
    /// node bundles the report starts with a per-node summary and adds the
    /// cluster rules (pod CIDRs and pod IPs shared by nodes, routes to another
    /// node's pods, kube-proxy skew, DNS failing on some nodes only). The same
    /// bundle given twice is refused.
    ///
    /// Exit status: 0 when no finding is at or above --fail-on, 1 when one is,
    /// 2 on usage errors, unreadable bundles, invalid rules or a rule error (a rule
    /// that failed while running).
    Analyze {
        /// Bundles: .tar.zst, .tar, extracted directories, or directories of bundles.
        #[arg(required = true)]
        bundles: Vec<PathBuf>,
        #[command(flatten)]
        open: OpenArgs,
        #[command(flatten)]
        rules: RuleArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
        format: ReportFormat,
        /// Exit 1 when a finding is at or above this severity.
        #[arg(long, value_enum, default_value_t = FailOn::Error)]
        fail_on: FailOn,
    },
    /// Compare two bundles semantically: findings new, resolved or changed; Services and
    /// their dataplane per port; pods, netns and veths; sysctls and MTUs; conntrack
    /// pressure; rule counts; the kube-proxy mode.
    ///
    /// A is the "before" bundle (or the node that works), B the "after" one (or the node
    /// that does not). Exit status: 0 when B is not worse, 1 when B has a new finding (or a
    /// higher severity) at or above --fail-on, 2 on usage errors or unreadable bundles.
    Diff {
        /// The "before" bundle (or the reference node's).
        a: PathBuf,
        /// The "after" bundle (or the other node's).
        b: PathBuf,
        #[command(flatten)]
        open: OpenArgs,
        #[command(flatten)]
        rules: RuleArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
        format: ReportFormat,
        /// Exit 1 when B has a new or worsened finding at or above this severity.
        #[arg(long, value_enum, default_value_t = FailOn::Info)]
        fail_on: FailOn,
    },
    /// Walk one packet through the node's dataplane, offline: pod routes, veth, netfilter
    /// hooks in order (kube-proxy's chains with every endpoint and its probability),
    /// routing after DNAT, masquerade, delivery; plus the conntrack entries of the flow.
    ///
    /// One line per hop with its evidence (path:line); matches the bundle cannot decide
    /// fork into branches with their assumptions. Exit 0, or 2 on usage errors.
    Trace {
        /// Bundle: .tar.zst, .tar, or an extracted directory.
        bundle: PathBuf,
        /// Source: namespace/pod, a pod name, or IP[:PORT].
        #[arg(long)]
        from: String,
        /// Destination: VIP:PORT[/PROTO], IP:PORT[/PROTO], or namespace/pod[:PORT[/PROTO]].
        #[arg(long)]
        to: String,
        #[command(flatten)]
        open: OpenArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
        format: ReportFormat,
    },
    /// Turn a sosreport (directory or tarball) or a directory of hand-collected command
    /// outputs into a bundle (see docs/import.md for the file names).
    Import {
        /// sosreport directory or tarball, or a directory of outputs named after their commands.
        src: PathBuf,
        /// Bundle to write (.tar.zst).
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Redact a bundle so it can be attached to a ticket: addresses anonymized
    /// prefix-preserving, names, UIDs, MACs and kube-proxy hashes replaced,
    /// secrets removed; every finding stays the same (docs/redaction.md).
    ///
    /// The map (original ↔ replacement, and the key) is written beside the
    /// output, never inside it: the owner keeps it to read reports back with
    /// `unredact`. Redact several bundles into the same --map (or with the same
    /// --key) and they still join in one analysis.
    Redact {
        /// Bundle: .tar.zst, .tar, or an extracted directory.
        bundle: PathBuf,
        #[command(flatten)]
        open: OpenArgs,
        /// Redacted bundle to write (.tar.zst).
        #[arg(short, long)]
        output: PathBuf,
        /// Map file to write or extend [default: OUTPUT.map.json]. An existing map
        /// lends its key when --key is not given.
        #[arg(long, value_name = "MAP.json")]
        map: Option<PathBuf>,
        /// Key file: 64 hex digits, at least 32 random bytes, or a map file
        /// [default: the existing map's key, else a new random key].
        #[arg(long, value_name = "KEYFILE")]
        key: Option<PathBuf>,
        /// Keep artifacts that cannot be redacted (not text, malformed JSON) as they are,
        /// marked in the manifest, instead of withholding them. They may leak.
        #[arg(long)]
        keep_unredactable: bool,
    },
    /// Translate a report on a redacted bundle (text, JSON or Markdown) back to the
    /// original names and addresses with the owner's map; prints to stdout.
    Unredact {
        /// Report file, or `-` for stdin.
        report: PathBuf,
        /// The map written by `redact`.
        #[arg(long, value_name = "MAP.json")]
        map: PathBuf,
    },
    /// Print the fact document rules are evaluated over (JSON).
    Facts {
        /// Bundle (not needed with --docs, --schema or --cluster).
        #[arg(required_unless_present_any = ["docs", "schema", "cluster"])]
        bundle: Option<PathBuf>,
        /// Print the cluster fact document that rules with `scope: cluster` see, of these
        /// node bundles (two or more, or a directory of them) instead.
        #[arg(long, num_args = 1.., value_name = "BUNDLE", conflicts_with_all = ["bundle", "docs", "schema"])]
        cluster: Vec<PathBuf>,
        #[command(flatten)]
        open: OpenArgs,
        /// Print docs/facts.md (generated from the fact types) instead.
        #[arg(long)]
        docs: bool,
        /// Print the JSON schema of the fact document instead.
        #[arg(long, conflicts_with = "docs")]
        schema: bool,
    },
    /// List, explain and test rules.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Print a shell completion script, e.g. `netsnap-analyze completions bash > /etc/bash_completion.d/netsnap-analyze`.
    Completions {
        /// Shell to complete for.
        #[arg(value_enum)]
        shell: netsnap_clidoc::Shell,
    },
    /// Write the man pages into DIR (scripts/gen-docs does this for docs/man/).
    #[command(hide = true)]
    Man {
        /// Directory to write `netsnap-analyze*.1` into.
        dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum RulesCommand {
    /// List the rules (built-in plus --rules DIR).
    List {
        #[command(flatten)]
        rules: RuleArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t = DataFormat::Text)]
        format: DataFormat,
    },
    /// Show one rule: what it checks, its condition, parameters and references.
    Explain {
        /// Rule id.
        id: String,
        #[command(flatten)]
        rules: RuleArgs,
    },
    /// Run the test cases inside rule files (the built-in rules, or the rules in DIR).
    Test {
        /// Directory of rule files to test instead of the built-in rules.
        dir: Option<PathBuf>,
        /// Print every case, not only failures.
        #[arg(long)]
        all: bool,
    },
    /// Print docs/rules.md (generated from the rules).
    Docs,
}

/// Rule selection options.
#[derive(clap::Args, Debug, Clone)]
struct RuleArgs {
    /// Add (or override, by id) rules from the YAML files in this directory.
    #[arg(long = "rules", value_name = "DIR")]
    dirs: Vec<PathBuf>,
    /// Do not run this rule (repeatable).
    #[arg(long, value_name = "ID")]
    disable: Vec<String>,
    /// Override a rule parameter, e.g. conntrack-near-max.ratio=0.95 (repeatable).
    #[arg(long, value_name = "ID.PARAM=VALUE")]
    set: Vec<String>,
}

impl RuleArgs {
    fn load(&self) -> anyhow::Result<rules::RuleSet> {
        Ok(rules::load(&rules::RuleOptions {
            no_builtin: false,
            dirs: self.dirs.clone(),
            disable: self.disable.clone(),
            set: self.set.clone(),
        })?)
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum ReportFormat {
    Text,
    Json,
    Markdown,
    /// One self-contained HTML file (no script, no external resource).
    Html,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum FailOn {
    Info,
    Warning,
    Error,
    Critical,
}

impl From<FailOn> for rules::Severity {
    fn from(f: FailOn) -> Self {
        match f {
            FailOn::Info => rules::Severity::Info,
            FailOn::Warning => rules::Severity::Warning,
            FailOn::Error => rules::Severity::Error,
            FailOn::Critical => rules::Severity::Critical,
        }
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum ColorChoice {
    Auto,
    Always,
    Never,
}

/// The width tables fit: `COLUMNS` when set, else the terminal's when stdout is one; a pipe
/// gets every cell whole.
fn table_width() -> Option<usize> {
    if let Some(c) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse::<usize>().ok())
    {
        return Some(c);
    }
    terminal_size::terminal_size_of(std::io::stdout()).map(|(w, _)| usize::from(w.0))
}

/// Whether to colour a stream: `auto` colours a terminal unless `NO_COLOR` is set.
fn use_color(choice: ColorChoice, is_terminal: bool) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && is_terminal
        }
    }
}

fn json_line<T: serde::Serialize>(v: &T) -> anyhow::Result<String> {
    let mut s = serde_json::to_string_pretty(v).context("serializing JSON")?;
    s.push('\n');
    Ok(s)
}

/// Options for opening a bundle.
#[derive(clap::Args, Debug, Clone)]
struct OpenArgs {
    /// Skip the sha256 check of each artifact against the manifest.
    #[arg(long)]
    no_verify: bool,
    /// Refuse bundles that expand to more than this many bytes (decompression-bomb guard;
    /// 1 GiB holds about 4 million conntrack entries).
    #[arg(long, default_value_t = netsnap_bundle::reader::DEFAULT_MAX_UNPACKED_BYTES)]
    max_unpacked_size: u64,
}

impl OpenArgs {
    fn open(&self, path: &PathBuf) -> anyhow::Result<Bundle> {
        let options = ReaderOptions {
            verify: !self.no_verify,
            max_unpacked_bytes: self.max_unpacked_size,
            ..ReaderOptions::default()
        };
        // The bundle error already names the problem; no extra context needed.
        Ok(Bundle::open(path, &options)?)
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum DataFormat {
    Text,
    Json,
}

fn init_tracing(verbose: u8, color: ColorChoice) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("NETSNAP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .with_ansi(use_color(
            color,
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
        ))
        .try_init();
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    let color = cli.color;
    match cli.command {
        Command::Manifest {
            bundle,
            open,
            format,
        } => {
            let b = open.open(&bundle)?;
            let coverage = facts::coverage::parse_coverage(&b);
            let text = match format {
                DataFormat::Text => {
                    report::manifest::render_text(b.manifest())
                        + &report::coverage::render_text(&coverage)
                }
                DataFormat::Json => {
                    let mut doc = serde_json::to_value(report::manifest::summary(&b))
                        .context("serializing manifest summary")?;
                    report::coverage::add_to_json(&mut doc, &coverage);
                    json_line(&doc)?
                }
            };
            write_stdout(&text)?;
            Ok(exit::OK)
        }
        Command::Inspect {
            bundle,
            open,
            mut args,
        } => {
            args.width = table_width();
            let b = open.open(&bundle)?;
            match inspect::run(&b, &args)? {
                inspect::Outcome::Rendered(text) => {
                    write_stdout(&text)?;
                    Ok(exit::OK)
                }
                inspect::Outcome::NoData(line) => {
                    eprintln!("netsnap-analyze: {line}");
                    Ok(exit::NO_DATA)
                }
            }
        }
        Command::Analyze {
            bundles,
            open,
            rules,
            format,
            fail_on,
        } => {
            // A directory of bundles stands for the bundles in it (one per node).
            let bundles = netsnap_analyzer::inputs::expand(&bundles)?;
            // Compiling the rules' CEL takes tens of milliseconds: do it while the bundles
            // are extracted. A rule error still wins over a bundle error, as before.
            let (set, opened) = std::thread::scope(|scope| {
                let set = scope.spawn(|| rules.load());
                let opened: Vec<anyhow::Result<(String, Bundle)>> = bundles
                    .iter()
                    .map(|path| {
                        // The bundle error names the path already.
                        open.open(path).map(|b| (path.display().to_string(), b))
                    })
                    .collect();
                let set = set.join().unwrap_or_else(|_| {
                    Err(anyhow::anyhow!("loading the rules failed unexpectedly"))
                });
                (set, opened)
            });
            let set = set?;
            let opened = opened.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
            // Node bundles of a fan-out run take the cluster lists from its cluster bundle.
            let (opened, joined) = netsnap_analyzer::join::join_runs(opened)?;
            for (node, cluster) in &joined.joined {
                tracing::info!("{node}: cluster lists from {cluster}");
            }
            let refs: Vec<(String, &Bundle)> = opened.iter().map(|(p, b)| (p.clone(), b)).collect();
            let rep = analyze::analyze(&refs, &set).context("evaluating rules")?;
            let text = match format {
                ReportFormat::Text => report::text::render_text(
                    &rep,
                    use_color(color, std::io::IsTerminal::is_terminal(&std::io::stdout())),
                ),
                ReportFormat::Json => json_line(&rep)?,
                ReportFormat::Markdown => report::markdown::render_markdown(&rep),
                ReportFormat::Html => report::html::render_html(&rep),
            };
            write_stdout(&text)?;
            // A rule that failed gave no answer: fail closed, whatever was found.
            Ok(if !rep.rule_errors.is_empty() {
                eprintln!(
                    "netsnap-analyze: error: {} rule error(s): see \"Rule errors\" in the report",
                    rep.rule_errors.len()
                );
                exit::ERROR
            } else if rep.fails(fail_on.into()) {
                exit::FINDINGS
            } else {
                exit::OK
            })
        }
        Command::Trace {
            bundle,
            from,
            to,
            open,
            format,
        } => {
            let b = open
                .open(&bundle)
                .with_context(|| format!("opening {}", bundle.display()))?;
            let facts = facts::Facts::from_bundle(&b);
            let (src, sport) = netsnap_analyzer::trace::resolve_from(&facts, &from)
                .with_context(|| format!("--from {from}"))?;
            let dst = netsnap_analyzer::trace::resolve_to(&facts, &to)
                .with_context(|| format!("--to {to}"))?;
            let input = netsnap_analyzer::trace::load(&b, &facts, &src, &dst);
            let t = netsnap_analyzer::trace::trace(&facts, &input, src, sport, dst);
            let text = match format {
                ReportFormat::Text => report::trace::render_text(&t),
                ReportFormat::Json => json_line(&t)?,
                ReportFormat::Markdown => report::trace::render_markdown(&t),
                ReportFormat::Html => report::html::render_preformatted(
                    &format!("netsnap trace {from} -> {to}"),
                    &report::trace::render_text(&t),
                ),
            };
            write_stdout(&text)?;
            Ok(exit::OK)
        }
        Command::Diff {
            a,
            b,
            open,
            rules,
            format,
            fail_on,
        } => {
            let set = rules.load()?;
            let mut sides = Vec::new();
            for path in [&a, &b] {
                let bundle = open
                    .open(path)
                    .with_context(|| format!("opening {}", path.display()))?;
                let name = path.display().to_string();
                let (rep, mut facts) =
                    analyze::analyze_keeping_facts(&[(name.clone(), &bundle)], &set)
                        .context("evaluating rules")?;
                let facts = facts.pop().context("no facts for the bundle")?;
                sides.push((name, rep, facts));
            }
            let input = |i: usize| netsnap_analyzer::diff::Input {
                path: &sides[i].0,
                facts: &sides[i].2,
                findings: &sides[i].1.findings,
                not_evaluated: &sides[i].1.not_evaluated,
            };
            let d = netsnap_analyzer::diff::diff(input(0), input(1), fail_on.into());
            let text = match format {
                ReportFormat::Text => report::diff::render_text(&d),
                ReportFormat::Json => json_line(&d)?,
                ReportFormat::Markdown => report::diff::render_markdown(&d),
                ReportFormat::Html => report::html::render_preformatted(
                    &format!("netsnap diff {} {}", a.display(), b.display()),
                    &report::diff::render_text(&d),
                ),
            };
            write_stdout(&text)?;
            Ok(if d.worse { exit::FINDINGS } else { exit::OK })
        }
        Command::Facts {
            bundle,
            open,
            docs,
            schema,
            cluster,
        } => {
            let text = if !cluster.is_empty() {
                let paths = netsnap_analyzer::inputs::expand(&cluster)?;
                let opened = paths
                    .iter()
                    .map(|p| {
                        open.open(p)
                            .with_context(|| format!("opening {}", p.display()))
                            .map(|b| (p.display().to_string(), b))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let (opened, _) = netsnap_analyzer::join::join_runs(opened)?;
                anyhow::ensure!(
                    opened.len() >= 2,
                    "--cluster needs two or more node bundles, got {}",
                    opened.len()
                );
                let refs: Vec<(String, &Bundle)> =
                    opened.iter().map(|(p, b)| (p.clone(), b)).collect();
                json_line(&facts::cluster::from_bundles(&refs))?
            } else if docs {
                facts::docs::render_markdown()
            } else if schema {
                json_line(&schemars::schema_for!(facts::Facts))?
            } else {
                let path = bundle.context("a bundle is required")?;
                let b = open.open(&path)?;
                json_line(&facts::Facts::from_bundle(&b))?
            };
            write_stdout(&text)?;
            Ok(exit::OK)
        }
        Command::Rules { command } => run_rules(command),
        Command::Completions { shell } => {
            let script = netsnap_clidoc::completions(&mut Cli::command(), "netsnap-analyze", shell);
            netsnap_clidoc::write_stdout(&script).context("writing to stdout")?;
            Ok(exit::OK)
        }
        Command::Man { dir } => {
            netsnap_clidoc::write_man_pages(&Cli::command(), &dir)
                .with_context(|| format!("writing man pages into {}", dir.display()))?;
            Ok(exit::OK)
        }
        Command::Redact {
            bundle,
            open,
            output,
            map,
            key,
            keep_unredactable,
        } => {
            let map_path = map.unwrap_or_else(|| netsnap_redact::map::default_map_path(&output));
            if same_file(&bundle, &output) || same_file(&bundle, &map_path) || output == map_path {
                anyhow::bail!("the output and the map must not overwrite the input or each other");
            }
            let (key, existing) =
                netsnap_redact::map::resolve_key(key.as_deref(), Some(&map_path))?;
            let b = open
                .open(&bundle)
                .with_context(|| format!("opening {}", bundle.display()))?;
            let options = netsnap_redact::RedactOptions {
                key,
                tool: netsnap_bundle::ToolInfo {
                    name: "netsnap-analyze".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                },
                keep_unredactable,
            };
            let done = netsnap_redact::redact_opened(&b, &output, &options)?;
            netsnap_redact::map::write_map(&map_path, &done.map, existing)?;
            let r = done.manifest.redaction.as_ref();
            if done.already_redacted {
                eprintln!(
                    "netsnap-analyze: {} was already redacted with this key; copied unchanged to {}",
                    bundle.display(),
                    done.path.display()
                );
            } else {
                eprintln!(
                    "netsnap-analyze: wrote {} (key {}): {} names, {} addresses, {} MACs, {} chain hashes replaced; {} secret value(s) removed, {} artifact(s) withheld; map: {}",
                    done.path.display(),
                    done.map.key_fingerprint,
                    done.map.names.len(),
                    done.map.addrs.len(),
                    done.map.macs.len(),
                    done.map.hashes.len(),
                    r.map_or(0, |r| r.secrets_removed.len()),
                    r.map_or(0, |r| r.withheld.len()),
                    map_path.display()
                );
            }
            Ok(exit::OK)
        }
        Command::Unredact { report, map } => {
            let bytes =
                std::fs::read(&map).with_context(|| format!("reading {}", map.display()))?;
            let m = netsnap_redact::Map::parse(&bytes)
                .with_context(|| format!("reading {}", map.display()))?;
            let text = if report.as_os_str() == "-" {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                    .context("reading stdin")?;
                s
            } else {
                std::fs::read_to_string(&report)
                    .with_context(|| format!("reading {}", report.display()))?
            };
            write_stdout(&m.unredact(&text))?;
            Ok(exit::OK)
        }
        Command::Import { src, output } => {
            let s = netsnap_analyzer::import::import(&src, &output)?;
            eprintln!(
                "netsnap-analyze: wrote {} from {:?} {}: {} artifact(s) imported, {} not in the source",
                s.bundle.display(),
                s.kind,
                src.display(),
                s.imported.len(),
                s.missing.len()
            );
            Ok(exit::OK)
        }
    }
}

fn run_rules(command: RulesCommand) -> anyhow::Result<i32> {
    match command {
        RulesCommand::List { rules, format } => {
            let set = rules.load()?;
            let text = match format {
                DataFormat::Text => rules::docs::render_list(&set),
                DataFormat::Json => {
                    let specs: Vec<_> = set.rules().iter().map(|r| &r.spec).collect();
                    json_line(&specs)?
                }
            };
            write_stdout(&text)?;
            Ok(exit::OK)
        }
        RulesCommand::Explain { id, rules } => {
            let set = rules.load()?;
            let rule = set
                .get(&id)
                .with_context(|| format!("no rule {id:?} (see `netsnap-analyze rules list`)"))?;
            write_stdout(&rules::docs::render_explain(rule))?;
            Ok(exit::OK)
        }
        RulesCommand::Test { dir, all } => {
            let set = rules::load(&rules::RuleOptions {
                no_builtin: dir.is_some(),
                dirs: dir.into_iter().collect(),
                ..rules::RuleOptions::default()
            })?;
            let results = rules::testing::run_all(&set);
            let mut out = String::new();
            let failed = results.iter().filter(|r| !r.passed).count();
            let errors = results.iter().filter(|r| r.rule_error).count();
            for r in &results {
                if r.passed && all {
                    out.push_str(&format!("ok    {} / {}\n", r.rule_id, r.case));
                } else if r.rule_error {
                    out.push_str(&format!("ERROR {} / {}: {}\n", r.rule_id, r.case, r.detail));
                } else if !r.passed {
                    out.push_str(&format!("FAIL  {} / {}: {}\n", r.rule_id, r.case, r.detail));
                }
            }
            out.push_str(&format!(
                "{} rule(s), {} case(s), {} failed ({} rule error(s))\n",
                set.rules().len(),
                results.len(),
                failed,
                errors
            ));
            write_stdout(&out)?;
            // A rule error is the rule's own fault (exit 2, like a rule that fails to load);
            // a failed expectation is a test failure (exit 1).
            Ok(if errors > 0 {
                exit::ERROR
            } else if failed > 0 {
                exit::FINDINGS
            } else {
                exit::OK
            })
        }
        RulesCommand::Docs => {
            let set = rules::RuleSet::builtin()?;
            write_stdout(&rules::docs::render_markdown(&set))?;
            Ok(exit::OK)
        }
    }
}

/// True when both paths name the same existing file.
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to stdout"),
    }
}

/// The error and its causes on one line, each cause once: many errors already quote
/// their cause in their own message (`cannot read X: No such file`), and printing the
/// chain again would say it twice.
fn error_line(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if msg.contains(&text) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&text);
    }
    msg
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::ERROR
            } else {
                exit::OK
            };
            let _ = e.print();
            return ExitCode::from(code as u8);
        }
    };
    init_tracing(cli.verbose, cli.color);
    // SIGINT, SIGTERM, SIGHUP: remove the extraction directories (a bundle may be a few
    // GiB once unpacked) and exit. Without it the process dies with them left in TMPDIR.
    if let Err(e) = ctrlc::set_handler(|| {
        netsnap_bundle::reader::remove_extractions_and_block();
        eprintln!("netsnap-analyze: interrupted");
        std::process::exit(exit::INTERRUPTED);
    }) {
        tracing::warn!("cannot install the signal handler: {e}");
    }
    match run(cli) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            // The message may quote the bundle (a path, a JSON error): keep it inert.
            let msg = error_line(&e);
            eprintln!("netsnap-analyze: error: {}", inert::terminal(&msg));
            ExitCode::from(exit::ERROR as u8)
        }
    }
}

//! `netsnap-analyze`: thin CLI over the `netsnap_analyzer` library.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use netsnap_analyzer::{exit, facts, inert, inspect, report, rules};
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
    /// cluster bundle of the same run id when it is given too.
    ///
    /// Exit status: 0 when no finding is at or above --fail-on, 1 when one is,
    /// 2 on usage errors, unreadable bundles or invalid rules.
    Analyze {
        /// Bundles: .tar.zst, .tar, or extracted directories.
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
        /// Colour: auto (on a terminal, unless NO_COLOR is set), always, never.
        #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
        color: ColorChoice,
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
    /// Print the fact document rules are evaluated over (JSON).
    Facts {
        /// Bundle (not needed with --docs or --schema).
        #[arg(required_unless_present_any = ["docs", "schema"])]
        bundle: Option<PathBuf>,
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

fn use_color(choice: ColorChoice) -> bool {
    use std::io::IsTerminal;
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::io::stdout().is_terminal()
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

fn init_tracing(verbose: u8) {
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
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .try_init();
}

fn run(cli: Cli) -> anyhow::Result<i32> {
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
        Command::Inspect { bundle, open, args } => {
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
            color,
        } => {
            // Compiling the rules' CEL takes tens of milliseconds: do it while the bundles
            // are extracted. A rule error still wins over a bundle error, as before.
            let (set, opened) = std::thread::scope(|scope| {
                let set = scope.spawn(|| rules.load());
                let opened: Vec<anyhow::Result<(String, Bundle)>> = bundles
                    .iter()
                    .map(|path| {
                        open.open(path)
                            .with_context(|| format!("opening {}", path.display()))
                            .map(|b| (path.display().to_string(), b))
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
            let rep = report::analysis::analyze(&refs, &set).context("evaluating rules")?;
            let text = match format {
                ReportFormat::Text => report::analysis::render_text(&rep, use_color(color)),
                ReportFormat::Json => json_line(&rep)?,
                ReportFormat::Markdown => report::analysis::render_markdown(&rep),
            };
            write_stdout(&text)?;
            Ok(if rep.fails(fail_on.into()) {
                exit::FINDINGS
            } else {
                exit::OK
            })
        }
        Command::Facts {
            bundle,
            open,
            docs,
            schema,
        } => {
            let text = if docs {
                facts::docs::render_markdown()
            } else if schema {
                json_line(&schemars::schema_for!(facts::Facts))?
            } else {
                let path = bundle.context("a bundle is required")?;
                let b = open
                    .open(&path)
                    .with_context(|| format!("opening {}", path.display()))?;
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
            for r in &results {
                if r.passed && all {
                    out.push_str(&format!("ok    {} / {}\n", r.rule_id, r.case));
                } else if !r.passed {
                    out.push_str(&format!("FAIL  {} / {}: {}\n", r.rule_id, r.case, r.detail));
                }
            }
            out.push_str(&format!(
                "{} rule(s), {} case(s), {} failed\n",
                set.rules().len(),
                results.len(),
                failed
            ));
            write_stdout(&out)?;
            Ok(if failed > 0 { exit::FINDINGS } else { exit::OK })
        }
        RulesCommand::Docs => {
            let set = rules::RuleSet::builtin()?;
            write_stdout(&rules::docs::render_markdown(&set))?;
            Ok(exit::OK)
        }
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

/// The error and its causes on one line, like `{e:#}`, but without a cause its parent already
/// quotes: library errors name their source in their own message (`cannot open bundle X: No
/// such file or directory`), and the plain chain would repeat it.
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
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
    init_tracing(cli.verbose);
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
            let msg = one_line(&e);
            eprintln!("netsnap-analyze: error: {}", inert::terminal(&msg));
            ExitCode::from(exit::ERROR as u8)
        }
    }
}

//! `netsnap-analyze`: thin CLI over the `netsnap_analyzer` library.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use netsnap_analyzer::{exit, inspect, report};
use netsnap_bundle::{Bundle, ReaderOptions};

/// Reads netsnap bundles offline and explains what is wrong with a node's networking.
#[derive(Parser, Debug)]
#[command(name = "netsnap-analyze", version, about, long_about = None)]
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
}

/// Options for opening a bundle.
#[derive(clap::Args, Debug, Clone)]
struct OpenArgs {
    /// Skip the sha256 check of each artifact against the manifest.
    #[arg(long)]
    no_verify: bool,
    /// Refuse bundles that expand to more than this many bytes (decompression-bomb guard).
    #[arg(long, default_value_t = 8u64 << 30)]
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
            let text = match format {
                DataFormat::Text => report::manifest::render_text(b.manifest()),
                DataFormat::Json => {
                    let mut s = serde_json::to_string_pretty(&report::manifest::summary(&b))
                        .context("serializing manifest summary")?;
                    s.push('\n');
                    s
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
    match run(cli) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("netsnap-analyze: error: {e:#}");
            ExitCode::from(exit::ERROR as u8)
        }
    }
}

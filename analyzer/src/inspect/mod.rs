//! `netsnap-analyze inspect <BUNDLE> <VIEW>`: the seed tutorial's commands
//! (`kubectl get pod -o wide`, `ip addr`, `conntrack -L`, `iptables -t nat -L`,
//! `ipvsadm -Ln`, `dig`, `sysctl`, …) replayed offline from a bundle.
//!
//! Guarantees: every view renders either an aligned table (default) or a stable
//! JSON array (`--format json`; rows sorted as in the table, keys fixed by the row
//! types). A view whose data the bundle lacks returns [`Outcome::NoData`] with one
//! line naming the artifact and the collector's recorded reason; the CLI prints it
//! on stderr and exits with [`crate::exit::NO_DATA`]. Times (AGE) are relative to
//! the collection's end, never to the analysis clock, so output is reproducible.

use std::net::IpAddr;

use netsnap_bundle::Bundle;
use serde::Serialize;

mod conntrack;
mod dataplane;
mod dns;
mod iptables;
mod ipvs;
mod k8s;
mod kernel_log;
pub(crate) mod load;
mod net;
mod parse;
mod sysctl;
pub mod table;

pub use load::missing_reason;

/// The views of `inspect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum View {
    /// Pods like `kubectl get pod -o wide`, plus network namespace and host-side veth.
    #[value(alias = "po", alias = "pod")]
    Pods,
    /// Services like `kubectl get service -A`, plus endpoints and the node's dataplane.
    #[value(alias = "svc", alias = "service", alias = "ep", alias = "endpoints")]
    Services,
    /// Network namespaces, their processes and owning pods.
    Netns,
    /// Interfaces of every namespace, with veth peers and vxlan/bridge details.
    #[value(alias = "link")]
    Links,
    /// Addresses of every namespace.
    #[value(alias = "addr", alias = "address", alias = "addresses")]
    Addrs,
    /// Routes of every namespace (all tables).
    #[value(alias = "route", alias = "rt")]
    Routes,
    /// Connection tracking table (`conntrack -L`), `--summary`, `--stats`.
    #[value(alias = "ct")]
    Conntrack,
    /// iptables rules (`iptables -t TABLE -L CHAIN -n`) or the whole dump.
    #[value(alias = "ipt")]
    Iptables,
    /// IPVS virtual services (`ipvsadm -Ln`).
    Ipvs,
    /// DNS probes sent by the collector.
    Dns,
    /// Sysctls the collector read.
    #[value(alias = "sysctls")]
    Sysctl,
    /// Kernel log lines.
    #[value(alias = "dmesg")]
    KernelLog,
    /// Lines each text artifact's parser did not understand.
    Parse,
}

impl View {
    /// The view's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            View::Pods => "pods",
            View::Services => "services",
            View::Netns => "netns",
            View::Links => "links",
            View::Addrs => "addrs",
            View::Routes => "routes",
            View::Conntrack => "conntrack",
            View::Iptables => "iptables",
            View::Ipvs => "ipvs",
            View::Dns => "dns",
            View::Sysctl => "sysctl",
            View::KernelLog => "kernel-log",
            View::Parse => "parse",
        }
    }
}

/// Output format of a view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Aligned table, like the live command (`table` is an alias).
    #[default]
    #[value(alias = "table")]
    Text,
    /// Stable JSON array of rows.
    Json,
}

/// `-o` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Every column whole.
    Wide,
}

/// View selection, format and filters of `inspect` (flattened into the CLI).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct InspectArgs {
    /// What to show.
    #[arg(value_enum, required = true)]
    pub view: Option<View>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// `-o wide`: every column whole, even wider than the terminal (kubectl's `-o wide`).
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<Output>,
    /// Width text tables must fit (the terminal's; set by the CLI, not a flag).
    #[arg(skip)]
    pub width: Option<usize>,
    /// pods/services: only this Kubernetes namespace (default: `default`, like kubectl).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// pods/services: all Kubernetes namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// links/addrs/routes/dns: only this network namespace id (`host`, `ns-4026532301`).
    #[arg(long)]
    pub netns: Option<String>,
    /// routes: only this routing table (`main`, `local`, `100`); iptables: the table (`nat`, `filter`).
    #[arg(long)]
    pub table: Option<String>,
    /// iptables: only this chain (e.g. `KUBE-SERVICES`).
    #[arg(long)]
    pub chain: Option<String>,
    /// conntrack: only entries whose original destination is this address (`conntrack -L -d`).
    #[arg(short = 'd', long = "dst")]
    pub dst: Option<IpAddr>,
    /// conntrack: only entries whose original source is this address (`conntrack -L -s`).
    #[arg(short = 's', long = "src")]
    pub src: Option<IpAddr>,
    /// conntrack: only this protocol (`tcp`, `udp`, `icmp`, …).
    #[arg(short = 'p', long = "proto")]
    pub proto: Option<String>,
    /// conntrack: only this TCP state (`ESTABLISHED`, `TIME_WAIT`, …).
    #[arg(long)]
    pub state: Option<String>,
    /// conntrack: counts per protocol and state, table usage, top destinations.
    #[arg(long)]
    pub summary: bool,
    /// conntrack: per-CPU statistics (`conntrack -S`).
    #[arg(long)]
    pub stats: bool,
    /// ipvs: only this TCP virtual service (`ipvsadm -Ln -t VIP:PORT`).
    #[arg(short = 't', long = "tcp-service")]
    pub tcp_service: Option<String>,
    /// ipvs: only this UDP virtual service (`ipvsadm -Ln -u VIP:PORT`).
    #[arg(short = 'u', long = "udp-service")]
    pub udp_service: Option<String>,
}

/// What a view produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The rendered view, for stdout.
    Rendered(String),
    /// The bundle lacks the view's data: one line, for stderr (exit [`crate::exit::NO_DATA`]).
    NoData(String),
}

/// Errors of `inspect` (the bundle is unreadable or inconsistent; exit 2).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InspectError {
    /// `--netns` names a namespace the bundle does not have (a usage error, not missing data).
    #[error("--netns {value}: no such network namespace in the bundle{hint} (known: {known})")]
    UnknownNetns {
        /// The value given.
        value: String,
        /// ", did you mean X?" or empty.
        hint: String,
        /// The namespace ids the bundle has (the first ones).
        known: String,
    },
    /// No view given.
    #[error(
        "no view given; choose one of: pods, services, netns, links, addrs, routes, conntrack, iptables, ipvs, dns, sysctl, kernel-log, parse"
    )]
    NoView,
    /// A filter was given that the view does not use.
    #[error("{flag} does not apply to the {view} view")]
    FilterNotApplicable {
        /// The flag.
        flag: &'static str,
        /// The view.
        view: &'static str,
    },
    /// An artifact could not be read.
    #[error("cannot read {path} from the bundle: {source}")]
    Read {
        /// Bundle path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A native artifact is not the JSON its path promises.
    #[error("{path}:{line}: invalid {what}: {message}")]
    Json {
        /// Bundle path.
        path: String,
        /// 1-based line.
        line: usize,
        /// What was expected.
        what: &'static str,
        /// The decoder's message.
        message: String,
    },
    /// A filter value is malformed.
    #[error("invalid {flag} value {value:?}: {reason}")]
    BadFilter {
        /// The flag.
        flag: &'static str,
        /// The value.
        value: String,
        /// Why.
        reason: &'static str,
    },
    /// Serializing the JSON output failed.
    #[error("cannot serialize the view as JSON: {0}")]
    Serialize(String),
}

/// Runs one view over an opened bundle.
pub fn run(bundle: &Bundle, args: &InspectArgs) -> Result<Outcome, InspectError> {
    let view = args.view.ok_or(InspectError::NoView)?;
    check_filters(view, args)?;
    check_netns(bundle, args)?;
    let width = match args.output {
        Some(Output::Wide) => None,
        None => args.width,
    };
    let outcome = table::with_max_width(width, || render_view(view, bundle, args))?;
    // Tables made their cells inert; this also covers the free-text views (iptables, ipvs)
    // and the one-line reasons. JSON stays exact: serde escapes control characters.
    Ok(match outcome {
        Outcome::Rendered(text) if args.format == Format::Text => {
            Outcome::Rendered(crate::inert::terminal_lines(&text).into_owned())
        }
        Outcome::NoData(line) => Outcome::NoData(crate::inert::terminal(&line).into_owned()),
        other => other,
    })
}

fn render_view(view: View, bundle: &Bundle, args: &InspectArgs) -> Result<Outcome, InspectError> {
    match view {
        View::Pods => k8s::pods(bundle, args),
        View::Services => k8s::services(bundle, args),
        View::Netns => net::netns(bundle, args),
        View::Links => net::links(bundle, args),
        View::Addrs => net::addrs(bundle, args),
        View::Routes => net::routes(bundle, args),
        View::Dns => dns::dns(bundle, args),
        View::Sysctl => sysctl::sysctl(bundle, args),
        View::Conntrack => conntrack::conntrack(bundle, args),
        View::Iptables => iptables::iptables(bundle, args),
        View::Ipvs => ipvs::ipvs(bundle, args),
        View::KernelLog => kernel_log::kernel_log(bundle, args),
        View::Parse => parse::parse(bundle, args),
    }
}

/// Refuses a `--netns` the bundle does not know: a typo is a usage error (exit 2), not
/// "not collected" (exit 3). A bundle without any namespace keeps the no-data answer.
fn check_netns(bundle: &Bundle, args: &InspectArgs) -> Result<(), InspectError> {
    let Some(value) = &args.netns else {
        return Ok(());
    };
    let ids = load::netns_ids(bundle)?;
    if ids.is_empty() || ids.contains(value) {
        return Ok(());
    }
    let hint = crate::rules::typecheck::did_you_mean(value, ids.iter().map(String::as_str))
        .map(|m| format!(", did you mean {m}?"))
        .unwrap_or_default();
    let shown: Vec<&str> = ids.iter().take(8).map(String::as_str).collect();
    let more = ids.len() - shown.len();
    Err(InspectError::UnknownNetns {
        value: value.clone(),
        hint,
        known: if more > 0 {
            format!(
                "{} and {more} more; see `inspect BUNDLE netns`",
                shown.join(", ")
            )
        } else {
            shown.join(", ")
        },
    })
}

/// Rejects filters a view ignores, so a typo does not silently show everything.
fn check_filters(view: View, a: &InspectArgs) -> Result<(), InspectError> {
    use View::*;
    let given: [(&'static str, bool, &[View]); 12] = [
        ("--namespace", a.namespace.is_some(), &[Pods, Services]),
        ("--all-namespaces", a.all_namespaces, &[Pods, Services]),
        (
            "--netns",
            a.netns.is_some(),
            &[Links, Addrs, Routes, Dns, Sysctl],
        ),
        ("--table", a.table.is_some(), &[Routes, Iptables]),
        ("--chain", a.chain.is_some(), &[Iptables]),
        ("--dst", a.dst.is_some(), &[Conntrack]),
        ("--src", a.src.is_some(), &[Conntrack]),
        ("--proto", a.proto.is_some(), &[Conntrack]),
        ("--state", a.state.is_some(), &[Conntrack]),
        ("--summary", a.summary, &[Conntrack]),
        ("--stats", a.stats, &[Conntrack]),
        (
            "--tcp-service/--udp-service",
            a.tcp_service.is_some() || a.udp_service.is_some(),
            &[Ipvs],
        ),
    ];
    for (flag, set, views) in given {
        if set && !views.contains(&view) {
            return Err(InspectError::FilterNotApplicable {
                flag,
                view: view.name(),
            });
        }
    }
    Ok(())
}

/// Renders rows as a table or a JSON array.
fn emit<R: Serialize>(
    args: &InspectArgs,
    rows: &[R],
    table: impl FnOnce(&[R]) -> String,
) -> Result<Outcome, InspectError> {
    match args.format {
        Format::Text => Ok(Outcome::Rendered(table(rows))),
        Format::Json => {
            let mut s = serde_json::to_string_pretty(rows)
                .map_err(|e| InspectError::Serialize(e.to_string()))?;
            s.push('\n');
            Ok(Outcome::Rendered(s))
        }
    }
}

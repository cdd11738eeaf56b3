//! DNS evidence: `dig` text output ([`parse_dig`]), `/etc/resolv.conf`
//! ([`parse_resolv_conf`]) and the collector's probe report ([`load_probe_report`]).
//!
//! The text parsers never fail: items keep their 1-based line and lines not
//! understood are kept as [`crate::parse::Unparsed`].

mod dig;
mod probes;
mod resolv;

pub use dig::{Dig, DigError, DigErrorKind, DigOutcome, DigRecord, DigServer, parse_dig};
pub use probes::{ProbeError, ProbeSummary, load_probe_report, responded, summarize};
pub use resolv::{Nameserver, ResolvConf, ResolvOptions, parse_resolv_conf};

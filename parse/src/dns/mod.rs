//! DNS evidence: `dig` text output ([`parse_dig`]), `nslookup` output
//! ([`parse_nslookup`]), `/etc/resolv.conf`
//! ([`parse_resolv_conf`]) and the collector's probe report ([`load_probe_report`]).
//!
//! The text parsers never fail: items keep their 1-based line and lines not
//! understood are kept as [`crate::Unparsed`].

mod dig;
mod nslookup;
mod probes;
mod resolv;

pub use dig::{Dig, DigError, DigErrorKind, DigOutcome, DigRecord, DigServer, parse_dig};
pub use nslookup::{
    Nslookup, NslookupAnswer, NslookupError, NslookupErrorKind, NslookupOutcome, parse_nslookup,
};
pub use probes::{ProbeError, ProbeSummary, load_probe_report, responded, summarize};
pub use resolv::{Nameserver, ResolvConf, ResolvOptions, parse_resolv_conf};

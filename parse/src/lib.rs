//! Parsers: pure functions from a tool's text output to typed data.
//!
//! Every parser keeps the 1-based line number of each item so findings can cite
//! `path:line`, and keeps lines it does not understand as [`Unparsed`] (counted,
//! never silently dropped). No parser does I/O, reads the clock, or logs, and no
//! input makes one panic (each has a fuzz target under `fuzz/`).

use serde::{Deserialize, Serialize};

pub mod conntrack;
pub mod dns;
pub mod ip;
pub mod iptables;
pub mod ipvs;
pub mod kernel_log;
pub mod nft;
pub mod sysctl;

/// A line a parser did not understand, kept as evidence instead of being dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Unparsed {
    /// 1-based line number in the artifact.
    pub line: usize,
    /// The line's text.
    pub text: String,
    /// Why it was not understood.
    pub reason: String,
}

impl Unparsed {
    /// Builds an unparsed record.
    pub fn new(line: usize, text: &str, reason: impl Into<String>) -> Self {
        Unparsed {
            line,
            text: text.to_string(),
            reason: reason.into(),
        }
    }
}

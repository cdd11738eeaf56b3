//! The collector's DNS probe report (`dns/probes.json`): a serde load plus summaries.

use std::collections::BTreeMap;

use netsnap_bundle::native::{DnsProbe, DnsProbeReport};
use serde::Serialize;

/// The probe report is not valid JSON of the expected shape.
#[derive(Debug, thiserror::Error)]
#[error("invalid DNS probe report at line {line}, column {column}: {message}")]
pub struct ProbeError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// serde_json's description.
    pub message: String,
}

/// Loads `dns/probes.json`.
pub fn load_probe_report(text: &str) -> Result<DnsProbeReport, ProbeError> {
    serde_json::from_str(text).map_err(|e| ProbeError {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })
}

/// Counts per (server role, outcome), plus latency figures of answered probes.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProbeSummary {
    /// Probes sent.
    pub total: usize,
    /// Probes that got any response (answer, nxdomain, servfail, …).
    pub responded: usize,
    /// `role/outcome` -> count.
    pub by_role_outcome: BTreeMap<String, usize>,
    /// Highest latency among responses, ms.
    pub max_latency_ms: Option<f64>,
}

/// True when a response arrived (whatever its rcode).
pub fn responded(p: &DnsProbe) -> bool {
    !matches!(p.outcome.as_str(), "timeout" | "error")
}

/// Summarizes a report.
pub fn summarize(report: &DnsProbeReport) -> ProbeSummary {
    let mut s = ProbeSummary {
        total: report.probes.len(),
        ..ProbeSummary::default()
    };
    for p in &report.probes {
        if responded(p) {
            s.responded += 1;
            if let Some(l) = p.latency_ms {
                s.max_latency_ms = Some(s.max_latency_ms.map_or(l, |m: f64| m.max(l)));
            }
        }
        *s.by_role_outcome
            .entry(format!("{}/{}", p.server_role, p.outcome))
            .or_default() += 1;
    }
    s
}

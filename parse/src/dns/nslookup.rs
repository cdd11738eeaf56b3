//! `nslookup` text output: BIND 9's (`Server:` / `Address:` / `Name:` blocks,
//! `** server can't find NAME: NXDOMAIN`, `;; communications error …`) and BusyBox's
//! (`Address 1: 10.0.0.10 name`, `nslookup: can't resolve 'NAME'`), the one in the
//! busybox image Kubernetes' DNS-debugging page uses.
//!
//! BIND's nslookup asks for A and AAAA: a name with only an A record prints its
//! address and then `** server can't find NAME: NXDOMAIN` (or `*** Can't find NAME:
//! No answer`) for the AAAA query. [`Nslookup::outcome`] therefore looks at the
//! answers first.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::Unparsed;

/// One `nslookup` run's output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Nslookup {
    /// The server line (`Server:\t\t10.96.0.10`).
    pub server: Option<String>,
    /// The server's address (`Address:\t10.96.0.10#53`, BusyBox `Address 1: 10.96.0.10 name`).
    pub server_address: Option<String>,
    /// `Non-authoritative answer:` was printed.
    pub non_authoritative: bool,
    /// Answers in order.
    pub answers: Vec<NslookupAnswer>,
    /// Errors in order.
    pub errors: Vec<NslookupError>,
    /// Lines not understood.
    pub unparsed: Vec<Unparsed>,
}

/// One answer: an address of a name, or a canonical-name line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NslookupAnswer {
    /// 1-based line.
    pub line: usize,
    /// The name looked up (from the `Name:` line above, or the CNAME's owner).
    pub name: String,
    /// The address, for `Address:` answers.
    pub address: Option<IpAddr>,
    /// The target, for `NAME\tcanonical name = TARGET.` lines.
    pub canonical_name: Option<String>,
}

/// What kind of error nslookup reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NslookupErrorKind {
    /// `NXDOMAIN`.
    NxDomain,
    /// `SERVFAIL`.
    ServFail,
    /// `REFUSED`.
    Refused,
    /// `No answer` (NODATA).
    NoAnswer,
    /// `timed out`.
    Timeout,
    /// `no servers could be reached`.
    NoServers,
    /// BusyBox `can't resolve` and any other error.
    Other,
}

/// An error line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NslookupError {
    /// 1-based line.
    pub line: usize,
    /// Classification.
    pub kind: NslookupErrorKind,
    /// The name the error is about, when the line says.
    pub name: Option<String>,
    /// The line, verbatim.
    pub text: String,
}

/// The result of one run, reduced to what a finding needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NslookupOutcome {
    /// At least one answer.
    Answer,
    /// No answer; the first error says why.
    Failed(NslookupErrorKind),
    /// Neither answers nor errors (a cut-off output).
    Unknown,
}

impl Nslookup {
    /// Classifies the run: answers win over the AAAA query's error (see the module doc).
    pub fn outcome(&self) -> NslookupOutcome {
        if !self.answers.is_empty() {
            NslookupOutcome::Answer
        } else if let Some(e) = self
            .errors
            .iter()
            .find(|e| e.kind != NslookupErrorKind::NoServers)
            .or(self.errors.first())
        {
            NslookupOutcome::Failed(e.kind)
        } else {
            NslookupOutcome::Unknown
        }
    }

    /// Addresses answered, in order.
    pub fn addresses(&self) -> Vec<IpAddr> {
        self.answers.iter().filter_map(|a| a.address).collect()
    }
}

/// Parses `nslookup` output. Never fails.
pub fn parse_nslookup(text: &str) -> Nslookup {
    let mut out = Nslookup::default();
    // The `Name:` an `Address:` line belongs to; `None` while in the server block.
    let mut name: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(v) = line.strip_prefix("Server:") {
            out.server = Some(v.trim().to_string());
            name = None;
            continue;
        }
        if line == "Non-authoritative answer:" || line == "Authoritative answers can be found from:"
        {
            out.non_authoritative |= line.starts_with("Non");
            continue;
        }
        if let Some(v) = line.strip_prefix("Name:") {
            name = Some(v.trim().trim_end_matches('.').to_string());
            continue;
        }
        // BIND `Address: 10.96.0.1` / `Address:\t10.96.0.10#53`; BusyBox `Address 1: 10.0.0.1 name`.
        if let Some(rest) = line.strip_prefix("Address") {
            let Some((label, value)) = rest.split_once(':') else {
                out.unparsed
                    .push(Unparsed::new(n, raw, "Address line without `:`"));
                continue;
            };
            if !label.trim().bytes().all(|b| b.is_ascii_digit()) {
                out.unparsed
                    .push(Unparsed::new(n, raw, "unexpected Address label"));
                continue;
            }
            let value = value.trim();
            match &name {
                None => out.server_address = Some(value.to_string()),
                Some(nm) => {
                    let addr = value.split_whitespace().next().unwrap_or("");
                    match addr.parse() {
                        Ok(a) => out.answers.push(NslookupAnswer {
                            line: n,
                            name: nm.clone(),
                            address: Some(a),
                            canonical_name: None,
                        }),
                        Err(_) => out
                            .unparsed
                            .push(Unparsed::new(n, raw, "bad answer address")),
                    }
                }
            }
            continue;
        }
        if let Some((owner, target)) = line.split_once("canonical name = ") {
            out.answers.push(NslookupAnswer {
                line: n,
                name: owner.trim().trim_end_matches('.').to_string(),
                address: None,
                canonical_name: Some(target.trim().trim_end_matches('.').to_string()),
            });
            continue;
        }
        match classify(line, n) {
            Some(e) => out.errors.push(e),
            None => out
                .unparsed
                .push(Unparsed::new(n, raw, "unexpected nslookup line")),
        }
    }
    out
}

fn classify(line: &str, n: usize) -> Option<NslookupError> {
    let err = |kind, name: Option<&str>| NslookupError {
        line: n,
        kind,
        name: name.map(|s| s.trim_end_matches('.').to_string()),
        text: line.to_string(),
    };
    // `** server can't find NAME: NXDOMAIN`, `*** Can't find NAME: No answer`
    if let Some(rest) = line
        .strip_prefix("** server can't find ")
        .or_else(|| line.strip_prefix("*** Can't find "))
    {
        let (nm, why) = rest.rsplit_once(": ").unwrap_or((rest, ""));
        let kind = match why.trim() {
            "NXDOMAIN" => NslookupErrorKind::NxDomain,
            "SERVFAIL" => NslookupErrorKind::ServFail,
            "REFUSED" => NslookupErrorKind::Refused,
            "No answer" => NslookupErrorKind::NoAnswer,
            _ => NslookupErrorKind::Other,
        };
        return Some(err(kind, Some(nm)));
    }
    // BusyBox: `nslookup: can't resolve 'kubernetes.default'`
    if let Some(rest) = line.strip_prefix("nslookup: can't resolve ") {
        return Some(err(NslookupErrorKind::Other, Some(rest.trim_matches('\''))));
    }
    let lower = line.to_ascii_lowercase();
    if let Some(rest) = line.strip_prefix(";; ") {
        let kind = if lower.contains("timed out") {
            NslookupErrorKind::Timeout
        } else if lower.contains("no servers could be reached") {
            NslookupErrorKind::NoServers
        } else {
            NslookupErrorKind::Other
        };
        let _ = rest;
        return Some(err(kind, None));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cname_and_old_timeout_wording() {
        let r = parse_nslookup(
            "Server:\t\t10.96.0.10\nAddress:\t10.96.0.10#53\n\nNon-authoritative answer:\nwww.example.com\tcanonical name = example.com.\nName:\texample.com\nAddress: 93.184.216.34\n",
        );
        assert!(r.non_authoritative && r.unparsed.is_empty());
        assert_eq!(r.answers[0].canonical_name.as_deref(), Some("example.com"));
        assert_eq!(r.addresses(), ["93.184.216.34".parse::<IpAddr>().unwrap()]);
        let t = parse_nslookup(";; connection timed out; no servers could be reached\n\n");
        assert_eq!(
            t.outcome(),
            NslookupOutcome::Failed(NslookupErrorKind::Timeout)
        );
        let junk = parse_nslookup("Server: x\nwhat is this\n");
        assert_eq!(junk.unparsed.len(), 1);
        assert_eq!(junk.unparsed[0].line, 2);
    }
}

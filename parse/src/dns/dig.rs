//! `dig` text output (BIND 9.x): the header, flags, sections, the statistics
//! footer, and the error lines dig prints when no answer arrives.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::Unparsed;

/// One `dig` run's output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Dig {
    /// dig version from the banner (`9.18.49-1~deb12u3-Debian`).
    pub version: Option<String>,
    /// Arguments from the banner (`kubernetes.default.svc.cluster.local @10.96.0.10`).
    pub args: Option<String>,
    /// Opcode (`QUERY`).
    pub opcode: Option<String>,
    /// Response code (`NOERROR`, `NXDOMAIN`, `SERVFAIL`, `REFUSED`), when a response arrived.
    pub status: Option<String>,
    /// Message id.
    pub id: Option<u16>,
    /// Header flags (`qr`, `aa`, `rd`, `ra`, `tc`).
    pub flags: Vec<String>,
    /// Section counts from the flags line: QUERY, ANSWER, AUTHORITY, ADDITIONAL.
    pub counts: Option<[u32; 4]>,
    /// Question section.
    pub question: Vec<DigRecord>,
    /// Answer section.
    pub answer: Vec<DigRecord>,
    /// Authority section.
    pub authority: Vec<DigRecord>,
    /// Additional section.
    pub additional: Vec<DigRecord>,
    /// `;; Query time: N msec`.
    pub query_time_ms: Option<u64>,
    /// `;; SERVER: addr#port(name) (UDP)`.
    pub server: Option<DigServer>,
    /// `;; WHEN: …`, verbatim.
    pub when: Option<String>,
    /// `;; MSG SIZE  rcvd: N`.
    pub msg_size: Option<u32>,
    /// `;; WARNING: …` lines, verbatim.
    pub warnings: Vec<String>,
    /// `; (2 servers found)`: how many addresses the `@server` name resolved to (dig
    /// prints the line when the server is given by name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub servers_found: Option<u32>,
    /// Error lines (timeouts, refused connections, no servers).
    pub errors: Vec<DigError>,
    /// Lines not understood.
    pub unparsed: Vec<Unparsed>,
}

/// A resource record (or, in the question section, a question).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DigRecord {
    /// 1-based line.
    pub line: usize,
    /// Owner name.
    pub name: String,
    /// TTL (None in the question section).
    pub ttl: Option<u32>,
    /// Class (`IN`).
    pub class: String,
    /// Type (`A`, `AAAA`, `SRV`, …).
    pub rtype: String,
    /// Record data as printed (empty for questions).
    pub data: String,
}

/// The server that answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DigServer {
    /// Address, when it parses as one.
    pub address: Option<IpAddr>,
    /// Port.
    pub port: Option<u16>,
    /// Name in parentheses.
    pub name: Option<String>,
    /// `UDP` / `TCP` (dig 9.18+ prints it).
    pub transport: Option<String>,
}

/// An error dig reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DigError {
    /// 1-based line.
    pub line: usize,
    /// Classification.
    pub kind: DigErrorKind,
    /// Server named in the message, if any.
    pub server: Option<String>,
    /// The line, verbatim.
    pub text: String,
}

/// What kind of error dig reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DigErrorKind {
    /// No response in time (`timed out`, `connection timed out`).
    Timeout,
    /// The server's host refused (ICMP port unreachable / TCP RST).
    ConnectionRefused,
    /// Network or host unreachable.
    Unreachable,
    /// `no servers could be reached` (the summary after the above).
    NoServers,
    /// Any other `;; …` error (`communications error`, `connection reset`, …).
    Other,
}

/// The result of one dig run, reduced to what a finding needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DigOutcome {
    /// A response with status NOERROR and at least one answer record.
    Answer,
    /// A response with status NOERROR and no answer (NODATA).
    NoData,
    /// A response with another status (`NXDOMAIN`, `SERVFAIL`, `REFUSED`).
    Rcode(String),
    /// No response: timeout.
    Timeout,
    /// No response: connection refused.
    Refused,
    /// No response: another error.
    Error,
}

impl Dig {
    /// Classifies the run.
    pub fn outcome(&self) -> DigOutcome {
        match self.status.as_deref() {
            Some("NOERROR") if !self.answer.is_empty() => DigOutcome::Answer,
            Some("NOERROR") => DigOutcome::NoData,
            Some(s) => DigOutcome::Rcode(s.to_string()),
            None => {
                let kinds: Vec<DigErrorKind> = self.errors.iter().map(|e| e.kind).collect();
                if kinds.contains(&DigErrorKind::ConnectionRefused) {
                    DigOutcome::Refused
                } else if kinds.contains(&DigErrorKind::Timeout) {
                    DigOutcome::Timeout
                } else {
                    DigOutcome::Error
                }
            }
        }
    }

    /// The answer records' data for one type (`A` → addresses as text).
    pub fn answers_of(&self, rtype: &str) -> Vec<&str> {
        self.answer
            .iter()
            .filter(|r| r.rtype.eq_ignore_ascii_case(rtype))
            .map(|r| r.data.as_str())
            .collect()
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Section {
    None,
    Question,
    Answer,
    Authority,
    Additional,
    Opt,
}

/// Parses `dig` output. Never fails.
pub fn parse_dig(text: &str) -> Dig {
    let mut d = Dig::default();
    let mut section = Section::None;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim_end();
        if line.trim().is_empty() {
            section = Section::None;
            continue;
        }
        if let Some(rest) = line.strip_prefix(";; ") {
            section = match rest {
                "QUESTION SECTION:" => Section::Question,
                "ANSWER SECTION:" => Section::Answer,
                "AUTHORITY SECTION:" => Section::Authority,
                "ADDITIONAL SECTION:" => Section::Additional,
                "OPT PSEUDOSECTION:" => Section::Opt,
                _ => {
                    if !header_line(&mut d, rest, n) {
                        d.unparsed
                            .push(Unparsed::new(n, raw, "unknown dig comment"));
                    }
                    Section::None
                }
            };
            continue;
        }
        if let Some(n) = line
            .strip_prefix("; (")
            .and_then(|r| r.strip_suffix(" found)"))
            .and_then(|r| r.split_once(' '))
            .filter(|(_, w)| *w == "server" || *w == "servers")
            .and_then(|(n, _)| n.parse().ok())
        {
            d.servers_found = Some(n);
            continue;
        }
        if let Some(rest) = line.strip_prefix("; <<>> DiG ") {
            // `; <<>> DiG 9.18.49-1~deb12u3-Debian <<>> ARGS`
            let (ver, args) = rest.split_once(" <<>>").unwrap_or((rest, ""));
            d.version = Some(ver.trim().to_string());
            let args = args.trim();
            if !args.is_empty() {
                d.args = Some(args.to_string());
            }
            continue;
        }
        match section {
            Section::Question => match line
                .strip_prefix(';')
                .and_then(|q| parse_record(q, n, true))
            {
                Some(r) => d.question.push(r),
                None => d.unparsed.push(Unparsed::new(n, raw, "malformed question")),
            },
            Section::Answer | Section::Authority | Section::Additional => {
                match parse_record(line, n, false) {
                    Some(r) => match section {
                        Section::Answer => d.answer.push(r),
                        Section::Authority => d.authority.push(r),
                        _ => d.additional.push(r),
                    },
                    None => d.unparsed.push(Unparsed::new(n, raw, "malformed record")),
                }
            }
            // EDNS details (`; EDNS: version: 0, flags:; udp: 1232`, `; COOKIE: …`) are not needed.
            Section::Opt if line.starts_with(';') => {}
            _ => d.unparsed.push(Unparsed::new(n, raw, "unexpected line")),
        }
    }
    d
}

/// Handles a `;; …` line outside the section markers; false when not understood.
fn header_line(d: &mut Dig, rest: &str, n: usize) -> bool {
    if let Some(h) = rest.strip_prefix("->>HEADER<<- ") {
        for part in h.split(", ") {
            match part.split_once(": ") {
                Some(("opcode", v)) => d.opcode = Some(v.to_string()),
                Some(("status", v)) => d.status = Some(v.to_string()),
                Some(("id", v)) => d.id = v.trim().parse().ok(),
                _ => {}
            }
        }
        return true;
    }
    if let Some(f) = rest.strip_prefix("flags:") {
        // `flags: qr aa rd ra; QUERY: 1, ANSWER: 1, AUTHORITY: 0, ADDITIONAL: 1`
        let (flags, counts) = f.split_once(';').unwrap_or((f, ""));
        d.flags = flags.split_whitespace().map(str::to_string).collect();
        let mut c = [0u32; 4];
        let mut seen = 0;
        for part in counts.split(',') {
            if let Some((k, v)) = part.trim().split_once(": ") {
                let idx = match k {
                    "QUERY" | "ZONE" => 0,
                    "ANSWER" | "PREREQ" => 1,
                    "AUTHORITY" | "UPDATE" => 2,
                    "ADDITIONAL" => 3,
                    _ => continue,
                };
                if let Ok(v) = v.trim().parse() {
                    c[idx] = v;
                    seen += 1;
                }
            }
        }
        if seen > 0 {
            d.counts = Some(c);
        }
        return true;
    }
    if let Some(t) = rest.strip_prefix("Query time: ") {
        d.query_time_ms = t.trim_end_matches(" msec").trim().parse().ok();
        return true;
    }
    if let Some(s) = rest.strip_prefix("SERVER: ") {
        d.server = Some(parse_server(s));
        return true;
    }
    if let Some(w) = rest.strip_prefix("WHEN: ") {
        d.when = Some(w.to_string());
        return true;
    }
    if let Some(m) = rest.strip_prefix("MSG SIZE  rcvd: ") {
        d.msg_size = m.trim().parse().ok();
        return true;
    }
    if let Some(w) = rest.strip_prefix("WARNING: ") {
        d.warnings.push(w.to_string());
        return true;
    }
    if rest == "global options: +cmd"
        || rest == "Got answer:"
        || rest.starts_with("global options:")
    {
        return true;
    }
    // The mDNS warning's second line.
    if rest.starts_with("You are currently testing") {
        d.warnings.push(rest.to_string());
        return true;
    }
    if let Some(e) = classify_error(rest, n) {
        d.errors.push(e);
        return true;
    }
    false
}

fn classify_error(rest: &str, n: usize) -> Option<DigError> {
    let lower = rest.to_ascii_lowercase();
    let kind = if lower.contains("no servers could be reached") && !lower.contains("timed out") {
        DigErrorKind::NoServers
    } else if lower.contains("timed out") {
        DigErrorKind::Timeout
    } else if lower.contains("connection refused") {
        DigErrorKind::ConnectionRefused
    } else if lower.contains("unreachable") {
        DigErrorKind::Unreachable
    } else if lower.starts_with("communications error")
        || lower.starts_with("connection to")
        || lower.contains("error")
        || lower.contains("failed")
    {
        DigErrorKind::Other
    } else {
        return None;
    };
    // `communications error to 192.168.50.1#53: …`, `Connection to 192.168.50.1#53(192.168.50.1) for … failed: …`
    let server = rest.split_once(" to ").and_then(|(_, r)| {
        let (addr, tail) = r.split_once('#')?;
        let port: String = tail.chars().take_while(char::is_ascii_digit).collect();
        Some(format!("{}#{port}", addr.trim()))
    });
    Some(DigError {
        line: n,
        kind,
        server,
        text: rest.to_string(),
    })
}

fn parse_server(s: &str) -> DigServer {
    // `10.96.0.10#53(10.96.0.10) (UDP)`
    let (main, transport) = match s.rsplit_once(" (") {
        Some((m, t)) if t.ends_with(')') => (m, Some(t.trim_end_matches(')').to_string())),
        _ => (s, None),
    };
    let (addr_port, name) = match main.split_once('(') {
        Some((a, n)) => (a, Some(n.trim_end_matches(')').to_string())),
        None => (main, None),
    };
    let (addr, port) = match addr_port.rsplit_once('#') {
        Some((a, p)) => (a, p.parse().ok()),
        None => (addr_port, None),
    };
    DigServer {
        address: addr.parse().ok(),
        port,
        name,
        transport,
    }
}

/// `name. TTL CLASS TYPE DATA…` (question: `name. CLASS TYPE`).
fn parse_record(line: &str, n: usize, question: bool) -> Option<DigRecord> {
    let toks: Vec<&str> = line.split_whitespace().collect();
    if question {
        if toks.len() != 3 {
            return None;
        }
        return Some(DigRecord {
            line: n,
            name: toks[0].to_string(),
            ttl: None,
            class: toks[1].to_string(),
            rtype: toks[2].to_string(),
            data: String::new(),
        });
    }
    if toks.len() < 4 {
        return None;
    }
    let ttl: u32 = toks[1].parse().ok()?;
    Some(DigRecord {
        line: n,
        name: toks[0].to_string(),
        ttl: Some(ttl),
        class: toks[2].to_string(),
        rtype: toks[3].to_string(),
        data: toks[4..].join(" "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// BIND 9.16 and older print a single line for an unanswered query.
    #[test]
    fn old_style_timeout() {
        let d = parse_dig(
            "\n; <<>> DiG 9.16.1-Ubuntu <<>> kubernetes.default.svc.cluster.local @10.32.0.10\n;; global options: +cmd\n;; connection timed out; no servers could be reached\n",
        );
        assert_eq!(d.outcome(), DigOutcome::Timeout);
        assert_eq!(d.errors.len(), 1);
        assert_eq!(d.errors[0].line, 4);
        assert!(d.unparsed.is_empty());
    }

    #[test]
    fn server_forms() {
        let s = parse_server("10.96.0.10#53(10.96.0.10) (TCP)");
        assert_eq!(s.port, Some(53));
        assert_eq!(s.transport.as_deref(), Some("TCP"));
        let s = parse_server("10.32.0.10#53(10.32.0.10)");
        assert_eq!(s.address, Some("10.32.0.10".parse().unwrap()));
        assert_eq!(s.transport, None);
    }
}

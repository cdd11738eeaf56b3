//! `/etc/resolv.conf` as glibc reads it (`resolv.conf(5)`): `nameserver`, `search`,
//! `domain`, `options` (`ndots:N`, `timeout:N`, `attempts:N`, flags), `#`/`;` comments.
//! Like glibc, the last `search`/`domain` line wins.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::Unparsed;

/// A parsed resolv.conf.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResolvConf {
    /// `nameserver` lines in order (glibc uses the first 3).
    pub nameservers: Vec<Nameserver>,
    /// Effective search list (from the last `search` or `domain` line).
    pub search: Vec<String>,
    /// 1-based line of the effective search/domain line.
    pub search_line: Option<usize>,
    /// `domain` value, if the last search-list line was `domain`.
    pub domain: Option<String>,
    /// Options.
    pub options: ResolvOptions,
    /// Lines not understood.
    pub unparsed: Vec<Unparsed>,
}

/// One `nameserver` line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Nameserver {
    /// 1-based line.
    pub line: usize,
    /// The address (None when the value is not an IP address; glibc ignores those).
    pub address: Option<IpAddr>,
    /// The value as written.
    pub text: String,
}

/// `options` values; None means "not set" (glibc defaults: ndots 1, timeout 5, attempts 2).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResolvOptions {
    /// `ndots:N`.
    pub ndots: Option<u32>,
    /// Line of the `ndots` option.
    pub ndots_line: Option<usize>,
    /// `timeout:N` seconds.
    pub timeout: Option<u32>,
    /// `attempts:N`.
    pub attempts: Option<u32>,
    /// Other options (`rotate`, `edns0`, `single-request-reopen`, `use-vc`, …).
    pub other: Vec<String>,
}

impl ResolvConf {
    /// Effective ndots (glibc default 1, capped at 15).
    pub fn ndots(&self) -> u32 {
        self.options.ndots.unwrap_or(1).min(15)
    }

    /// Nameserver addresses that parse, in order.
    pub fn nameserver_addrs(&self) -> Vec<IpAddr> {
        self.nameservers.iter().filter_map(|n| n.address).collect()
    }
}

/// Parses resolv.conf text. Never fails.
pub fn parse_resolv_conf(text: &str) -> ResolvConf {
    let mut r = ResolvConf::default();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let mut toks = line.split_whitespace();
        let key = toks.next().unwrap_or_default();
        let rest: Vec<&str> = toks.collect();
        match key {
            "nameserver" => match rest.first() {
                Some(v) => r.nameservers.push(Nameserver {
                    line: n,
                    // Link-local IPv6 may carry a zone (`fe80::1%eth0`).
                    address: v.split('%').next().and_then(|a| a.parse().ok()),
                    text: v.to_string(),
                }),
                None => r
                    .unparsed
                    .push(Unparsed::new(n, raw, "nameserver without value")),
            },
            "search" => {
                r.search = rest.iter().map(|s| s.to_string()).collect();
                r.search_line = Some(n);
                r.domain = None;
            }
            "domain" => {
                r.domain = rest.first().map(|s| s.to_string());
                r.search = r.domain.iter().cloned().collect();
                r.search_line = Some(n);
            }
            "options" => {
                for o in rest {
                    let (k, v) = match o.split_once(':') {
                        Some((k, v)) => (k, v.parse::<u32>().ok()),
                        None => (o, None),
                    };
                    match (k, v) {
                        ("ndots", Some(v)) => {
                            r.options.ndots = Some(v);
                            r.options.ndots_line = Some(n);
                        }
                        ("timeout", Some(v)) => r.options.timeout = Some(v),
                        ("attempts", Some(v)) => r.options.attempts = Some(v),
                        _ => r.options.other.push(o.to_string()),
                    }
                }
            }
            "sortlist" | "lookup" | "family" => {}
            _ => r
                .unparsed
                .push(Unparsed::new(n, raw, "unknown resolv.conf keyword")),
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_search_wins_and_options() {
        let r = parse_resolv_conf(
            "# c\nsearch a b\ndomain example.org\nnameserver fe80::1%eth0\noptions ndots:5 timeout:2 attempts:3 rotate\nbogus\n",
        );
        assert_eq!(r.search, vec!["example.org"]);
        assert_eq!(r.domain.as_deref(), Some("example.org"));
        assert_eq!(r.ndots(), 5);
        assert_eq!(r.options.timeout, Some(2));
        assert_eq!(r.options.other, vec!["rotate"]);
        assert_eq!(r.nameserver_addrs().len(), 1);
        assert_eq!(r.unparsed[0].line, 6);
    }
}

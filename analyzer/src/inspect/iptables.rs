//! `iptables`: rules like `iptables -t TABLE -L CHAIN -n` (`--table`, `--chain`), or
//! every table and chain of the dump. Reads `iptables/iptables-save.txt` (whatever
//! `iptables-save` pointed to), else the legacy or nft backend's own dump.

use netsnap_bundle::{Bundle, layout};
use serde::Serialize;

use super::load::{self, no_data};
use super::{Format, InspectArgs, InspectError, Outcome};
use crate::parse::iptables::{self, IptablesDump, Rule};

/// One rule (the JSON row).
#[derive(Debug, Serialize)]
pub struct RuleRow<'a> {
    /// Which dump it came from (the rule's own `source` is its `-s` match).
    pub artifact: &'a str,
    /// Table.
    pub table: &'a str,
    /// The rule (line, chain, tokens, parsed matches).
    #[serde(flatten)]
    pub rule: &'a Rule,
}

const SOURCES: &[&str] = &[
    layout::iptables::SAVE,
    layout::iptables::LEGACY_SAVE,
    layout::iptables::NFT_SAVE,
];

/// The match part of `iptables -L -n` for a rule, from its save tokens: the
/// options shown in columns are left out, the comment becomes `/* … */`, ports
/// become `dpt:`/`spt:`, DNAT's destination `to:`.
fn matches_text(r: &Rule) -> String {
    let mut out: Vec<String> = Vec::new();
    if let Some(c) = &r.comment {
        out.push(format!("/* {c} */"));
    }
    let t: Vec<&str> = r.tokens.iter().collect();
    let mut i = 0;
    while i < t.len() {
        let next = t.get(i + 1).copied().unwrap_or_default();
        match t[i] {
            "-p" | "-s" | "-d" | "-j" | "-g" => i += 2,
            "!" => i += 1,
            "-m" => i += 2,
            "--comment" => i += 2,
            "--dport" => {
                out.push(
                    format!("{} dpt:{next}", r.protocol.as_deref().unwrap_or(""))
                        .trim()
                        .to_string(),
                );
                i += 2;
            }
            "--sport" => {
                out.push(
                    format!("{} spt:{next}", r.protocol.as_deref().unwrap_or(""))
                        .trim()
                        .to_string(),
                );
                i += 2;
            }
            "--to-destination" => {
                out.push(format!("to:{next}"));
                i += 2;
            }
            other => {
                out.push(other.to_string());
                i += 1;
            }
        }
    }
    out.join(" ")
}

fn render_chain(dump: &IptablesDump, table: &str, chain: &str, out: &mut String) {
    let Some(t) = dump.tables.iter().find(|t| t.name == table) else {
        return;
    };
    let refs = t.rules.iter().filter(|r| r.target_name() == chain).count();
    match t
        .chain(chain)
        .and_then(|c| c.policy.as_deref())
        .filter(|p| *p != "-")
    {
        Some(policy) => out.push_str(&format!("Chain {chain} (policy {policy})\n")),
        None => out.push_str(&format!("Chain {chain} ({refs} references)\n")),
    }
    out.push_str("target     prot opt source               destination\n");
    for r in t.chain_rules(chain) {
        // iptables.c print_firewall: "%-9s " target, the inversion flag, "%-5s" protocol,
        // the fragment option column, then "%-20s " source and destination (with -n).
        let inv = |n: bool| if n { "!" } else { "" };
        let line = format!(
            "{:<9} {}{:<5}--  {:<20} {:<20} {}",
            r.target_name(),
            if r.protocol_negated { '!' } else { ' ' },
            r.protocol.as_deref().unwrap_or("all"),
            format!("{}{}", inv(r.source_negated), numeric(r.source.as_deref())),
            format!(
                "{}{}",
                inv(r.destination_negated),
                numeric(r.destination.as_deref())
            ),
            matches_text(r)
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

/// An address as `iptables -L -n` prints it: host masks dropped, none = `0.0.0.0/0`.
fn numeric(a: Option<&str>) -> String {
    match a {
        None => "0.0.0.0/0".into(),
        Some(a) => a
            .strip_suffix("/32")
            .or_else(|| a.strip_suffix("/128"))
            .unwrap_or(a)
            .to_string(),
    }
}

/// `inspect iptables`.
pub fn iptables(bundle: &Bundle, args: &InspectArgs) -> Result<Outcome, InspectError> {
    let mut found = None;
    for p in SOURCES {
        if let Some(t) = load::text(bundle, p)? {
            found = Some((*p, t));
            break;
        }
    }
    let Some((source, text)) = found else {
        return Ok(Outcome::NoData(no_data(
            "iptables",
            bundle,
            layout::iptables::SAVE,
        )));
    };
    let dump = iptables::parse_iptables_save(&text);
    let table_ok = |t: &str| args.table.as_deref().is_none_or(|want| want == t);
    let chain_ok = |c: &str| args.chain.as_deref().is_none_or(|want| want == c);
    if let Some(want) = args.table.as_deref().filter(|w| dump.table(w).is_none()) {
        return Ok(Outcome::NoData(format!(
            "no data for view iptables: {source} has no table {want}"
        )));
    }
    if let Some(want) = &args.chain {
        let exists = dump
            .tables
            .iter()
            .filter(|t| table_ok(&t.name))
            .any(|t| t.chain(want).is_some() || t.rules.iter().any(|r| &r.chain == want));
        if !exists {
            return Err(InspectError::BadFilter {
                flag: "--chain",
                value: want.clone(),
                reason: "no such chain in the selected table(s)",
            });
        }
    }
    if args.format == Format::Json {
        let rows: Vec<RuleRow> = dump
            .tables
            .iter()
            .filter(|t| table_ok(&t.name))
            .flat_map(|t| {
                t.rules
                    .iter()
                    .filter(|r| chain_ok(&r.chain))
                    .map(move |r| RuleRow {
                        artifact: source,
                        table: t.name.as_str(),
                        rule: r,
                    })
            })
            .collect();
        let mut s = serde_json::to_string_pretty(&rows)
            .map_err(|e| InspectError::Serialize(e.to_string()))?;
        s.push('\n');
        return Ok(Outcome::Rendered(s));
    }
    let mut out = String::new();
    for t in dump.tables.iter().filter(|t| table_ok(&t.name)) {
        if args.table.is_none() {
            out.push_str(&format!("# table {} ({source}:{})\n", t.name, t.line));
        }
        let mut chains: Vec<&str> = t.chains.iter().map(|c| c.name.as_str()).collect();
        for r in &t.rules {
            if !chains.contains(&r.chain.as_str()) {
                chains.push(r.chain.as_str());
            }
        }
        let mut first = true;
        for c in chains.into_iter().filter(|c| chain_ok(c)) {
            if !first {
                out.push('\n');
            }
            first = false;
            render_chain(&dump, &t.name, c, &mut out);
        }
        if args.table.is_none() {
            out.push('\n');
        }
    }
    Ok(Outcome::Rendered(out))
}

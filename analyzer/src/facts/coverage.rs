//! Parse coverage: for every raw artifact a parser reads, how many of its lines the
//! parser did not understand, and where the first ones are.
//!
//! Parsers keep such lines as [`crate::parse::Unparsed`]; this pass makes them
//! visible per artifact (`manifest`, `inspect … parse`, the `analyze` report), so a
//! view or finding built on a partly understood artifact never looks complete.

use std::io::BufReader;

use netsnap_bundle::{Bundle, layout::content};
use serde::Serialize;

use crate::parse::{self, Unparsed};

/// How many unparsed lines are quoted per artifact.
pub const MAX_QUOTED: usize = 3;

/// Parse coverage of one artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArtifactCoverage {
    /// Artifact path.
    pub path: String,
    /// Content id (which parser read it).
    pub content: String,
    /// Lines in the artifact.
    pub lines: usize,
    /// Lines the parser did not understand.
    pub unparsed: usize,
    /// The first of them (at most [`MAX_QUOTED`]), with line numbers and reasons.
    pub first: Vec<Unparsed>,
}

/// Runs the parser of every raw artifact with content that has one; artifacts without
/// a text parser (native JSON, verbatim files) are not listed.
pub fn parse_coverage(bundle: &Bundle) -> Vec<ArtifactCoverage> {
    parse_coverage_except(bundle, None)
}

/// [`parse_coverage`] without the artifact at `skip` (whose coverage the caller gets
/// elsewhere: `analyze` counts the conntrack table's during the fact build's pass).
pub fn parse_coverage_except(bundle: &Bundle, skip: Option<&str>) -> Vec<ArtifactCoverage> {
    bundle
        .manifest()
        .artifacts
        .iter()
        .filter(|rec| skip != Some(rec.path.as_str()))
        .filter_map(|rec| artifact_coverage(bundle, rec))
        .collect()
}

/// Whether an artifact of this content id is streamed line by line by its parser (the
/// conntrack table) rather than read whole.
pub fn is_streamed(c: &str) -> bool {
    matches!(c, content::CONNTRACK_LIST | content::PROC_NF_CONNTRACK)
}

/// The parse coverage of one artifact, if it has content and a text parser.
pub fn artifact_coverage(
    bundle: &Bundle,
    rec: &netsnap_bundle::manifest::ArtifactRecord,
) -> Option<ArtifactCoverage> {
    if !rec.status.has_content() {
        return None;
    }
    let c = rec.content.as_str();
    let streamed = is_streamed(c);
    if !streamed && !has_text_parser(c) {
        return None;
    }
    let cov = if streamed {
        let Some(Ok(file)) = bundle.open_artifact(&rec.path) else {
            return None;
        };
        let mut unparsed = Vec::new();
        let mut count = 0usize;
        let Ok(stats) = parse::conntrack::for_each_entry(BufReader::new(file), |r| {
            if let Err(u) = r {
                count += 1;
                if unparsed.len() < MAX_QUOTED {
                    unparsed.push(u);
                }
            }
        }) else {
            return None;
        };
        ArtifactCoverage {
            path: rec.path.clone(),
            content: rec.content.clone(),
            lines: stats.lines,
            unparsed: count,
            first: unparsed,
        }
    } else {
        // Capped like the parsers' own reads: a 2 GiB line must not be loaded here either.
        let Some(Ok(file)) = bundle.open_artifact(&rec.path) else {
            return None;
        };
        let Ok((text, cuts)) = crate::lines::read_text_capped(file) else {
            return None;
        };
        text_coverage(rec, &text, &cuts, unparsed_of(c, &text))
    };
    Some(cov)
}

/// The coverage of a text artifact read whole by [`crate::lines::read_text_capped`] as
/// `text` with its over-long `cuts`, given what its parser left unparsed (`parsed`: what
/// [`unparsed_of`] gives for the text). Shared with the fact build, which parses the
/// iptables saves anyway and hands their coverage to `analyze` rather than have them
/// parsed twice.
pub fn text_coverage(
    rec: &netsnap_bundle::manifest::ArtifactRecord,
    text: &str,
    cuts: &[crate::lines::Cut],
    parsed: Vec<Unparsed>,
) -> ArtifactCoverage {
    // A skipped over-long line was not understood either: it counts, first.
    let mut unparsed: Vec<Unparsed> = cuts
        .iter()
        .map(|cut| {
            Unparsed::new(
                usize::try_from(cut.line).unwrap_or(usize::MAX),
                "",
                format!(
                    "line of {} bytes, longer than {} MiB: skipped",
                    cut.bytes,
                    crate::lines::MAX_LINE_BYTES >> 20
                ),
            )
        })
        .collect();
    let cut_lines: Vec<usize> = unparsed.iter().map(|u| u.line).collect();
    unparsed.extend(parsed.into_iter().filter(|u| !cut_lines.contains(&u.line)));
    unparsed.sort_by_key(|u| u.line);
    ArtifactCoverage {
        path: rec.path.clone(),
        content: rec.content.clone(),
        lines: text.lines().count(),
        unparsed: unparsed.len(),
        first: unparsed.into_iter().take(MAX_QUOTED).collect(),
    }
}

fn has_text_parser(c: &str) -> bool {
    matches!(
        c,
        content::IPTABLES_SAVE
            | content::NFT_RULESET
            | content::IPVSADM_LIST
            | content::PROC_IP_VS
            | content::IPVSADM_CONNECTIONS
            | content::PROC_IP_VS_CONN
            | content::CONNTRACK_STATS
            | content::PROC_STAT_NF_CONNTRACK
            | content::IP_ADDR
            | content::IP_ROUTE
            | content::IP_RULE
            | content::IP_NEIGH
            | content::RESOLV_CONF
            | content::KERNEL_LOG
    )
}

/// The unparsed lines of one artifact's text, by its content id.
pub fn unparsed_of(c: &str, text: &str) -> Vec<Unparsed> {
    match c {
        content::IPTABLES_SAVE => parse::iptables::parse_iptables_save(text).unparsed,
        content::NFT_RULESET => parse::nft::parse_nft_ruleset(text).unparsed,
        content::IPVSADM_LIST | content::PROC_IP_VS => parse::ipvs::parse_ipvs_list(text).unparsed,
        content::IPVSADM_CONNECTIONS | content::PROC_IP_VS_CONN => {
            parse::ipvs::parse_ipvs_connections(text).unparsed
        }
        content::CONNTRACK_STATS => parse::conntrack::parse_conntrack_stats(text).unparsed,
        content::PROC_STAT_NF_CONNTRACK => parse::conntrack::parse_proc_stat(text).unparsed,
        content::CONNTRACK_LIST | content::PROC_NF_CONNTRACK => {
            parse::conntrack::parse_conntrack_list(text).unparsed
        }
        content::IP_ADDR => parse::ip::parse_addr(text).unparsed,
        content::IP_ROUTE => parse::ip::parse_routes(text).unparsed,
        content::IP_RULE => parse::ip::parse_rules(text).unparsed,
        content::IP_NEIGH => parse::ip::parse_neigh(text).unparsed,
        content::RESOLV_CONF => parse::dns::parse_resolv_conf(text).unparsed,
        content::KERNEL_LOG => parse::kernel_log::parse_kernel_log(text).unparsed,
        _ => Vec::new(),
    }
}

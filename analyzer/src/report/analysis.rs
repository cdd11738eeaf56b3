//! `netsnap-analyze analyze`: runs the rules over one or more bundles and renders
//! the findings as text, JSON (versioned envelope) or Markdown.
//!
//! Findings are sorted most severe first, then by node, rule and subject, so the
//! output is deterministic. Evidence lines are quoted from the bundle itself
//! (`path:line: text`), read in one streaming pass per cited artifact.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};

use netsnap_bundle::Bundle;
use serde::Serialize;

use crate::facts::Facts;
use crate::rules::{Outcome, RuleSet, Severity};

/// Why an analysis could not run (never a rule's fault: those are "not evaluated").
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnalyzeError {
    /// The fact document could not be converted for the rules.
    #[error("cannot prepare facts for the rules: {0}")]
    Facts(String),
}

/// Version of the JSON report layout.
pub const REPORT_SCHEMA_VERSION: u32 = 1;
/// Most evidence lines kept per finding.
pub const MAX_EVIDENCE: usize = 8;
/// Longest quoted evidence line (characters).
const MAX_EVIDENCE_TEXT: usize = 240;

/// One evidence line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evidence {
    /// Artifact path.
    pub path: String,
    /// 1-based line, when the artifact is line-oriented.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// The line's text, quoted from the bundle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// Node the bundle describes.
    pub node: String,
    /// Rule id.
    pub rule_id: String,
    /// Rule title.
    pub title: String,
    /// Severity.
    pub severity: Severity,
    /// Rule category.
    pub category: String,
    /// What the finding is about.
    pub subject: String,
    /// Message.
    pub message: String,
    /// Evidence lines.
    pub evidence: Vec<Evidence>,
    /// What to do.
    pub remediation: String,
    /// Upstream references.
    pub references: Vec<String>,
}

/// A rule that could not be evaluated on a node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotEvaluated {
    /// Node.
    pub node: String,
    /// Rule id.
    pub rule_id: String,
    /// Why.
    pub reason: String,
}

/// An artifact the collector could not produce (or produced partially).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CollectionError {
    /// Node.
    pub node: String,
    /// Artifact path.
    pub path: String,
    /// `failed`, `skipped`, `unavailable`, `partial`.
    pub status: String,
    /// Reason from the manifest.
    pub reason: String,
}

/// An artifact with lines its parser did not understand: views and findings built on
/// it may miss what those lines held.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnparsedArtifact {
    /// Node.
    pub node: String,
    /// Artifact path.
    pub path: String,
    /// Lines in the artifact.
    pub lines: usize,
    /// Lines not understood.
    pub unparsed: usize,
    /// The first of them: 1-based line.
    pub first_line: usize,
    /// Why the first was not understood.
    pub reason: String,
}

/// One analyzed bundle.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BundleSummary {
    /// Node name.
    pub node: String,
    /// Bundle path as given.
    pub path: String,
    /// Capture time.
    pub captured_at: String,
    /// Kernel release.
    pub kernel: String,
    /// Detected kube-proxy mode.
    pub proxy_mode: String,
}

/// Finding counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Critical findings.
    pub critical: usize,
    /// Error findings.
    pub error: usize,
    /// Warning findings.
    pub warning: usize,
    /// Info findings.
    pub info: usize,
    /// Rules evaluated per bundle.
    pub rules_evaluated: usize,
    /// Rule/node pairs not evaluated.
    pub not_evaluated: usize,
}

/// The whole report (the `--format json` document).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Layout version ([`REPORT_SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// Always `netsnap-analysis`.
    pub kind: &'static str,
    /// Analyzed bundles.
    pub bundles: Vec<BundleSummary>,
    /// Counts.
    pub summary: Summary,
    /// Findings, most severe first.
    pub findings: Vec<Finding>,
    /// Rules not evaluated and why.
    pub not_evaluated: Vec<NotEvaluated>,
    /// Rules evaluated on part of their data (a capped conntrack listing, an optional
    /// source missing) and what was missing: their silence is not a clean bill.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub partial_data: Vec<NotEvaluated>,
    /// Artifacts missing or partial in the bundles.
    pub collection_errors: Vec<CollectionError>,
    /// Artifacts with lines their parser did not understand.
    pub unparsed_artifacts: Vec<UnparsedArtifact>,
}

/// Evaluates `rules` over facts; evidence is not quoted (no bundle at hand).
pub fn evaluate_facts(
    facts: &Facts,
    rules: &RuleSet,
) -> Result<(Vec<Finding>, Vec<NotEvaluated>, usize), AnalyzeError> {
    let node = facts.node.name.clone();
    let mut findings = Vec::new();
    let mut not_evaluated = Vec::new();
    let mut evaluated = 0;
    for (rule, outcome) in rules.evaluate(facts).map_err(AnalyzeError::Facts)? {
        match outcome {
            Outcome::NotEvaluated(reason) => not_evaluated.push(NotEvaluated {
                node: node.clone(),
                rule_id: rule.spec.id.clone(),
                reason,
            }),
            Outcome::NotApplicable => evaluated += 1,
            Outcome::Findings(fs) => {
                evaluated += 1;
                for f in fs {
                    findings.push(Finding {
                        node: node.clone(),
                        rule_id: f.rule_id,
                        title: rule.spec.title.clone(),
                        severity: f.severity,
                        category: rule.spec.category.clone(),
                        subject: f.subject,
                        message: f.message,
                        evidence: f
                            .evidence
                            .into_iter()
                            .take(MAX_EVIDENCE)
                            .map(|s| Evidence {
                                path: s.path,
                                line: s.line,
                                text: None,
                            })
                            .collect(),
                        remediation: rule.spec.remediation.trim().to_string(),
                        references: rule.spec.references.clone(),
                    });
                }
            }
        }
    }
    Ok((findings, not_evaluated, evaluated))
}

/// Fills evidence texts by reading each cited artifact once.
fn quote_evidence(bundle: &Bundle, findings: &mut [Finding]) {
    let mut wanted: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    for f in findings.iter() {
        for e in &f.evidence {
            if let Some(l) = e.line {
                wanted.entry(e.path.clone()).or_default().insert(l);
            }
        }
    }
    let mut texts: BTreeMap<(String, u64), String> = BTreeMap::new();
    for (path, lines) in wanted {
        let Some(Ok(file)) = bundle.open_artifact(&path) else {
            continue;
        };
        let Some(&last) = lines.last() else { continue };
        for (i, l) in BufReader::new(file).split(b'\n').enumerate() {
            let n = i as u64 + 1;
            if n > last {
                break;
            }
            let Ok(l) = l else { break };
            if lines.contains(&n) {
                let text = String::from_utf8_lossy(&l).trim_end().to_string();
                let text = if text.chars().count() > MAX_EVIDENCE_TEXT {
                    let cut: String = text.chars().take(MAX_EVIDENCE_TEXT).collect();
                    format!("{cut}…")
                } else {
                    text
                };
                texts.insert((path.clone(), n), text);
            }
        }
    }
    for f in findings.iter_mut() {
        for e in &mut f.evidence {
            if let Some(l) = e.line {
                e.text = texts.get(&(e.path.clone(), l)).cloned();
            }
        }
    }
}

/// Analyzes bundles: builds facts, evaluates rules, quotes evidence, sorts.
pub fn analyze(bundles: &[(String, &Bundle)], rules: &RuleSet) -> Result<Report, AnalyzeError> {
    let mut report = Report {
        schema_version: REPORT_SCHEMA_VERSION,
        kind: "netsnap-analysis",
        bundles: Vec::new(),
        summary: Summary::default(),
        findings: Vec::new(),
        not_evaluated: Vec::new(),
        partial_data: Vec::new(),
        collection_errors: Vec::new(),
        unparsed_artifacts: Vec::new(),
    };
    for (path, bundle) in bundles {
        let t0 = std::time::Instant::now();
        // Parse coverage re-reads the text artifacts: beside the fact build, not after it.
        let (facts, coverage) = std::thread::scope(|scope| {
            let coverage = scope.spawn(|| crate::facts::coverage::parse_coverage(bundle));
            let facts = Facts::from_bundle(bundle);
            (facts, coverage.join().unwrap_or_default())
        });
        for c in coverage.into_iter().filter(|c| c.unparsed > 0) {
            let first = c.first.first();
            report.unparsed_artifacts.push(UnparsedArtifact {
                node: facts.node.name.clone(),
                path: c.path,
                lines: c.lines,
                unparsed: c.unparsed,
                first_line: first.map_or(0, |u| u.line),
                reason: first.map(|u| u.reason.clone()).unwrap_or_default(),
            });
        }
        let t1 = std::time::Instant::now();
        let (mut findings, not_evaluated, evaluated) = evaluate_facts(&facts, rules)?;
        let t2 = std::time::Instant::now();
        quote_evidence(bundle, &mut findings);
        tracing::info!(
            bundle = %path,
            facts_ms = (t1 - t0).as_millis() as u64,
            rules_ms = (t2 - t1).as_millis() as u64,
            evidence_ms = t2.elapsed().as_millis() as u64,
            findings = findings.len(),
            "analyzed"
        );
        report.summary.rules_evaluated = report.summary.rules_evaluated.max(evaluated);
        report.bundles.push(BundleSummary {
            node: facts.node.name.clone(),
            path: path.clone(),
            captured_at: facts.node.captured_at.clone(),
            kernel: facts.node.kernel.clone(),
            proxy_mode: serde_json::to_value(facts.node.proxy_mode)
                .map_err(|e| AnalyzeError::Facts(e.to_string()))?
                .as_str()
                .unwrap_or_default()
                .to_string(),
        });
        for m in facts
            .collection
            .missing
            .iter()
            .chain(&facts.collection.partial)
        {
            // Unavailable means "not on this node" (no IPVS module): information, not an error.
            if m.status == "unavailable" {
                continue;
            }
            report.collection_errors.push(CollectionError {
                node: facts.node.name.clone(),
                path: m.path.clone(),
                status: m.status.clone(),
                reason: m.reason.clone(),
            });
        }
        for rule in rules.rules() {
            if not_evaluated.iter().any(|n| n.rule_id == rule.spec.id) {
                continue;
            }
            if let Some(note) = rule.data_note(&facts) {
                report.partial_data.push(NotEvaluated {
                    node: facts.node.name.clone(),
                    rule_id: rule.spec.id.clone(),
                    reason: note,
                });
            }
        }
        report.findings.extend(findings);
        report.not_evaluated.extend(not_evaluated);
        // A big node's facts take a while to free: do it beside the report.
        std::thread::spawn(move || drop(facts));
    }
    finish(&mut report);
    Ok(report)
}

/// Sorts findings and recomputes the summary.
pub fn finish(report: &mut Report) {
    report.findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.node.cmp(&b.node))
            .then_with(|| a.rule_id.cmp(&b.rule_id))
            .then_with(|| a.subject.cmp(&b.subject))
    });
    let s = &mut report.summary;
    s.critical = 0;
    s.error = 0;
    s.warning = 0;
    s.info = 0;
    for f in &report.findings {
        match f.severity {
            Severity::Critical => s.critical += 1,
            Severity::Error => s.error += 1,
            Severity::Warning => s.warning += 1,
            Severity::Info => s.info += 1,
        }
    }
    s.not_evaluated = report.not_evaluated.len();
}

impl Report {
    /// True when some finding is at or above `fail_on`.
    pub fn fails(&self, fail_on: Severity) -> bool {
        self.findings.iter().any(|f| f.severity >= fail_on)
    }
}

fn evidence_line(e: &Evidence) -> String {
    match (e.line, &e.text) {
        (Some(l), Some(t)) => format!("{}:{l}: {t}", e.path),
        (Some(l), None) => format!("{}:{l}", e.path),
        (None, _) => e.path.clone(),
    }
}

struct Style {
    on: bool,
}

impl Style {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn severity(&self, sev: Severity) -> String {
        let label = sev.as_str().to_uppercase();
        let code = match sev {
            Severity::Critical => "1;35",
            Severity::Error => "1;31",
            Severity::Warning => "1;33",
            Severity::Info => "1;36",
        };
        self.paint(code, &label)
    }
}

fn counts_line(r: &Report) -> String {
    let s = &r.summary;
    format!(
        "{} finding(s): {} critical, {} error, {} warning, {} info; {} rule evaluation(s) skipped for missing data",
        r.findings.len(),
        s.critical,
        s.error,
        s.warning,
        s.info,
        s.not_evaluated
    )
}

/// Renders the text report; `color` enables ANSI colours.
pub fn render_text(r: &Report, color: bool) -> String {
    let st = Style { on: color };
    let mut out = String::new();
    for b in &r.bundles {
        let _ = writeln!(
            out,
            "{} {}  captured {}  kernel {}  kube-proxy mode {}",
            st.paint("1", "node"),
            st.paint("1", &b.node),
            b.captured_at,
            b.kernel,
            b.proxy_mode
        );
    }
    let _ = writeln!(out, "{}\n", counts_line(r));
    let multi = r.bundles.len() > 1;
    for sev in Severity::ALL_DESC {
        let group: Vec<&Finding> = r.findings.iter().filter(|f| f.severity == sev).collect();
        if group.is_empty() {
            continue;
        }
        let _ = writeln!(out, "{} ({})", st.severity(sev), group.len());
        for f in group {
            let node = if multi {
                format!(" [node {}]", f.node)
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "  {} {}{node}",
                st.paint("1", &format!("{}:", f.rule_id)),
                f.subject
            );
            let _ = writeln!(out, "    {}", f.message);
            for e in &f.evidence {
                let _ = writeln!(out, "    {} {}", st.paint("2", "|"), evidence_line(e));
            }
            let _ = writeln!(out, "    fix: {}", one_line(&f.remediation));
            let _ = writeln!(out);
        }
    }
    if r.findings.is_empty() {
        let _ = writeln!(out, "No findings.\n");
    }
    if !r.not_evaluated.is_empty() {
        let _ = writeln!(out, "{}", st.paint("1", "Not evaluated (missing data):"));
        for n in &r.not_evaluated {
            let node = if multi {
                format!(" [node {}]", n.node)
            } else {
                String::new()
            };
            let _ = writeln!(out, "  {}{node}: {}", n.rule_id, n.reason);
        }
        let _ = writeln!(out);
    }
    if !r.partial_data.is_empty() {
        let _ = writeln!(
            out,
            "{}",
            st.paint(
                "1",
                "Evaluated on partial data (no finding is not a clean bill):"
            )
        );
        for n in &r.partial_data {
            let node = if multi {
                format!(" [node {}]", n.node)
            } else {
                String::new()
            };
            let _ = writeln!(out, "  {}{node}: {}", n.rule_id, n.reason);
        }
        let _ = writeln!(out);
    }
    if !r.unparsed_artifacts.is_empty() {
        let _ = writeln!(out, "{}", st.paint("1", "Lines not understood:"));
        for u in &r.unparsed_artifacts {
            let node = if multi {
                format!(" [node {}]", u.node)
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "  {}{node}: {} of {} line(s), first at line {}: {}",
                u.path, u.unparsed, u.lines, u.first_line, u.reason
            );
        }
        let _ = writeln!(out);
    }
    if !r.collection_errors.is_empty() {
        let _ = writeln!(out, "{}", st.paint("1", "Collection errors:"));
        for c in &r.collection_errors {
            let _ = writeln!(
                out,
                "  {} {} ({}){}",
                c.node,
                c.path,
                c.status,
                if c.reason.is_empty() {
                    String::new()
                } else {
                    format!(": {}", c.reason)
                }
            );
        }
    }
    out
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|")
}

/// Renders the Markdown report (to paste into a ticket).
pub fn render_markdown(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# netsnap analysis\n");
    let _ = writeln!(
        out,
        "| node | captured | kernel | kube-proxy mode |\n|---|---|---|---|"
    );
    for b in &r.bundles {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            md_escape(&b.node),
            b.captured_at,
            md_escape(&b.kernel),
            b.proxy_mode
        );
    }
    let _ = writeln!(out, "\n{}\n", counts_line(r));
    for sev in Severity::ALL_DESC {
        let group: Vec<&Finding> = r.findings.iter().filter(|f| f.severity == sev).collect();
        if group.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "## {} ({})\n",
            sev.as_str().to_uppercase(),
            group.len()
        );
        for f in group {
            let _ = writeln!(
                out,
                "### `{}` {} (node {})\n",
                f.rule_id,
                md_escape(&f.subject),
                md_escape(&f.node)
            );
            let _ = writeln!(out, "{}\n", f.message);
            if !f.evidence.is_empty() {
                let _ = writeln!(out, "```text");
                for e in &f.evidence {
                    let _ = writeln!(out, "{}", evidence_line(e));
                }
                let _ = writeln!(out, "```\n");
            }
            let _ = writeln!(out, "**Fix:** {}\n", one_line(&f.remediation));
            let refs: Vec<String> = f
                .references
                .iter()
                .map(|u| {
                    if u.starts_with("http") {
                        format!("<{u}>")
                    } else {
                        u.clone()
                    }
                })
                .collect();
            let _ = writeln!(out, "References: {}\n", refs.join(", "));
        }
    }
    if !r.not_evaluated.is_empty() {
        let _ = writeln!(
            out,
            "## Not evaluated\n\n| node | rule | reason |\n|---|---|---|"
        );
        for n in &r.not_evaluated {
            let _ = writeln!(
                out,
                "| {} | `{}` | {} |",
                md_escape(&n.node),
                n.rule_id,
                md_escape(&n.reason)
            );
        }
        let _ = writeln!(out);
    }
    if !r.partial_data.is_empty() {
        let _ = writeln!(
            out,
            "## Evaluated on partial data\n\n| node | rule | what was missing |\n|---|---|---|"
        );
        for n in &r.partial_data {
            let _ = writeln!(
                out,
                "| {} | `{}` | {} |",
                md_escape(&n.node),
                n.rule_id,
                md_escape(&n.reason)
            );
        }
        let _ = writeln!(out);
    }
    if !r.unparsed_artifacts.is_empty() {
        let _ = writeln!(
            out,
            "## Lines not understood\n\n| node | artifact | lines not understood | first |\n|---|---|---|---|"
        );
        for u in &r.unparsed_artifacts {
            let _ = writeln!(
                out,
                "| {} | `{}` | {} of {} | line {}: {} |",
                md_escape(&u.node),
                u.path,
                u.unparsed,
                u.lines,
                u.first_line,
                md_escape(&u.reason)
            );
        }
        let _ = writeln!(out);
    }
    if !r.collection_errors.is_empty() {
        let _ = writeln!(
            out,
            "## Collection errors\n\n| node | artifact | status | reason |\n|---|---|---|---|"
        );
        for c in &r.collection_errors {
            let _ = writeln!(
                out,
                "| {} | `{}` | {} | {} |",
                md_escape(&c.node),
                c.path,
                c.status,
                md_escape(&c.reason)
            );
        }
    }
    out
}

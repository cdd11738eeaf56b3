//! The analyzer's pipeline: bundles in, a [`Report`] out. Builds each bundle's facts
//! (`crate::facts`), evaluates the rules over them (`crate::rules`), quotes the evidence
//! lines from the bundle, then the cluster facts and rules when there are several nodes.
//! `crate::report` only renders what this returns.
//!
//! Findings are sorted most severe first, then by node, rule and subject, so the
//! output is deterministic. Evidence lines are quoted from the bundle itself
//! (`path:line: text`), read in one streaming pass per cited artifact.

pub mod cluster;

use std::collections::{BTreeMap, BTreeSet};

use netsnap_bundle::Bundle;
use serde::Serialize;

use crate::facts::Facts;
use crate::rules::{Outcome, RawFinding, Rule, RuleSet, Severity};

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
/// Above this many findings of one rule (and severity) on one node, they are reported as one
/// aggregated finding: a report stays readable and bounded whatever the node's size.
pub const AGGREGATE_ABOVE: usize = 50;
/// Subjects an aggregated finding lists (the first ones, in subject order).
pub const AGGREGATE_SUBJECTS: usize = 10;

/// One evidence line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evidence {
    /// The node whose bundle holds the artifact, for a cluster finding's evidence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
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
    /// Set when this finding stands for many findings of the rule (more than
    /// [`AGGREGATE_ABOVE`]): how many, and the first subjects.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<Aggregate>,
}

/// Many findings of one rule folded into one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Aggregate {
    /// How many findings (subjects) this one stands for.
    pub count: usize,
    /// The first [`AGGREGATE_SUBJECTS`] subjects, sorted.
    pub first_subjects: Vec<String>,
}

/// A rule whose evaluation failed (its own fault, not the bundle's): exceeded its evaluation
/// budget. Distinct from [`NotEvaluated`], which means the data it needs is missing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleFailure {
    /// Node.
    pub node: String,
    /// Rule id.
    pub rule_id: String,
    /// What went wrong.
    pub reason: String,
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

/// A rule that ran on a node and found nothing (a check that passed), or whose
/// precondition said it does not apply there.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PassedCheck {
    /// Node.
    pub node: String,
    /// Rule id.
    pub rule_id: String,
    /// Rule title.
    pub title: String,
    /// True when the precondition was false: the rule does not apply to this node.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub not_applicable: bool,
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
    /// Rule/node pairs whose evaluation failed (rule errors).
    pub rule_errors: usize,
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
    /// Rules whose evaluation failed (budget exceeded): no answer, and not for missing data.
    pub rule_errors: Vec<RuleFailure>,
    /// Rules evaluated on part of their data (a capped conntrack listing, an optional
    /// source missing) and what was missing: their silence is not a clean bill.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub partial_data: Vec<NotEvaluated>,
    /// Artifacts that failed or are partial in the bundles.
    pub collection_errors: Vec<CollectionError>,
    /// Artifacts the collector skipped on purpose (`--no-api`, "not needed", the same
    /// output as another artifact): planned, not errors.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<CollectionError>,
    /// Artifacts with lines their parser did not understand.
    pub unparsed_artifacts: Vec<UnparsedArtifact>,
    /// Rules that ran and found nothing (or do not apply), per node: the checks that passed.
    pub passed: Vec<PassedCheck>,
    /// With two or more node bundles: the per-node summary and how the cluster rules ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<cluster::ClusterSummary>,
}

/// What [`evaluate_facts`] found on one node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evaluation {
    /// Findings (not yet aggregated).
    pub findings: Vec<Finding>,
    /// Rules not evaluated for missing data.
    pub not_evaluated: Vec<NotEvaluated>,
    /// Rules whose evaluation failed.
    pub rule_errors: Vec<RuleFailure>,
    /// Rules evaluated.
    pub evaluated: usize,
    /// Rules evaluated without a finding.
    pub passed: Vec<PassedCheck>,
}

/// Evaluates `rules` over facts; evidence is not quoted (no bundle at hand).
pub fn evaluate_facts(facts: &Facts, rules: &RuleSet) -> Result<Evaluation, AnalyzeError> {
    let node = facts.node.name.clone();
    let mut findings = Vec::new();
    let mut not_evaluated = Vec::new();
    let mut rule_errors = Vec::new();
    let mut passed = Vec::new();
    let mut evaluated = 0;
    for (rule, outcome) in rules.evaluate(facts).map_err(AnalyzeError::Facts)? {
        match outcome {
            Outcome::RuleError(reason) => rule_errors.push(RuleFailure {
                node: node.clone(),
                rule_id: rule.spec.id.clone(),
                reason,
            }),
            Outcome::NotEvaluated(reason) => not_evaluated.push(NotEvaluated {
                node: node.clone(),
                rule_id: rule.spec.id.clone(),
                reason,
            }),
            Outcome::NotApplicable => {
                evaluated += 1;
                passed.push(PassedCheck {
                    node: node.clone(),
                    rule_id: rule.spec.id.clone(),
                    title: rule.spec.title.clone(),
                    not_applicable: true,
                });
            }
            Outcome::Findings(fs) if fs.is_empty() => {
                evaluated += 1;
                passed.push(PassedCheck {
                    node: node.clone(),
                    rule_id: rule.spec.id.clone(),
                    title: rule.spec.title.clone(),
                    not_applicable: false,
                });
            }
            Outcome::Findings(fs) => {
                evaluated += 1;
                findings.extend(fs.into_iter().map(|f| Finding::of_rule(&node, rule, f)));
            }
        }
    }
    Ok(Evaluation {
        findings,
        not_evaluated,
        rule_errors,
        evaluated,
        passed,
    })
}

/// Folds the findings of one rule and severity on one node into one when there are more
/// than [`AGGREGATE_ABOVE`]: the first finding (in subject order) keeps its message and
/// evidence, and carries the count and the first [`AGGREGATE_SUBJECTS`] subjects.
pub fn aggregate(findings: Vec<Finding>) -> Vec<Finding> {
    let mut groups: BTreeMap<(String, String, Severity), Vec<Finding>> = BTreeMap::new();
    for f in findings {
        groups
            .entry((f.node.clone(), f.rule_id.clone(), f.severity))
            .or_default()
            .push(f);
    }
    let mut out = Vec::new();
    for (_, mut group) in groups {
        if group.len() <= AGGREGATE_ABOVE {
            out.extend(group);
            continue;
        }
        group.sort_by(|a, b| a.subject.cmp(&b.subject));
        let count = group.len();
        let first_subjects: Vec<String> = group
            .iter()
            .take(AGGREGATE_SUBJECTS)
            .map(|f| f.subject.clone())
            .collect();
        let Some(mut first) = group.into_iter().next() else {
            continue;
        };
        first.subject = format!("{count} subjects");
        first.message = format!(
            "{count} findings of this rule; the first: {}",
            first.message
        );
        first.aggregate = Some(Aggregate {
            count,
            first_subjects,
        });
        out.push(first);
    }
    out
}

/// The number of subjects a finding stands for (1, or the aggregate's count).
pub(crate) fn weight(f: &Finding) -> usize {
    f.aggregate.as_ref().map_or(1, |a| a.count)
}

/// Fills evidence texts by reading each cited artifact once.
fn quote_evidence(bundle: &Bundle, findings: &mut [Finding]) {
    quote_evidence_of(bundle, findings, None);
}

/// Fills the texts of the evidence in `node`'s bundle (`None`: a node finding's own bundle).
pub(crate) fn quote_evidence_of(bundle: &Bundle, findings: &mut [Finding], node: Option<&str>) {
    let mut wanted: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    for f in findings.iter() {
        for e in f.evidence.iter().filter(|e| e.node.as_deref() == node) {
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
        // Over-long lines come back empty (the facts noted them); only the quoted ones are
        // kept, whole: JSON carries them exact, the human formats cut them when rendering.
        let _ = crate::lines::for_each_line(file, crate::lines::MAX_LINE_BYTES, |n, l| {
            if n > last {
                return false;
            }
            if lines.contains(&n) {
                let text = String::from_utf8_lossy(l).trim_end().to_string();
                texts.insert((path.clone(), n), text);
            }
            true
        });
    }
    for f in findings.iter_mut() {
        for e in f.evidence.iter_mut().filter(|e| e.node.as_deref() == node) {
            if let Some(l) = e.line {
                e.text = texts.get(&(e.path.clone(), l)).cloned();
            }
        }
    }
}

/// Analyzes bundles: builds facts, evaluates rules, quotes evidence, sorts.
pub fn analyze(bundles: &[(String, &Bundle)], rules: &RuleSet) -> Result<Report, AnalyzeError> {
    analyze_inner(bundles, rules, false).map(|(r, _)| r)
}

/// [`analyze`], also returning each bundle's facts (in bundle order) for callers that
/// compare or walk them (`diff`, `trace`): one fact build per bundle, shared.
pub fn analyze_keeping_facts(
    bundles: &[(String, &Bundle)],
    rules: &RuleSet,
) -> Result<(Report, Vec<Facts>), AnalyzeError> {
    analyze_inner(bundles, rules, true)
}

fn analyze_inner(
    bundles: &[(String, &Bundle)],
    rules: &RuleSet,
    keep: bool,
) -> Result<(Report, Vec<Facts>), AnalyzeError> {
    let mut kept = Vec::new();
    let mut report = Report {
        schema_version: REPORT_SCHEMA_VERSION,
        kind: "netsnap-analysis",
        bundles: Vec::new(),
        summary: Summary::default(),
        findings: Vec::new(),
        not_evaluated: Vec::new(),
        rule_errors: Vec::new(),
        partial_data: Vec::new(),
        collection_errors: Vec::new(),
        skipped: Vec::new(),
        unparsed_artifacts: Vec::new(),
        passed: Vec::new(),
        cluster: None,
    };
    // Two or more bundles: each node's extract for the cluster document, taken before its
    // facts are freed.
    let mut cluster_inputs = Vec::new();
    for (path, bundle) in bundles {
        let t0 = std::time::Instant::now();
        // Parse coverage re-reads the text artifacts: beside the fact build, not after it;
        // but the conntrack table's and the iptables saves' (the largest artifacts, parsed
        // by the fact build anyway) are counted by the fact build's own parse.
        let (facts, coverage) = std::thread::scope(|scope| {
            use crate::facts::coverage;
            use netsnap_bundle::layout::content;
            let table = crate::facts::build::conntrack_table_path(bundle).filter(|p| {
                bundle
                    .record(p)
                    .is_some_and(|r| coverage::is_streamed(&r.content))
            });
            let by_facts = move |r: &netsnap_bundle::manifest::ArtifactRecord| {
                Some(r.path.as_str()) == table || r.content == content::IPTABLES_SAVE
            };
            let others = scope.spawn(move || {
                bundle
                    .manifest()
                    .artifacts
                    .iter()
                    .filter(|r| !by_facts(r))
                    .filter_map(|r| coverage::artifact_coverage(bundle, r))
                    .collect::<Vec<_>>()
            });
            let (facts, mut counted) = crate::facts::build::from_bundle_with_table_coverage(bundle);
            let mut all = others.join().unwrap_or_default();
            // In manifest order, as `parse_coverage` lists them; an artifact the fact build
            // did not count (a save it skipped, a pass that stopped early) is counted here.
            for r in bundle.manifest().artifacts.iter().filter(|r| by_facts(r)) {
                match counted.iter().position(|c| c.path == r.path) {
                    Some(i) => all.push(counted.swap_remove(i)),
                    None => all.extend(coverage::artifact_coverage(bundle, r)),
                }
            }
            let m = bundle.manifest();
            all.sort_by_key(|c| m.artifacts.iter().position(|r| r.path == c.path));
            (facts, all)
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
        let Evaluation {
            findings,
            not_evaluated,
            rule_errors,
            evaluated,
            passed,
        } = evaluate_facts(&facts, rules)?;
        let mut findings = aggregate(findings);
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
            let record = CollectionError {
                node: facts.node.name.clone(),
                path: m.path.clone(),
                status: m.status.clone(),
                reason: m.reason.clone(),
            };
            // Skipped on purpose is a plan, not an error.
            if m.status == "skipped" {
                report.skipped.push(record);
            } else {
                report.collection_errors.push(record);
            }
        }
        if bundles.len() > 1 {
            cluster_inputs.push(crate::facts::cluster::NodeInput::extract(
                path, bundle, &facts,
            ));
        }
        for rule in rules.rules() {
            if rule.spec.scope != crate::rules::spec::Scope::Node {
                continue;
            }
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
        report.rule_errors.extend(rule_errors);
        report.passed.extend(passed);
        if keep {
            kept.push(facts);
        } else {
            // A big node's facts take a while to free: do it beside the report.
            std::thread::spawn(move || drop(facts));
        }
    }
    if bundles.len() > 1 {
        cluster::evaluate(bundles, &cluster_inputs, rules, &mut report)?;
    }
    finish(&mut report);
    Ok((report, kept))
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
        let n = weight(f);
        match f.severity {
            Severity::Critical => s.critical += n,
            Severity::Error => s.error += n,
            Severity::Warning => s.warning += n,
            Severity::Info => s.info += n,
        }
    }
    s.not_evaluated = report.not_evaluated.len();
    s.rule_errors = report.rule_errors.len();
}

impl Finding {
    /// A rule's raw finding as the report shows it, on `node`: the rule's title, category,
    /// remediation and references, at most [`MAX_EVIDENCE`] evidence lines (quoted later).
    pub(crate) fn of_rule(node: &str, rule: &Rule, f: RawFinding) -> Finding {
        Finding {
            node: node.to_string(),
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
                    node: s.node,
                    path: s.path,
                    line: s.line,
                    text: None,
                })
                .collect(),
            remediation: rule.spec.remediation.trim().to_string(),
            references: rule.spec.references.clone(),
            aggregate: None,
        }
    }
}

impl Report {
    /// True when some finding is at or above `fail_on`.
    pub fn fails(&self, fail_on: Severity) -> bool {
        self.findings.iter().any(|f| f.severity >= fail_on)
    }
}

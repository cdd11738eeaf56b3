//! Runs the test cases carried by rule files (`tests:`): facts in, findings out.

use std::collections::BTreeMap;

use serde::Serialize;

use super::engine::{Outcome, Rule, RuleSet, prepare_doc, prepare_facts};
use super::spec::Scope;
use crate::facts::cluster::ClusterFacts;
use crate::facts::model::Facts;

/// Result of one test case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    /// Rule id.
    pub rule_id: String,
    /// Case name.
    pub case: String,
    /// Passed.
    pub passed: bool,
    /// What went wrong (empty when passed).
    pub detail: String,
    /// Findings produced (for `--verbose` output and debugging).
    pub findings: usize,
    /// The rule itself failed (an evaluation error): not a wrong expectation.
    pub rule_error: bool,
}

/// Runs one rule's test cases.
pub fn run_rule(set: &RuleSet, rule: &Rule) -> Vec<CaseResult> {
    rule.spec
        .tests
        .iter()
        .map(|t| {
            let mut res = CaseResult {
                rule_id: rule.spec.id.clone(),
                case: t.name.clone(),
                passed: false,
                detail: String::new(),
                findings: 0,
                rule_error: false,
            };
            let facts_json = if t.facts.is_null() {
                serde_json::json!({})
            } else {
                t.facts.clone()
            };
            let params: BTreeMap<_, _> = t.params.clone();
            let outcome = match rule.spec.scope {
                Scope::Node => serde_json::from_value::<Facts>(facts_json)
                    .map_err(|e| format!("facts do not match the fact model: {e}"))
                    .and_then(|facts| {
                        let value = prepare_facts(&facts)?;
                        Ok(rule.evaluate(set.env(), &facts, &value, &params))
                    }),
                Scope::Cluster => serde_json::from_value::<ClusterFacts>(facts_json)
                    .map_err(|e| format!("facts do not match the cluster fact model: {e}"))
                    .and_then(|facts| {
                        let value = prepare_doc(&facts)?;
                        Ok(rule.evaluate(set.env(), &facts, &value, &params))
                    }),
            };
            let outcome = match outcome {
                Ok(o) => o,
                Err(e) => {
                    res.detail = e;
                    return res;
                }
            };
            let e = &t.expect;
            match outcome {
                Outcome::NotEvaluated(reason) => {
                    if e.not_evaluated {
                        res.passed = true;
                    } else {
                        res.detail = format!("not evaluated: {reason}");
                    }
                }
                Outcome::RuleError(reason) => {
                    res.rule_error = true;
                    res.detail = format!("rule error: {reason}");
                }
                Outcome::NotApplicable | Outcome::Findings(_) if e.not_evaluated => {
                    res.detail = "expected not evaluated, but it was evaluated".into();
                }
                Outcome::NotApplicable => {
                    if e.count == 0 {
                        res.passed = true;
                    } else {
                        res.detail =
                            format!("expected {} finding(s), precondition was false", e.count);
                    }
                }
                Outcome::Findings(f) => {
                    res.findings = f.len();
                    let subjects: Vec<String> = f.iter().map(|x| x.subject.clone()).collect();
                    if f.len() != e.count {
                        res.detail = format!(
                            "expected {} finding(s), got {}: {:?}",
                            e.count,
                            f.len(),
                            f.iter()
                                .map(|x| format!("{}: {}", x.subject, x.message))
                                .collect::<Vec<_>>()
                        );
                    } else if let Some(want) = &e.subjects
                        && want != &subjects
                    {
                        res.detail = format!("expected subjects {want:?}, got {subjects:?}");
                    } else if let Some(sev) = e.severity
                        && let Some(bad) = f.iter().find(|x| x.severity != sev)
                    {
                        res.detail = format!(
                            "expected severity {sev}, got {} for {}",
                            bad.severity, bad.subject
                        );
                    } else if let Some((x, want)) = f.iter().find_map(|x| {
                        e.message_contains
                            .iter()
                            .find(|w| !x.message.contains(w.as_str()))
                            .map(|w| (x, w))
                    }) {
                        res.detail = format!(
                            "expected the message of {} to contain {want:?}, got {:?}",
                            x.subject, x.message
                        );
                    } else {
                        res.passed = true;
                    }
                }
            }
            res
        })
        .collect()
}

/// Runs every rule's cases.
pub fn run_all(set: &RuleSet) -> Vec<CaseResult> {
    set.rules().iter().flat_map(|r| run_rule(set, r)).collect()
}

//! Rules fail closed: a rule that cannot work (unknown field, type error, CEL error) is
//! refused at load with file, line and rule id, and a rule that errors while running is a
//! *rule error*, never "not evaluated (missing data)"; both make `analyze` and `rules test`
//! exit 2.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::path::Path;
use std::process::Command;

use netsnap_analyzer::facts::Facts;
use netsnap_analyzer::rules::engine::{Rule, cel_env, prepare_facts};
use netsnap_analyzer::rules::{Outcome, RuleSet};

const GOOD: &str = "id: my-rule
title: t
severity: warning
category: c
description: d
requires: [sysctls, k8s-pods]
params:
  limit: 3
for_each:
  in: pods
  as: p
condition: p.name == 'x'
message: m {{ p.name }}
remediation: r
references: [https://example.com/x]
tests:
  - name: fires
    facts: {pods: [{name: x}]}
    expect: {count: 1}
";

fn load_err(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("my-rule.yaml"), text).unwrap();
    let mut set = RuleSet::empty();
    let err = set.add_dir(dir.path()).unwrap_err();
    err.to_string()
        .replace(&dir.path().display().to_string(), "DIR")
}

#[test]
fn the_good_rule_loads() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("my-rule.yaml"), GOOD).unwrap();
    let mut set = RuleSet::empty();
    assert_eq!(set.add_dir(dir.path()).unwrap(), 1);
}

#[test]
fn unknown_fields_and_type_errors_are_refused_at_load_with_file_line_and_id() {
    let cases = [
        // A misspelt field of a bound item, with a suggestion.
        (
            GOOD.replace("condition: p.name == 'x'", "condition: p.nmae == 'x'"),
            "DIR/my-rule.yaml:12: rule my-rule: type error in condition: unknown field \"nmae\" of object PodFacts (did you mean \"name\"?",
        ),
        // A misspelt top-level fact path in a message template.
        (
            GOOD.replace("message: m {{ p.name }}", "message: m {{ node.nmae }}"),
            "DIR/my-rule.yaml:13: rule my-rule: type error in message: unknown field \"nmae\" of object NodeFacts",
        ),
        // A string ordered against a number.
        (
            GOOD.replace("condition: p.name == 'x'", "condition: p.name > 3"),
            "DIR/my-rule.yaml:12: rule my-rule: type error in condition: '>' between a string and a number",
        ),
        // An unknown parameter.
        (
            GOOD.replace(
                "condition: p.name == 'x'",
                "condition: size(pods) > params.limt",
            ),
            "unknown param \"limt\" (params: limit)",
        ),
        // for_each over a scalar.
        (
            GOOD.replace("in: pods", "in: node.name"),
            "DIR/my-rule.yaml:10: rule my-rule: type error in in: ",
        ),
        // A CEL syntax error is a load error too, as before.
        (
            GOOD.replace("condition: p.name == 'x'", "condition: p.name == "),
            "DIR/my-rule.yaml:12: rule my-rule: CEL error in condition",
        ),
    ];
    for (text, want) in &cases {
        let err = load_err(text);
        assert!(err.contains(want), "want {want:?} in\n{err}");
    }
}

#[test]
fn every_broken_file_of_a_directory_is_named_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    for (name, field) in [("a-rule", "nmae"), ("b-rule", "nam")] {
        let text = GOOD
            .replace("id: my-rule", &format!("id: {name}"))
            .replace("p.name == 'x'", &format!("p.{field} == 'x'"));
        std::fs::write(dir.path().join(format!("{name}.yaml")), text).unwrap();
    }
    let err = RuleSet::empty()
        .add_dir(dir.path())
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("2 rule errors:"), "{err}");
    assert!(
        err.contains("a-rule.yaml:12: rule a-rule") && err.contains("b-rule.yaml:12: rule b-rule"),
        "{err}"
    );
}

/// A rule the schema check cannot refuse (`int()` of a pod name is a valid call) but that
/// fails when it runs.
fn runtime_failing() -> String {
    GOOD.replace("condition: p.name == 'x'", "condition: int(p.name) > 0")
}

#[test]
fn an_evaluation_error_is_a_rule_error_never_missing_data() {
    let env = cel_env();
    let rule = Rule::from_yaml(&env, "my-rule.yaml", &runtime_failing()).unwrap();
    let facts: Facts =
        serde_json::from_value(serde_json::json!({"pods": [{"name": "web-1"}]})).unwrap();
    let value = prepare_facts(&facts).unwrap();
    match rule.evaluate(&env, &facts, &value, &Default::default()) {
        Outcome::RuleError(reason) => assert!(reason.contains("evaluation error"), "{reason}"),
        other => panic!("expected a rule error, got {other:?}"),
    }
    // Missing data is still "not evaluated", and wins: the rule never ran.
    let facts: Facts = serde_json::from_value(serde_json::json!({
        "pods": [{"name": "web-1"}],
        "collection": {"sources": {"k8s-pods": {"available": false, "reason": "timed out"}}}
    }))
    .unwrap();
    let value = prepare_facts(&facts).unwrap();
    match rule.evaluate(&env, &facts, &value, &Default::default()) {
        Outcome::NotEvaluated(reason) => assert!(reason.contains("timed out"), "{reason}"),
        other => panic!("expected not evaluated, got {other:?}"),
    }
}

fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_netsnap-analyze"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn bundle() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/bundles/healthy-flannel.tar.zst")
        .display()
        .to_string()
}

#[test]
fn analyze_exits_2_on_a_rule_that_fails_to_load() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("my-rule.yaml"),
        GOOD.replace("condition: p.name == 'x'", "condition: p.nmae == 'x'"),
    )
    .unwrap();
    let d = dir.path().to_str().unwrap();
    let (code, out, err) = cli(&["analyze", &bundle(), "--rules", d]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.is_empty(), "no report from a broken rule set: {out}");
    assert!(
        err.contains(
            "my-rule.yaml:12: rule my-rule: type error in condition: unknown field \"nmae\""
        ),
        "{err}"
    );
    let (code, _, err) = cli(&["rules", "test", d]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown field \"nmae\""), "{err}");
}

#[test]
fn analyze_and_rules_test_exit_2_on_a_rule_error_at_evaluation() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("my-rule.yaml"), runtime_failing()).unwrap();
    let d = dir.path().to_str().unwrap();
    let (code, out, err) = cli(&["analyze", &bundle(), "--rules", d]);
    assert_eq!(code, 2, "{out}{err}");
    let errors = out
        .split("Rule errors (the rule failed, no answer):")
        .nth(1)
        .unwrap_or_else(|| panic!("no rule errors section:\n{out}"));
    assert!(errors.contains("my-rule: evaluation error"), "{out}");
    let not_evaluated = out
        .split("Not evaluated (missing data):")
        .nth(1)
        .unwrap_or_default();
    assert!(
        !not_evaluated
            .split("Rule errors")
            .next()
            .unwrap_or_default()
            .contains("my-rule"),
        "a rule error is not missing data:\n{out}"
    );
    assert!(err.contains("1 rule error(s)"), "{err}");
    // JSON keeps them apart too.
    let (code, out, _) = cli(&["analyze", &bundle(), "--rules", d, "--format", "json"]);
    assert_eq!(code, 2);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["rule_errors"][0]["rule_id"], "my-rule");
    assert!(
        v["not_evaluated"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["rule_id"] != "my-rule")
    );
    // `rules test` runs the rule's case (a pod named x): int('x') fails there too.
    let (code, out, _) = cli(&["rules", "test", d]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("ERROR my-rule / fires: rule error"), "{out}");
    assert!(out.contains("(1 rule error(s))"), "{out}");
}

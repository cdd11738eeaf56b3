//! The built-in rule pack: it loads, every case inside every rule file passes, the
//! cases can fail, the id list is the agreed one, and the generated docs are fresh.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::collections::BTreeSet;

use netsnap_analyzer::facts::Facts;
use netsnap_analyzer::facts::cluster::ClusterFacts;
use netsnap_analyzer::rules::engine::{Rule, cel_env, prepare_doc, prepare_facts};
use netsnap_analyzer::rules::spec::Scope;
use netsnap_analyzer::rules::{Outcome, RuleError, RuleSet, testing};

const REQUIRED_IDS: &[&str] = &[
    "conntrack-near-max",
    "conntrack-insert-failed",
    "conntrack-stale-udp",
    "service-missing-from-iptables",
    "service-missing-from-ipvs",
    "ipvs-no-real-servers",
    "ipvs-stale-real-server",
    "service-no-endpoints",
    "kube-proxy-mode-mixed",
    "iptables-mixed-backends",
    "pod-ip-not-in-any-netns",
    "netns-unknown-ip",
    "veth-orphan",
    "duplicate-pod-ip",
    "mtu-mismatch",
    "ip-forward-disabled",
    "bridge-nf-call-iptables-disabled",
    "rp-filter-strict",
    "dns-vip-failing",
    "dns-endpoint-failing",
    "dns-slow",
    "resolv-conf-mismatch",
    "neighbour-table-near-gc-thresh",
    "iptables-rule-count-high",
];

fn builtin() -> RuleSet {
    RuleSet::builtin().expect("built-in rules load")
}

#[test]
fn every_required_rule_exists_and_the_pack_has_at_least_35() {
    let set = builtin();
    let ids: BTreeSet<&str> = set.rules().iter().map(|r| r.spec.id.as_str()).collect();
    for id in REQUIRED_IDS {
        assert!(ids.contains(id), "missing rule {id}");
    }
    assert!(ids.len() >= 35, "only {} rules", ids.len());
    insta::assert_yaml_snapshot!("rule_ids", ids);
}

/// Every rule file loads on its own, so one run lists every rule whose `requires` misses a
/// data source its expressions read (the engine derives them from the fact paths).
#[test]
fn every_rule_file_declares_the_data_it_reads() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules");
    let env = cel_env();
    let mut errors = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let name = format!("rules/{}", f.file_name().unwrap().to_string_lossy());
        if let Err(e) = Rule::from_yaml(&env, &name, &text) {
            errors.push(e.to_string());
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn every_rule_test_case_passes() {
    let set = builtin();
    let results = testing::run_all(&set);
    let failures: Vec<String> = results
        .iter()
        .filter(|r| !r.passed)
        .map(|r| format!("{} / {}: {}", r.rule_id, r.case, r.detail))
        .collect();
    assert!(
        failures.is_empty(),
        "failing cases:\n{}",
        failures.join("\n")
    );
    assert!(results.len() >= 2 * set.rules().len());
}

#[test]
fn every_rule_has_a_firing_and_a_silent_case_and_real_references() {
    for r in builtin().rules() {
        let s = &r.spec;
        assert!(
            s.tests.iter().any(|t| t.expect.count > 0),
            "{} has no firing case",
            s.id
        );
        assert!(
            s.tests
                .iter()
                .any(|t| t.expect.count == 0 && !t.expect.not_evaluated),
            "{} has no silent case",
            s.id
        );
        for reference in &s.references {
            assert!(
                reference.starts_with("https://"),
                "{}: reference {reference:?} is not a URL",
                s.id
            );
        }
    }
}

/// Mutation check: every firing expectation, bumped by one, must fail. Guards against
/// test cases that pass whatever the rule does.
#[test]
fn rule_cases_are_not_vacuous() {
    let set = builtin();
    let env = cel_env();
    for rule in set.rules() {
        for case in &rule.spec.tests {
            if case.expect.not_evaluated {
                continue;
            }
            let json = if case.facts.is_null() {
                serde_json::json!({})
            } else {
                case.facts.clone()
            };
            let outcome = match rule.spec.scope {
                Scope::Node => {
                    let facts: Facts = serde_json::from_value(json).unwrap();
                    let value = prepare_facts(&facts).unwrap();
                    rule.evaluate(&env, &facts, &value, &case.params)
                }
                Scope::Cluster => {
                    let facts: ClusterFacts = serde_json::from_value(json).unwrap();
                    let value = prepare_doc(&facts).unwrap();
                    rule.evaluate(&env, &facts, &value, &case.params)
                }
            };
            let got = match outcome {
                Outcome::Findings(f) => f.len(),
                Outcome::NotApplicable => 0,
                Outcome::NotEvaluated(r) | Outcome::RuleError(r) => {
                    panic!("{} / {}: {r}", rule.spec.id, case.name)
                }
            };
            assert_eq!(got, case.expect.count, "{} / {}", rule.spec.id, case.name);
        }
    }
}

#[test]
fn rule_findings_carry_evidence_when_the_facts_have_sources() {
    let set = builtin();
    let results = testing::run_all(&set);
    assert!(results.iter().all(|r| r.passed));
    // conntrack-near-max cites the kernel-log line of its test case.
    let rule = set.get("conntrack-near-max").unwrap();
    let case = rule
        .spec
        .tests
        .iter()
        .find(|t| t.name.contains("kernel drops"))
        .unwrap();
    let facts: Facts = serde_json::from_value(case.facts.clone()).unwrap();
    let value = prepare_facts(&facts).unwrap();
    let Outcome::Findings(f) = rule.evaluate(set.env(), &facts, &value, &Default::default()) else {
        panic!("not evaluated")
    };
    assert_eq!(f[0].evidence[0].path, "node/kernel-log.txt");
    assert_eq!(f[0].evidence[0].line, Some(7));
}

#[test]
fn docs_are_generated_and_fresh() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    for (file, text) in [
        (
            "docs/rules.md",
            netsnap_analyzer::rules::docs::render_markdown(&builtin()),
        ),
        (
            "docs/facts.md",
            netsnap_analyzer::facts::docs::render_markdown(),
        ),
    ] {
        let path = format!("{root}/{file}");
        if std::env::var_os("NETSNAP_UPDATE_DOCS").is_some() {
            std::fs::write(&path, &text).unwrap();
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == text,
            "{file} is stale: run `NETSNAP_UPDATE_DOCS=1 cargo test -p netsnap-analyzer --test rules docs`"
        );
    }
}

fn load_err(name: &str, text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(name), text).unwrap();
    let mut set = RuleSet::empty();
    let err = set.add_dir(dir.path()).unwrap_err();
    err.to_string()
        .replace(&dir.path().display().to_string(), "DIR")
}

const GOOD: &str = "id: my-rule
title: t
severity: warning
category: c
description: d
requires: [sysctls]
condition: node.name == 'x'
message: m {{ node.name }}
remediation: r
references: [https://example.com/x]
tests:
  - name: fires
    facts: {node: {name: x}}
    expect: {count: 1}
";

#[test]
fn malformed_rule_files_give_file_line_and_id() {
    let errors = vec![
        load_err(
            "my-rule.yaml",
            &GOOD.replace("condition: node.name == 'x'", "condition: node.name == "),
        ),
        load_err(
            "my-rule.yaml",
            &GOOD.replace("title: t", "title: t\nbogus: 1"),
        ),
        load_err(
            "my-rule.yaml",
            &GOOD.replace("severity: warning", "severity: loud"),
        ),
        load_err(
            "my-rule.yaml",
            &GOOD.replace("message: m {{ node.name }}", "message: m {{ node.name"),
        ),
        load_err("other.yaml", GOOD),
        load_err(
            "my-rule.yaml",
            &GOOD.replace("requires: [sysctls]", "requires: [nope]"),
        ),
        load_err("My_Rule.yaml", &GOOD.replace("id: my-rule", "id: My_Rule")),
        // Reads the iptables and nft facts through a binding, requires neither.
        load_err(
            "my-rule.yaml",
            &GOOD.replace(
                "condition: node.name == 'x'",
                "condition: services.exists(s, s.ports.exists(p, !p.iptables.present)) || node.proxy_mode == 'none'",
            ),
        ),
        // Needs nothing: a rule must say what it concludes from.
        load_err("my-rule.yaml", &GOOD.replace("requires: [sysctls]\n", "")),
    ];
    // Each names the file and a line; the semantic ones name the rule id.
    assert!(
        errors[0].starts_with("DIR/my-rule.yaml:7: rule my-rule: CEL error in condition"),
        "{}",
        errors[0]
    );
    assert!(
        errors[1].contains("my-rule.yaml:") && errors[1].contains("bogus"),
        "{}",
        errors[1]
    );
    assert!(
        errors[5].contains("unknown data source \"nope\""),
        "{}",
        errors[5]
    );
    assert!(
        errors[7].contains(
            "add iptables (it reads node.proxy_mode), ipvs (it reads node.proxy_mode), \
             k8s-services (it reads services), nft (it reads node.proxy_mode)"
        ),
        "{}",
        errors[7]
    );
    assert!(errors[8].contains("requires is empty"), "{}", errors[8]);
    insta::assert_yaml_snapshot!("rule_file_errors", errors);
}

#[test]
fn user_rules_override_and_set_and_disable() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../rules/ip-forward-disabled.yaml"
    ))
    .unwrap()
    .replace("severity: critical\n", "severity: warning\n");
    std::fs::write(dir.path().join("ip-forward-disabled.yaml"), text).unwrap();
    let mut set = builtin();
    let before = set.rules().len();
    set.add_dir(dir.path()).unwrap();
    assert_eq!(set.rules().len(), before, "override replaces, not adds");
    assert_eq!(
        set.get("ip-forward-disabled").unwrap().spec.severity,
        netsnap_analyzer::rules::Severity::Warning
    );
    set.set_param("conntrack-near-max.ratio=0.5").unwrap();
    let bad = [
        "conntrack-near-max.ratio=high",
        "conntrack-near-max.nope=1",
        "no-such-rule.x=1",
        "conntrack-near-max",
    ];
    for b in bad {
        assert!(matches!(set.set_param(b), Err(RuleError::Usage(_))), "{b}");
    }
    // The override is used: 60% full fires with ratio 0.5, not with the default.
    let facts: Facts =
        serde_json::from_value(serde_json::json!({"conntrack": {"count": 600, "max": 1000}}))
            .unwrap();
    let fired = |set: &RuleSet| {
        set.evaluate(&facts)
            .unwrap()
            .into_iter()
            .filter(|(r, o)| {
                r.spec.id == "conntrack-near-max"
                    && matches!(o, Outcome::Findings(f) if !f.is_empty())
            })
            .count()
    };
    assert_eq!(fired(&set), 1);
    assert_eq!(fired(&builtin()), 0);
    set.disable("conntrack-near-max").unwrap();
    assert_eq!(fired(&set), 0);
    assert!(set.disable("conntrack-near-max").is_err());
}

#[test]
fn runtime_errors_are_rule_errors_never_passed() {
    let env = cel_env();
    // The schema check refuses `node.nope` at load; a key missing from a map (the
    // schema cannot know its keys) still fails at run time.
    let text = GOOD.replace("condition: node.name == 'x'", "condition: node.nope == 'x'");
    assert!(Rule::from_yaml(&env, "my-rule.yaml", &text).is_err());
    let text = GOOD.replace(
        "condition: node.name == 'x'",
        "condition: node.sysctls['nope'] == 'x'",
    );
    let rule = Rule::from_yaml(&env, "my-rule.yaml", &text).unwrap();
    let facts = Facts::default();
    let value = prepare_facts(&facts).unwrap();
    match rule.evaluate(&env, &facts, &value, &Default::default()) {
        Outcome::RuleError(reason) => assert!(reason.contains("nope"), "{reason}"),
        other => panic!("expected a rule error, got {other:?}"),
    }
}

#[test]
fn every_top_level_fact_is_a_cel_variable() {
    let facts = Facts::default();
    let json = serde_json::to_value(&facts).unwrap();
    let mut keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    let prepared = prepare_facts(&facts).unwrap();
    assert_eq!(prepared.variables(), keys);
}

/// A rule that loops 300^3 times over literal lists: no fact involved.
fn hostile_loop_rule() -> String {
    let list = format!(
        "[{}]",
        (0..300)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    GOOD.replace(
        "condition: node.name == 'x'",
        &format!("condition: \"{list}.all(a, {list}.all(b, {list}.all(c, a + b + c >= 0)))\""),
    )
}

#[test]
fn a_runaway_rule_is_a_rule_error_not_missing_data() {
    use netsnap_analyzer::rules::budget::Budget;
    let env = cel_env();
    let rule = Rule::from_yaml(&env, "my-rule.yaml", &hostile_loop_rule()).unwrap();
    let facts = Facts::default();
    let value = prepare_facts(&facts).unwrap();
    let budget = Budget {
        steps: 10_000,
        time: std::time::Duration::from_secs(600),
    };
    let start = std::time::Instant::now();
    match rule.evaluate_with_budget(&env, &facts, &value, &Default::default(), budget) {
        Outcome::RuleError(reason) => {
            assert!(reason.contains("evaluation budget exceeded"), "{reason}");
            assert!(reason.contains("10000 steps"), "{reason}");
        }
        other => panic!("expected a rule error, got {other:?}"),
    }
    // The step limit stopped it, not the clock (the full loop is 2.7 x 10^7 steps).
    assert!(start.elapsed() < std::time::Duration::from_secs(60));
    // The same kind of loop, small enough, still answers within the budget.
    let small = GOOD.replace(
        "condition: node.name == 'x'",
        "condition: \"[1,2,3].all(a, [1,2,3].exists(b, a == b)) && [1,2].map(x, x * 2) == [2, 4] && [1,2,3].filter(x, x > 1).size() == 2 && [1,2,3].exists_one(x, x == 2)\"",
    );
    let rule = Rule::from_yaml(&env, "my-rule.yaml", &small).unwrap();
    match rule.evaluate_with_budget(&env, &facts, &value, &Default::default(), budget) {
        Outcome::Findings(f) => assert_eq!(f.len(), 1),
        other => panic!("expected one finding, got {other:?}"),
    }
}

#[test]
fn a_time_budget_stops_a_rule_too() {
    use netsnap_analyzer::rules::budget::Budget;
    let env = cel_env();
    let rule = Rule::from_yaml(&env, "my-rule.yaml", &hostile_loop_rule()).unwrap();
    let facts = Facts::default();
    let value = prepare_facts(&facts).unwrap();
    let budget = Budget {
        steps: u64::MAX,
        time: std::time::Duration::from_millis(200),
    };
    match rule.evaluate_with_budget(&env, &facts, &value, &Default::default(), budget) {
        Outcome::RuleError(reason) => assert!(reason.contains("budget exceeded"), "{reason}"),
        other => panic!("expected a rule error, got {other:?}"),
    }
}

#[test]
fn oversized_and_deeply_nested_rule_files_are_refused_quickly() {
    let dir = tempfile::tempdir().unwrap();
    // 200 KB of nested flow YAML.
    let deep = format!(
        "{}\nx: {}{}\n",
        GOOD,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    std::fs::write(dir.path().join("my-rule.yaml"), &deep).unwrap();
    let start = std::time::Instant::now();
    let err = RuleSet::empty().add_dir(dir.path()).unwrap_err();
    assert!(matches!(err, RuleError::Limit { .. }), "{err}");
    assert!(err.to_string().contains("nested more than 32"), "{err}");
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
    // Deep block nesting by indentation.
    let mut block = GOOD.to_string() + "x:\n";
    for i in 1..50 {
        block.push_str(&format!("{}k{i}:\n", "  ".repeat(i)));
    }
    std::fs::write(dir.path().join("my-rule.yaml"), &block).unwrap();
    let err = RuleSet::empty().add_dir(dir.path()).unwrap_err();
    assert!(err.to_string().contains("nested more than 32"), "{err}");
    // Too large (a valid rule padded with a comment).
    let big = format!("{GOOD}# {}\n", "x".repeat(300 * 1024));
    std::fs::write(dir.path().join("my-rule.yaml"), &big).unwrap();
    let err = RuleSet::empty().add_dir(dir.path()).unwrap_err();
    assert!(err.to_string().contains("256"), "{err}");
    assert!(err.to_string().contains("my-rule.yaml"), "{err}");
    // The plain rule still loads.
    std::fs::write(dir.path().join("my-rule.yaml"), GOOD).unwrap();
    assert_eq!(RuleSet::empty().add_dir(dir.path()).unwrap(), 1);
}

//! Hostile `--rules` directories through the real binary (issue 12): a rule file is code a
//! stranger may hand over with a bundle. Too large, too deeply nested, a billion-laughs alias
//! bomb and a non-UTF-8 file are each refused with one line on stderr and the documented exit
//! code (2), no report and no panic; a rule whose CEL loops runs out of its evaluation budget
//! and is reported as a *rule error* (never a finding, never "missing data").

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_netsnap-analyze")
}

fn bundle() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/bundles/inspect-example.tar.zst")
}

/// A valid rule with id `id`; `extra` is appended (more keys, or padding).
fn rule(id: &str, condition: &str, extra: &str) -> String {
    format!(
        "id: {id}\ntitle: t\nseverity: warning\ncategory: c\ndescription: d\nrequires: [sysctls]\n\
         condition: {condition}\nmessage: m {{{{ node.name }}}}\nremediation: r\n\
         references: [https://example.com/x]\n{extra}"
    )
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn analyze(rules: &Path, format: &str) -> Run {
    let out = Command::new(bin())
        .arg("analyze")
        .arg(bundle())
        .arg("--rules")
        .arg(rules)
        .args(["--format", format])
        .output()
        .unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// One rule file `name` with `bytes` in a fresh directory.
fn rules_dir(name: &str, bytes: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(name), bytes).unwrap();
    dir
}

/// The file is refused before any analysis: exit 2, no report, one error line naming the file.
fn assert_refused(what: &str, run: &Run, file: &str, needle: &str) {
    assert_eq!(run.code, Some(2), "{what}: {}", run.stderr);
    assert!(run.stdout.is_empty(), "{what}: a report was printed");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{what}: {:?}", run.stderr);
    let line = lines[0];
    assert!(
        line.starts_with("netsnap-analyze: error: "),
        "{what}: {line}"
    );
    assert!(line.contains(file), "{what}: {line}");
    assert!(line.contains(needle), "{what}: {line}");
    assert!(!line.contains("panicked"), "{what}: {line}");
}

#[test]
fn hostile_rule_files_are_refused_with_one_line_and_exit_2() {
    let big = rules_dir(
        "my-rule.yaml",
        rule(
            "my-rule",
            "node.name == 'x'",
            &format!("# {}\n", "x".repeat(300 << 10)),
        )
        .as_bytes(),
    );
    let deep = rules_dir(
        "my-rule.yaml",
        rule(
            "my-rule",
            "node.name == 'x'",
            &format!("x: {}{}\n", "[".repeat(100_000), "]".repeat(100_000)),
        )
        .as_bytes(),
    );
    // Billion laughs: 9 levels of 9 aliases each would expand to 9^9 (387 million) strings,
    // inside a field that accepts any value (a test case's facts).
    let mut laughs = String::from(
        "tests:\n  - name: lol\n    facts:\n      l0: &l0 [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n",
    );
    for i in 1..9 {
        let p = format!("*l{}", i - 1);
        laughs.push_str(&format!("      l{i}: &l{i} [{}]\n", vec![p; 9].join(",")));
    }
    laughs.push_str("    expect: {count: 0}\n");
    let bomb = rules_dir(
        "my-rule.yaml",
        rule("my-rule", "node.name == 'x'", &laughs).as_bytes(),
    );
    let mut latin1 = rule("my-rule", "node.name == 'x'", "").into_bytes();
    // "title: caf\xe9": Latin-1, not UTF-8.
    let at = latin1.windows(8).position(|w| w == b"title: t").unwrap() + 8;
    latin1.splice(at..at, *b"caf\xe9");
    let not_utf8 = rules_dir("my-rule.yaml", &latin1);

    let cases: [(&str, &tempfile::TempDir, &str); 4] = [
        ("too large", &big, "256 KiB"),
        ("too deep", &deep, "nested more than 32 levels"),
        ("alias bomb", &bomb, "repetition limit exceeded"),
        ("not UTF-8", &not_utf8, "not UTF-8"),
    ];
    for (what, dir, needle) in cases {
        let file = dir.path().join("my-rule.yaml").display().to_string();
        for format in ["text", "json"] {
            let run = analyze(dir.path(), format);
            assert_refused(what, &run, &file, needle);
        }
    }
    // The cause is said once, not repeated by the error chain.
    let run = analyze(not_utf8.path(), "text");
    assert_eq!(run.stderr.matches("not UTF-8").count(), 1, "{}", run.stderr);
    // A missing directory too (the OS error used to be printed twice).
    let gone = big.path().join("gone");
    let run = analyze(&gone, "text");
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert_eq!(
        run.stderr.matches("No such file or directory").count(),
        1,
        "{}",
        run.stderr
    );
    // The same directory with a sane rule loads: the refusals above are about the content.
    let sane = rules_dir(
        "my-rule.yaml",
        rule("my-rule", "node.name == 'x'", "").as_bytes(),
    );
    let run = analyze(sane.path(), "json");
    assert!(matches!(run.code, Some(0 | 1)), "{}", run.stderr);
    assert!(run.stdout.starts_with('{'), "{}", run.stdout);
}

#[test]
fn a_looping_rule_is_a_rule_error_not_a_finding_nor_missing_data() {
    // 10^9 comprehension steps over literal lists: far past the default budget (200 million
    // steps or 20 s, whichever comes first), so the budget, not the loop, ends it.
    let list = format!(
        "[{}]",
        (0..1000)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    let cond = format!("\"{list}.all(a, {list}.all(b, {list}.all(c, a + b + c >= 0)))\"");
    let dir = rules_dir("my-loop.yaml", rule("my-loop", &cond, "").as_bytes());
    // Both formats at once: each run spends the budget's wall time.
    let (json, text) = std::thread::scope(|s| {
        let json = s.spawn(|| analyze(dir.path(), "json"));
        let text = s.spawn(|| analyze(dir.path(), "text"));
        (json.join().unwrap(), text.join().unwrap())
    });
    for run in [&json, &text] {
        // The fixture has findings of its own (exit 1); a rule error may make it 2. Never 0
        // and never a crash.
        assert!(
            matches!(run.code, Some(1 | 2)),
            "{:?}: {}",
            run.code,
            run.stderr
        );
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let of_rule = |key: &str| -> Vec<serde_json::Value> {
        v[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|x| x["rule_id"] == "my-loop")
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    };
    let errors = of_rule("rule_errors");
    assert_eq!(errors.len(), 1, "{}", json.stdout);
    let reason = errors[0].to_string();
    assert!(reason.contains("evaluation budget exceeded"), "{reason}");
    assert!(
        of_rule("findings").is_empty(),
        "a finding from a rule error"
    );
    assert!(
        of_rule("not_evaluated").is_empty(),
        "a rule error reported as missing data"
    );
    // The other rules still ran: the fixture's own findings are there.
    assert!(
        v["findings"].as_array().is_some_and(|f| !f.is_empty()),
        "{}",
        json.stdout
    );
    // The text report says so, in the rule's name.
    assert!(
        text.stdout.to_lowercase().contains("rule error"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout
            .lines()
            .any(|l| l.contains("my-loop") && l.contains("budget exceeded")),
        "{}",
        text.stdout
    );
}

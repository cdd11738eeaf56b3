//! Never a finding from missing data: every example bundle of `fixtures/bundles/` is
//! analyzed complete, then once per artifact with that artifact *failed* (timed out,
//! file gone) and once with it *cut* (half its lines kept, recorded as partial), the way
//! the collector writes them. No finding may appear that the complete bundle does not
//! have (the same rule and subject at an equal or higher severity counts as the same),
//! and a rule whose findings change must say why: *not evaluated* (with the manifest's
//! reason) or *evaluated on partial data*. Also the case reported in issue 13: a
//! kube-proxy node whose iptables and nft dumps timed out.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use netsnap_analyzer::analyze::{Report, analyze};
use netsnap_analyzer::facts::Facts;
use netsnap_analyzer::rules::engine::prepare_facts;
use netsnap_analyzer::rules::{Outcome, RuleSet, Severity};
use netsnap_bundle::{
    ArtifactStatus, Bundle, Manifest, ReaderOptions, Truncation, TruncationReason, layout,
};
use sha2::{Digest, Sha256};

/// What the collector writes for a command killed by its timeout.
const TIMED_OUT: &str = "timed out after 5 s (killed); rerun with --timeout 60s";

fn fixture_bundles() -> Vec<PathBuf> {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/bundles"));
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".tar.zst"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 5, "fixture bundles missing: {paths:?}");
    paths
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else if std::fs::hard_link(e.path(), &target).is_err() {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// An extracted copy of a bundle whose manifest and files a test may change (files are
/// hard links to the original: a change replaces a file, never writes into it).
struct Workdir {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Workdir {
    fn from(source: &Path) -> Workdir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("b");
        copy_tree(source, &root);
        Workdir { _dir: dir, root }
    }

    fn manifest(&self) -> Manifest {
        serde_json::from_slice(&std::fs::read(self.root.join(layout::MANIFEST)).unwrap()).unwrap()
    }

    fn save(&self, m: &Manifest) {
        std::fs::remove_file(self.root.join(layout::MANIFEST)).unwrap();
        std::fs::write(
            self.root.join(layout::MANIFEST),
            serde_json::to_vec_pretty(m).unwrap(),
        )
        .unwrap();
    }

    /// Records `path` as failed with `reason` and removes its bytes, as the collector
    /// does for a step killed by its timeout.
    fn fail(&self, path: &str, reason: &str) {
        let mut m = self.manifest();
        let r = m.artifacts.iter_mut().find(|a| a.path == path).unwrap();
        r.status = ArtifactStatus::Failed;
        r.error = Some(reason.into());
        r.size = 0;
        r.sha256 = None;
        r.truncated = None;
        r.exit_status = None;
        self.save(&m);
        let _ = std::fs::remove_file(self.root.join(path));
    }

    /// Keeps the first `tenths`/10 of the lines of `path`, recorded as partial (cut at the
    /// size cap) with a fresh size and sha256.
    fn cut(&self, path: &str, tenths: usize) {
        let file = self.root.join(path);
        let bytes = std::fs::read(&file).unwrap();
        let lines: Vec<&[u8]> = bytes.split_inclusive(|b| *b == b'\n').collect();
        let kept: Vec<u8> = lines[..lines.len() * tenths / 10].concat();
        std::fs::remove_file(&file).unwrap();
        std::fs::write(&file, &kept).unwrap();
        let mut m = self.manifest();
        let r = m.artifacts.iter_mut().find(|a| a.path == path).unwrap();
        r.status = ArtifactStatus::Partial;
        r.size = kept.len() as u64;
        r.sha256 = Some(hex::encode(Sha256::digest(&kept)));
        r.truncated = Some(Truncation {
            kept_bytes: kept.len() as u64,
            reason: TruncationReason::ArtifactCap,
        });
        self.save(&m);
    }

    fn analyze(&self, rules: &RuleSet) -> Report {
        let b = Bundle::open(&self.root, &ReaderOptions::default()).unwrap();
        analyze(&[("bundle".into(), &b)], rules).unwrap()
    }

    /// The analysis, or `None` when the facts the rules see are those of `complete`
    /// (the rules are functions of the facts, so the report would be the same).
    fn analyze_if_changed(&self, rules: &RuleSet, complete: &Facts) -> Option<Report> {
        let b = Bundle::open(&self.root, &ReaderOptions::default()).unwrap();
        let facts = Facts::from_bundle(&b);
        if rule_view(&facts) == rule_view(complete) {
            return None;
        }
        Some(analyze(&[("bundle".into(), &b)], rules).unwrap())
    }
}

/// The facts without the lists of missing and partial artifacts, which no rule reads
/// (checked below); the source availability the rules do read stays.
fn rule_view(f: &Facts) -> Facts {
    let mut f = f.clone();
    f.collection.missing.clear();
    f.collection.partial.clear();
    f
}

type Key = (String, String);

/// Findings by (rule, subject) with their severity.
fn findings(r: &Report) -> BTreeMap<Key, Severity> {
    let mut out = BTreeMap::new();
    for f in &r.findings {
        let e = out
            .entry((f.rule_id.clone(), f.subject.clone()))
            .or_insert(f.severity);
        *e = (*e).max(f.severity);
    }
    out
}

fn rule_findings(all: &BTreeMap<Key, Severity>, rule: &str) -> Vec<(String, Severity)> {
    all.iter()
        .filter(|((r, _), _)| r == rule)
        .map(|((_, s), sev)| (s.clone(), *sev))
        .collect()
}

/// Compares one degraded analysis with the complete one; returns what is wrong.
fn judge(what: &str, path: &str, complete: &Report, degraded: &Report) -> Vec<String> {
    let mut errors = Vec::new();
    let full = findings(complete);
    let got = findings(degraded);
    for ((rule, subject), sev) in &got {
        match full.get(&(rule.clone(), subject.clone())) {
            Some(s) if s >= sev => {}
            other => errors.push(format!(
                "{what} {path}: new finding {rule} {sev} on {subject:?} (complete bundle: {other:?})"
            )),
        }
    }
    let not_evaluated: BTreeMap<&str, &str> = degraded
        .not_evaluated
        .iter()
        .map(|n| (n.rule_id.as_str(), n.reason.as_str()))
        .collect();
    let partial: BTreeSet<&str> = degraded
        .partial_data
        .iter()
        .map(|n| n.rule_id.as_str())
        .collect();
    let was_not_evaluated: BTreeSet<&str> = complete
        .not_evaluated
        .iter()
        .map(|n| n.rule_id.as_str())
        .collect();
    let rules: BTreeSet<&str> = full
        .keys()
        .chain(got.keys())
        .map(|(r, _)| r.as_str())
        .collect();
    for rule in rules {
        if rule_findings(&full, rule) != rule_findings(&got, rule)
            && !not_evaluated.contains_key(rule)
            && !partial.contains(rule)
        {
            errors.push(format!(
                "{what} {path}: {rule} changed its findings silently: {:?} -> {:?}",
                rule_findings(&full, rule),
                rule_findings(&got, rule)
            ));
        }
    }
    // A rule that lost its data names the artifact the manifest says is missing.
    for (rule, reason) in &not_evaluated {
        if !was_not_evaluated.contains(rule) && !reason.contains(path) {
            errors.push(format!(
                "{what} {path}: {rule} not evaluated without naming it: {reason}"
            ));
        }
    }
    errors
}

#[test]
fn every_artifact_failed_or_cut_in_turn_never_adds_a_finding() {
    let rules = RuleSet::builtin().unwrap();
    // `rule_view` may drop these lists only while no rule reads them.
    for r in rules.rules() {
        let text = serde_json::to_string(&r.spec).unwrap();
        assert!(
            !text.contains("collection.missing") && !text.contains("collection.partial"),
            "{} reads the collection lists: compare them in rule_view",
            r.spec.id
        );
    }
    let mut errors = Vec::new();
    let mut variants = 0;
    let mut lost_data = 0;
    for bundle in fixture_bundles() {
        let name = bundle.file_name().unwrap().to_string_lossy().to_string();
        let opened = Bundle::open(&bundle, &ReaderOptions::default()).unwrap();
        let base = Workdir::from(opened.root());
        let complete = base.analyze(&rules);
        let complete_facts = Facts::from_bundle(&opened);
        let paths: Vec<(String, bool)> = opened
            .manifest()
            .artifacts
            .iter()
            .filter(|a| a.status.has_content())
            .map(|a| (a.path.clone(), a.kind == netsnap_bundle::ArtifactKind::Raw))
            .collect();
        // Two workers: the machine is shared, the analyses are independent.
        let chunks: Vec<Vec<(String, bool)>> = {
            let mut c = vec![Vec::new(), Vec::new()];
            for (i, p) in paths.into_iter().enumerate() {
                c[i % 2].push(p);
            }
            c
        };
        let results: Vec<(Vec<String>, usize, usize)> = std::thread::scope(|s| {
            let handles: Vec<_> = chunks
                .iter()
                .map(|chunk| {
                    let (rules, complete, base, name) = (&rules, &complete, &base, &name);
                    let complete_facts = &complete_facts;
                    s.spawn(move || {
                        let mut errors = Vec::new();
                        let (mut n, mut lost) = (0, 0);
                        for (path, raw) in chunk {
                            let w = Workdir::from(&base.root);
                            w.fail(path, TIMED_OUT);
                            n += 1;
                            if let Some(r) = w.analyze_if_changed(rules, complete_facts) {
                                lost += usize::from(
                                    r.not_evaluated.len() > complete.not_evaluated.len(),
                                );
                                errors.extend(judge(
                                    &format!("{name}: failed"),
                                    path,
                                    complete,
                                    &r,
                                ));
                            }
                            // Line-oriented raw artifacts are also cut half-way.
                            if *raw && !path.ends_with(".json") {
                                let w = Workdir::from(&base.root);
                                w.cut(path, 5);
                                n += 1;
                                if let Some(r) = w.analyze_if_changed(rules, complete_facts) {
                                    errors.extend(judge(
                                        &format!("{name}: cut"),
                                        path,
                                        complete,
                                        &r,
                                    ));
                                }
                            }
                        }
                        (errors, n, lost)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (e, n, lost) in results {
            errors.extend(e);
            variants += n;
            lost_data += lost;
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    // The test exercised something: hundreds of variants, many of which lost rules.
    assert!(variants > 300, "{variants} variants");
    assert!(
        lost_data >= 50,
        "only {lost_data} variants made a rule not evaluated"
    );
}

fn healthy_flannel() -> (Bundle, Workdir) {
    let p = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/bundles/healthy-flannel.tar.zst"
    ));
    let b = Bundle::open(p, &ReaderOptions::default()).unwrap();
    let w = Workdir::from(b.root());
    (b, w)
}

fn reason<'r>(r: &'r Report, rule: &str) -> Option<&'r str> {
    r.not_evaluated
        .iter()
        .find(|n| n.rule_id == rule)
        .map(|n| n.reason.as_str())
}

/// Issue 13: on a big node `iptables-save`, `iptables-nft-save` and `nft list ruleset`
/// timed out while `iptables-legacy-save` printed its empty tables; `analyze` then said
/// CRITICAL kube-proxy-rules-absent and ERROR pod-egress-masquerade-missing.
#[test]
fn timed_out_ruleset_dumps_make_the_dataplane_rules_not_evaluated() {
    let rules = RuleSet::builtin().unwrap();
    for partial in [false, true] {
        let (_b, w) = healthy_flannel();
        for p in [
            layout::iptables::SAVE,
            layout::iptables::NFT_SAVE,
            layout::nft::RULESET,
        ] {
            if partial {
                // Timed out mid-stream: the first tenth of the dump landed.
                w.cut(p, 1);
            } else {
                w.fail(p, TIMED_OUT);
            }
        }
        let r = w.analyze(&rules);
        assert!(
            r.findings.is_empty(),
            "partial={partial}: {:#?}",
            r.findings
        );
        for rule in [
            "kube-proxy-rules-absent",
            "pod-egress-masquerade-missing",
            "service-missing-from-iptables",
            "nft-service-map-mismatch",
        ] {
            let why = reason(&r, rule).unwrap_or_else(|| panic!("{rule} was evaluated"));
            let expected = if partial {
                "cut at"
            } else {
                "timed out after 5 s"
            };
            assert!(why.contains(expected), "{rule}: {why}");
        }
        // The legacy tables were complete: rules that read only them still run.
        let b = Bundle::open(&w.root, &ReaderOptions::default()).unwrap();
        let facts = Facts::from_bundle(&b);
        assert!(
            facts
                .iptables
                .backends
                .iter()
                .any(|x| x.backend == "legacy")
        );

        // Without the availability check the same facts give the false diagnosis of
        // the report: that is what the guard prevents.
        let mut unguarded = facts.clone();
        unguarded.collection.sources.clear();
        let prepared = prepare_facts(&unguarded).unwrap();
        for rule in ["kube-proxy-rules-absent", "pod-egress-masquerade-missing"] {
            let rule = rules.get(rule).unwrap();
            let outcome = rule.evaluate(rules.env(), &unguarded, &prepared, &Default::default());
            assert!(
                matches!(&outcome, Outcome::Findings(f) if !f.is_empty()),
                "partial={partial}: {} would not fire unguarded: {outcome:?}",
                rule.spec.id
            );
        }
    }
}

/// A collector that runs each distinct dump once records the duplicate as skipped,
/// naming the artifact holding the same bytes: that artifact satisfies the rules, and a
/// failure of it is reported through the duplicate.
#[test]
fn a_dump_skipped_as_a_duplicate_stands_for_the_one_it_names() {
    let rules = RuleSet::builtin().unwrap();
    let (_b, complete) = healthy_flannel();
    let full = complete.analyze(&rules);

    let (_b, w) = healthy_flannel();
    let mut m = w.manifest();
    for a in m.artifacts.iter_mut() {
        if a.path == layout::iptables::NFT_SAVE {
            a.status = ArtifactStatus::Skipped;
            a.error = Some("same as iptables-save (iptables is the nft variant)".into());
            a.size = 0;
            a.sha256 = None;
        }
    }
    w.save(&m);
    std::fs::remove_file(w.root.join(layout::iptables::NFT_SAVE)).unwrap();
    let r = w.analyze(&rules);
    assert_eq!(r.not_evaluated, full.not_evaluated);
    assert_eq!(findings(&r), findings(&full));

    // Now the one it names timed out: the dataplane rules are not evaluated, and the
    // reason names the dump that failed.
    w.fail(layout::iptables::SAVE, TIMED_OUT);
    let r = w.analyze(&rules);
    let why = reason(&r, "kube-proxy-rules-absent").unwrap();
    assert!(
        why.contains(layout::iptables::SAVE) && why.contains("timed out"),
        "{why}"
    );
}

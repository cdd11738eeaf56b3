//! The architecture invariants of `docs/architecture.md` that a test can check
//! by reading the source tree (in the spirit of rust-analyzer's `tidy` tests).

use std::fs;
use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the lab crate lives one level below the workspace root")
        .to_path_buf()
}

/// Every `.rs` file below `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The `src/` directories of every crate of the workspace (any top-level directory with a Cargo.toml).
fn crate_src_dirs() -> Vec<PathBuf> {
    let root = workspace_root();
    let mut dirs: Vec<PathBuf> = fs::read_dir(&root)
        .expect("workspace root is readable")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("Cargo.toml").is_file() && p.join("src").is_dir())
        .map(|p| p.join("src"))
        .collect();
    dirs.sort();
    dirs
}

/// The `[dependencies]` section of a Cargo.toml (dev-dependencies may differ).
fn dependencies_section(manifest: &Path) -> String {
    let text = fs::read_to_string(manifest).expect("Cargo.toml is readable");
    let mut section = String::new();
    let mut inside = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            inside = trimmed == "[dependencies]" || trimmed.starts_with("[target.");
            continue;
        }
        if inside {
            section.push_str(line);
            section.push('\n');
        }
    }
    section
}

#[test]
fn every_source_file_opens_with_a_module_doc() {
    let dirs = crate_src_dirs();
    assert!(
        dirs.len() >= 4,
        "expected at least bundle, collector, analyzer and the lab: {dirs:?}"
    );
    let missing: Vec<String> = dirs
        .iter()
        .flat_map(|d| rust_files(d))
        .filter(|f| {
            let text = fs::read_to_string(f).unwrap_or_default();
            !text.trim_start().starts_with("//!")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a `//!` module doc: {missing:?}"
    );
}

#[test]
fn the_bundle_crate_knows_neither_producer_nor_consumer() {
    let deps = dependencies_section(&workspace_root().join("bundle/Cargo.toml"));
    assert!(
        !deps.contains("netsnap-"),
        "bundle/ must depend on no other netsnap crate:\n{deps}"
    );
    for file in rust_files(&workspace_root().join("bundle/src")) {
        let text = fs::read_to_string(&file).expect("readable");
        for consumer in ["netsnap_collector", "netsnap_analyzer"] {
            assert!(
                !text.contains(consumer),
                "{} names {consumer}",
                file.display()
            );
        }
    }
}

#[test]
fn the_analyzer_depends_on_no_linux_only_code() {
    let deps = dependencies_section(&workspace_root().join("analyzer/Cargo.toml"));
    for linux_only in ["netsnap-collector", "nix", "rtnetlink", "netlink-"] {
        assert!(
            !deps.lines().any(|l| l.trim_start().starts_with(linux_only)),
            "analyzer/ depends on Linux-only {linux_only}:\n{deps}"
        );
    }
    for file in rust_files(&workspace_root().join("analyzer/src")) {
        let text = fs::read_to_string(&file).expect("readable");
        assert!(
            !text.contains("target_os = \"linux\""),
            "{} has Linux-only code",
            file.display()
        );
    }
}

#[test]
fn only_exec_spawns_processes_in_the_collector() {
    let src = workspace_root().join("collector/src");
    let offenders: Vec<String> = rust_files(&src)
        .into_iter()
        .filter(|f| !f.ends_with("exec.rs") && !f.ends_with("sys/exec.rs"))
        .filter(|f| {
            fs::read_to_string(f)
                .unwrap_or_default()
                .contains("Command::new")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "processes spawned outside collector::exec: {offenders:?}"
    );
}

/// The parsers are their own crate and know nothing above them: its only netsnap
/// dependency is the bundle format, and it pulls in no rule engine, CLI or runtime.
#[test]
fn the_parse_crate_depends_only_on_the_format() {
    let deps = dependencies_section(&workspace_root().join("parse/Cargo.toml"));
    let names: Vec<&str> = deps
        .lines()
        .filter_map(|l| l.split(['.', ' ', '=']).next())
        .filter(|n| !n.is_empty())
        .collect();
    assert!(names.contains(&"netsnap-bundle"), "{deps}");
    for n in &names {
        assert!(
            [
                "netsnap-bundle",
                "serde",
                "serde_json",
                "schemars",
                "thiserror",
                "foldhash",
                "memchr"
            ]
            .contains(n),
            "parse/ depends on {n}: parsers stay a small portable crate\n{deps}"
        );
    }
}

#[test]
fn parsers_are_pure() {
    let found = offenders(
        "parse/src",
        &[
            "netsnap_analyzer",
            "crate::facts",
            "crate::rules",
            "crate::report",
            "crate::inspect",
            "std::fs",
            "println!",
            "eprintln!",
            "SystemTime::now",
            "Utc::now",
        ],
    );
    assert!(
        found.is_empty(),
        "parsers do no I/O, read no clock and know nothing above them: {found:?}"
    );
}

/// Every `.rs` file under `dir` that contains one of `forbidden`, with what it contains.
fn offenders(dir: &str, forbidden: &[&str]) -> Vec<String> {
    let files = rust_files(&workspace_root().join(dir));
    assert!(!files.is_empty(), "no source under {dir}");
    files
        .into_iter()
        .flat_map(|f| {
            let text = fs::read_to_string(&f).unwrap_or_default();
            forbidden
                .iter()
                .filter(|n| text.contains(**n))
                .map(|n| format!("{}: {n}", f.display()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `inspect` shows the joins of `facts` and computes no Service <-> dataplane join of its
/// own (it once picked the iptables backend differently from the findings).
#[test]
fn inspect_computes_no_service_dataplane_join() {
    let found = offenders(
        "analyzer/src/inspect",
        &[
            "kube_proxy_model",
            "kube_proxy_nft_model",
            "ipvs_from_table",
        ],
    );
    assert!(found.is_empty(), "inspect joins Services itself: {found:?}");
}

/// `report/` only renders: it never builds facts, evaluates rules or opens a bundle.
#[test]
fn report_only_renders() {
    let found = offenders(
        "analyzer/src/report",
        &[
            "from_bundle",
            "RuleSet",
            ".evaluate(",
            "Bundle::open",
            "open_artifact",
        ],
    );
    assert!(found.is_empty(), "report/ does more than render: {found:?}");
}

/// No crate masks address bits by hand: CIDRs go through `netsnap_bundle::net` (ipnet).
/// `redact/` is not checked: prefix-preserving anonymization (Crypto-PAn) composes an
/// address from kept prefix bits and anonymized host bits, which no CIDR type expresses.
#[test]
fn one_cidr_vocabulary() {
    for dir in ["analyzer/src", "collector/src", "parse/src", "bundle/src"] {
        let found = offenders(dir, &["u32::MAX <<", "u128::MAX <<", "checked_shl("]);
        assert!(found.is_empty(), "hand-written prefix masks: {found:?}");
    }
}

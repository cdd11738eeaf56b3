//! For the binaries' `cli_docs` tests: regenerates a binary's man pages and
//! completions into a temporary directory and compares them with the
//! checked-in `docs/man/` and `completions/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{CHECKED_IN_SHELLS, completion_file_name};

fn run(bin: &Path, args: &[&str]) -> Result<Vec<u8>, String> {
    let out = Command::new(bin)
        .args(args)
        .output()
        .map_err(|e| format!("running {}: {e}", bin.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} {}: {}\n{}",
            bin.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(out.stdout)
}

fn files_with_prefix(dir: &Path, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let ours = name.strip_prefix(prefix).is_some_and(|rest| {
                // `netsnap-collect.1`, `netsnap-collect-sub.1`, not `netsnap-collectx.1`.
                rest.starts_with('.') || rest.starts_with('-')
            });
            ours.then(|| Some((name, std::fs::read(e.path()).ok()?)))
                .flatten()
        })
        .collect()
}

/// Compares what `bin` (named `name`) generates now with the files under
/// `repo` (`docs/man/<name>*.1`, `completions/`). Err lists every stale,
/// missing or extra file and says how to regenerate.
pub fn check_generated(bin: &Path, name: &str, repo: &Path) -> Result<(), String> {
    let tmp = std::env::temp_dir().join(format!("netsnap-clidoc-{}-{}", name, std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let tmp_s = tmp.to_string_lossy().into_owned();
    run(bin, &["man", &tmp_s])?;
    let fresh_man = files_with_prefix(&tmp, name);
    let _ = std::fs::remove_dir_all(&tmp);
    let mut problems = Vec::new();
    let man_dir: PathBuf = repo.join("docs/man");
    let checked_man = files_with_prefix(&man_dir, name);
    compare("docs/man", &fresh_man, &checked_man, &mut problems);

    let mut fresh_comp = BTreeMap::new();
    let mut checked_comp = BTreeMap::new();
    for shell in CHECKED_IN_SHELLS {
        let file = completion_file_name(name, shell);
        fresh_comp.insert(
            file.clone(),
            run(bin, &["completions", &shell.to_string()])?,
        );
        if let Ok(bytes) = std::fs::read(repo.join("completions").join(&file)) {
            checked_comp.insert(file, bytes);
        }
    }
    compare("completions", &fresh_comp, &checked_comp, &mut problems);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} generated file(s) of {name} are stale: {}; run scripts/gen-docs and commit the result",
            problems.len(),
            problems.join(", ")
        ))
    }
}

fn compare(
    dir: &str,
    fresh: &BTreeMap<String, Vec<u8>>,
    checked: &BTreeMap<String, Vec<u8>>,
    problems: &mut Vec<String>,
) {
    for (name, bytes) in fresh {
        match checked.get(name) {
            None => problems.push(format!("{dir}/{name} missing")),
            Some(old) if old != bytes => problems.push(format!("{dir}/{name} differs")),
            Some(_) => {}
        }
    }
    for name in checked.keys().filter(|n| !fresh.contains_key(*n)) {
        problems.push(format!("{dir}/{name} is no longer generated"));
    }
}

//! For build scripts: puts the git revision in `NETSNAP_GIT_REV` so a binary's
//! `--version` can say which commit it was built from.
//!
//! Order: the `NETSNAP_GIT_REV` environment variable (for builds from a source
//! tarball or a build system that knows better), then `git rev-parse` in the
//! package directory, then `unknown`: a build without `.git` or without `git`
//! still works. There is no `-dirty` mark: knowing it would mean re-running
//! the build script (and relinking) on every edit.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Emits `cargo:rustc-env=NETSNAP_GIT_REV=…` and the `rerun-if-*` lines that
/// rebuild when HEAD moves. Call from `build.rs`.
pub fn emit_git_revision() {
    println!("cargo:rerun-if-env-changed=NETSNAP_GIT_REV");
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into()));
    let rev = std::env::var("NETSNAP_GIT_REV")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .or_else(|| git_revision(&dir))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=NETSNAP_GIT_REV={rev}");
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The short revision of HEAD for the repository around `dir`, with the files
/// whose change must rebuild (HEAD, the branch ref, packed refs).
fn git_revision(dir: &Path) -> Option<String> {
    let rev = git(dir, &["rev-parse", "--short=12", "HEAD"])?;
    for what in ["HEAD", "packed-refs"] {
        if let Some(p) = git(
            dir,
            &["rev-parse", "--path-format=absolute", "--git-path", what],
        ) {
            rerun_if_changed(&p);
        }
    }
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"])
        && let Some(p) = git(
            dir,
            &["rev-parse", "--path-format=absolute", "--git-path", &branch],
        )
    {
        rerun_if_changed(&p);
    }
    Some(rev)
}

/// Watches `path` only if it exists: cargo treats a watched path that does not
/// exist as changed on every build, so a repository without `packed-refs` (the
/// usual case until the first `git gc`/`git pack-refs`) rebuilt the crate, and
/// everything depending on it, on every `cargo build` and `cargo test`. Whatever
/// holds the branch's ref exists: a loose ref file, or `packed-refs`.
fn rerun_if_changed(path: &str) {
    if Path::new(path).exists() {
        println!("cargo:rerun-if-changed={path}");
    }
}

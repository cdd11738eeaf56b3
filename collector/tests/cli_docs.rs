//! The checked-in man pages (docs/man/) and shell completions (completions/)
//! of `netsnap-collect` match what the binary generates now (`scripts/gen-docs`).
#![allow(clippy::disallowed_methods)] // runs the built binary, like a user would

#[test]
fn man_pages_and_completions_are_up_to_date() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_netsnap-collect"));
    if let Err(e) = netsnap_clidoc::check::check_generated(bin, "netsnap-collect", repo) {
        panic!("{e}");
    }
}

#[test]
fn version_names_the_git_revision() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_netsnap-collect"))
        .arg("--version")
        .output()
        .expect("run --version");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    // `netsnap-collect 0.1.0 (git 0123456789ab)`, or `(git unknown)` outside a checkout.
    let rev = text
        .trim()
        .strip_prefix(concat!(
            "netsnap-collect ",
            env!("CARGO_PKG_VERSION"),
            " (git "
        ))
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("unexpected --version: {text}"));
    let in_checkout = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.git")
        .exists();
    if in_checkout {
        assert!(
            rev.len() >= 7 && rev.chars().all(|c| c.is_ascii_hexdigit()),
            "not a git revision: {rev}"
        );
    } else {
        assert_eq!(rev, "unknown");
    }
}

#[test]
fn completions_refuse_an_unknown_shell_with_a_usage_error() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_netsnap-collect"))
        .args(["completions", "tcsh"])
        .output()
        .expect("run completions");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tcsh"));
}

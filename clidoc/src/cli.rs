//! Completions and man pages from a clap command tree.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub use clap_complete::Shell;

/// `shell`'s completion script for `cmd` (named `bin`). Returned rather than
/// written because clap_complete panics on a write error (`… | head`).
pub fn completions(cmd: &mut clap::Command, bin: &str, shell: Shell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, cmd, bin, &mut out);
    out
}

/// Writes `bytes` to stdout; a closed pipe (`… | head`) is not an error.
pub fn write_stdout(bytes: &[u8]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// The file name a completion script is installed under (`netsnap-collect.bash`,
/// `_netsnap-collect`, `netsnap-collect.fish`).
pub fn completion_file_name(bin: &str, shell: Shell) -> String {
    match shell {
        Shell::Zsh => format!("_{bin}"),
        Shell::Bash => format!("{bin}.bash"),
        Shell::Fish => format!("{bin}.fish"),
        Shell::Elvish => format!("{bin}.elv"),
        Shell::PowerShell => format!("_{bin}.ps1"),
        _ => bin.to_string(),
    }
}

/// The shells whose scripts are checked in under `completions/`.
pub const CHECKED_IN_SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

/// Renders man pages for `cmd` and, recursively, each visible subcommand
/// (`netsnap-analyze-rules-list.1`) into `dir`. Returns the files written.
///
/// The pages carry the package version only, not the git revision, so they
/// change when the interface does, not with every commit.
pub fn write_man_pages(cmd: &clap::Command, dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = cmd.clone();
    cmd.build();
    let mut written = Vec::new();
    render(&cmd, cmd.get_name(), dir, &mut written)?;
    written.sort();
    Ok(written)
}

fn render(
    cmd: &clap::Command,
    full_name: &str,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> io::Result<()> {
    let version = cmd
        .get_version()
        .map(|v| v.split_whitespace().next().unwrap_or(v).to_string());
    let mut page = cmd
        .clone()
        .name(full_name.to_string())
        .bin_name(full_name.replace('-', " "));
    if let Some(v) = version {
        page = page.version(v);
    }
    let page = page.long_version(None::<&str>);
    let path = dir.join(format!("{full_name}.1"));
    let mut buf = Vec::new();
    clap_mangen::Man::new(page).render(&mut buf)?;
    std::fs::write(&path, buf)?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        let name = format!("{full_name}-{}", sub.get_name());
        render(sub, &name, dir, written)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> clap::Command {
        clap::Command::new("demo-bin")
            .version("1.2.3 (git 0123456789ab)")
            .about("Demo")
            .arg(clap::Arg::new("flag").long("flag").help("A flag"))
            .subcommand(
                clap::Command::new("sub")
                    .about("A subcommand")
                    .subcommand(clap::Command::new("leaf").about("Leaf")),
            )
            .subcommand(clap::Command::new("secret").hide(true))
    }

    #[test]
    fn man_pages_cover_visible_subcommands_without_the_git_revision() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_man_pages(&demo(), dir.path()).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["demo-bin-sub-leaf.1", "demo-bin-sub.1", "demo-bin.1"]
        );
        let top = std::fs::read_to_string(dir.path().join("demo-bin.1")).unwrap();
        assert!(top.contains("1.2.3"), "{top}");
        assert!(!top.contains("0123456789ab"), "{top}");
        assert!(top.contains("\\-\\-flag"), "{top}");
    }

    #[test]
    fn completions_name_the_binary_and_its_flags() {
        for shell in CHECKED_IN_SHELLS {
            let text = String::from_utf8(completions(&mut demo(), "demo-bin", shell)).unwrap();
            assert!(text.contains("demo-bin"), "{shell}: {text}");
            assert!(text.contains("flag"), "{shell}: {text}");
        }
        assert_eq!(completion_file_name("x", Shell::Zsh), "_x");
        assert_eq!(completion_file_name("x", Shell::Bash), "x.bash");
    }
}

//! Puts the git revision into `--version` (`NETSNAP_GIT_REV`).

fn main() {
    netsnap_clidoc::build::emit_git_revision();
}

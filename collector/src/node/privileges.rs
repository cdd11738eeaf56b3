//! What the collector may do on this node (effective capabilities, euid) and what
//! it cannot collect without them (`node/privileges.json`).

use std::path::Path;
use std::time::Duration;

use netsnap_bundle::native::Privileges;
use netsnap_bundle::{ArtifactSource, ArtifactSpec, layout};

use crate::step::RunContext;
use crate::sys::fileio::read_small;

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;

/// Parses the `CapEff:` hex mask of `/proc/<pid>/status`.
pub fn cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

/// Works out the collector's privileges and what they will cost.
pub fn privileges(status: &str, euid: u32) -> Privileges {
    let caps = cap_eff(status).unwrap_or(0);
    let cap_net_admin = caps & (1 << CAP_NET_ADMIN) != 0;
    let cap_sys_admin = caps & (1 << CAP_SYS_ADMIN) != 0;
    let mut consequences = Vec::new();
    if euid != 0 {
        consequences.push(
            "not root: /dev/kmsg, some /proc and /sys files and other processes' namespaces may be unreadable".into(),
        );
    }
    if !cap_sys_admin {
        consequences.push(
            "no CAP_SYS_ADMIN: cannot enter other network namespaces (setns), only the host namespace is read".into(),
        );
    }
    if !cap_net_admin {
        consequences.push(
            "no CAP_NET_ADMIN: iptables-save, nft, conntrack and ipvsadm will fail or show nothing"
                .into(),
        );
    }
    Privileges {
        euid,
        cap_net_admin,
        cap_sys_admin,
        consequences,
    }
}

/// Writes `node/privileges.json` and prints one line on stderr when privileges are missing.
pub fn check_privileges(ctx: &RunContext) {
    let status = read_small(Path::new("/proc/self/status")).unwrap_or_default();
    let p = privileges(&status, nix::unistd::geteuid().as_raw());
    if !p.consequences.is_empty() {
        eprintln!(
            "netsnap-collect: warning: missing privileges, collecting what is possible: {}",
            p.consequences.join("; ")
        );
        ctx.note(format!("missing privileges: {}", p.consequences.join("; ")));
    }
    let spec = ArtifactSpec::native(layout::node::PRIVILEGES, ArtifactSource::File);
    if let Err(e) = ctx.writer.add_json(spec, &p, Duration::ZERO) {
        ctx.note(format!("{}: {e}", layout::node::PRIVILEGES));
    }
}

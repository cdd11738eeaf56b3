//! The skip-or-fail policy of lab tests, and the global limit on concurrent lab nodes.
//!
//! A lab test needs root, `unshare`/`nsenter`/`ip` and the right to create
//! network, PID and mount namespaces. When that is missing the test prints why
//! and returns early, unless `NETSNAP_REQUIRE_LAB=1` (set by `.ci/run`), where
//! it panics with the same reason so CI cannot silently skip the lab.

use std::process::{Command, Stdio};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

use crate::util::{run_timeout, which};

/// Environment variable that turns a lab skip into a failure.
pub const REQUIRE_ENV: &str = "NETSNAP_REQUIRE_LAB";
/// Environment variable bounding how many lab nodes exist at once (default 3).
pub const PARALLEL_ENV: &str = "NETSNAP_LAB_PARALLEL";

/// Proof that this machine can build lab nodes; obtained from [`require_lab`].
#[derive(Debug, Clone, Copy)]
pub struct LabGuard {
    _private: (),
}

impl LabGuard {
    /// Starts building a lab node (see [`crate::LabNodeBuilder`]).
    pub fn node(&self) -> crate::LabNodeBuilder {
        crate::LabNodeBuilder::new(*self)
    }

    /// Applies the skip policy to the `netsnap-collect` binary (see [`crate::collector_bin`]):
    /// false (after printing why) when it is missing or stale and the lab is not required.
    pub fn require_collector(&self) -> bool {
        match crate::collect::collector_bin() {
            Ok(_) => true,
            Err(e) => {
                skip_or_fail(&e.to_string());
                false
            }
        }
    }

    /// Applies the skip policy to extra programs a test needs (e.g. `dnsmasq`, `dig`):
    /// returns false (after printing why) when one is missing and the lab is not required,
    /// panics when it is required.
    pub fn require_tools(&self, tools: &[&str]) -> bool {
        let missing: Vec<&str> = tools
            .iter()
            .copied()
            .filter(|t| which(t).is_none())
            .collect();
        if missing.is_empty() {
            return true;
        }
        skip_or_fail(&format!("missing programs: {}", missing.join(", ")));
        false
    }
}

/// True when `NETSNAP_REQUIRE_LAB` asks for lab tests to fail rather than skip.
pub fn lab_required() -> bool {
    std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

fn skip_or_fail(reason: &str) {
    if lab_required() {
        panic!("lab test cannot run and {REQUIRE_ENV}=1: {reason}");
    }
    eprintln!("SKIP lab test: {reason} (set {REQUIRE_ENV}=1 to make this a failure)");
}

/// Checks (once per process) that lab nodes can be built here.
///
/// Returns `None` after printing the reason when they cannot and the lab is not
/// required; panics with the reason when `NETSNAP_REQUIRE_LAB=1`.
pub fn require_lab() -> Option<LabGuard> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    match PROBE.get_or_init(probe) {
        Ok(()) => Some(LabGuard { _private: () }),
        Err(reason) => {
            skip_or_fail(reason);
            None
        }
    }
}

fn probe() -> Result<(), String> {
    if !cfg!(target_os = "linux") {
        return Err("lab nodes need Linux namespaces".into());
    }
    if !nix::unistd::geteuid().is_root() {
        return Err("lab nodes need root (creating namespaces, veths, iptables)".into());
    }
    // Every program lab nodes drive (the packages `.ci/run` installs): a machine
    // without them skips with the list instead of failing half-way through a build.
    let missing: Vec<&str> = [
        "unshare",
        "nsenter",
        "ip",
        "iptables-nft-restore",
        "iptables-legacy-restore",
        "iptables-nft-save",
        "iptables-legacy-save",
        "nft",
        "conntrack",
        "dnsmasq",
        "dig",
        "sysctl",
        "ps",
    ]
    .into_iter()
    .filter(|t| which(t).is_none())
    .collect();
    if !missing.is_empty() {
        return Err(format!(
            "missing programs: {} (.ci/run installs them: iproute2 iptables conntrack nftables dnsmasq-base bind9-dnsutils procps util-linux)",
            missing.join(", ")
        ));
    }
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--net",
        "--pid",
        "--mount",
        "--fork",
        "--mount-proc",
        "--propagation",
        "private",
        "true",
    ])
    .stdin(Stdio::null());
    match run_timeout(&mut cmd, Duration::from_secs(10)) {
        Ok(out) if out.success() => Ok(()),
        Ok(out) => Err(format!(
            "cannot create network+PID+mount namespaces: {}",
            out.stderr.trim()
        )),
        Err(e) => Err(format!("cannot create namespaces: {e}")),
    }
}

/// A counting semaphore bounding concurrent lab nodes (tests run on parallel threads).
pub(crate) struct NodeSlots {
    used: Mutex<usize>,
    freed: Condvar,
}

/// Held by a live node; releases its slot on drop.
pub(crate) struct SlotPermit;

impl NodeSlots {
    fn global() -> &'static NodeSlots {
        static SLOTS: OnceLock<NodeSlots> = OnceLock::new();
        SLOTS.get_or_init(|| NodeSlots {
            used: Mutex::new(0),
            freed: Condvar::new(),
        })
    }

    fn limit() -> usize {
        std::env::var(PARALLEL_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&n: &usize| n > 0)
            .unwrap_or(3)
    }

    /// Blocks until a slot is free.
    pub(crate) fn acquire() -> SlotPermit {
        let slots = Self::global();
        let limit = Self::limit();
        let mut used = slots.used.lock().unwrap_or_else(|p| p.into_inner());
        while *used >= limit {
            used = slots.freed.wait(used).unwrap_or_else(|p| p.into_inner());
        }
        *used += 1;
        SlotPermit
    }
}

impl Drop for SlotPermit {
    fn drop(&mut self) {
        let slots = NodeSlots::global();
        let mut used = slots.used.lock().unwrap_or_else(|p| p.into_inner());
        *used = used.saturating_sub(1);
        slots.freed.notify_one();
    }
}

//! IPVS: `ipvsadm -Ln` (plain, `--stats`, `--rate`), `-Lnc` (capped) and
//! `/proc/net/ip_vs*`.
//!
//! When the kernel has no IPVS (`/proc/net/ip_vs` absent) nothing runs and every
//! artifact is recorded `unavailable` with that reason: `ipvsadm` would try to
//! `modprobe ip_vs`, and the collector never changes the node.

pub mod step;

/// Reason recorded when the kernel has no IPVS.
pub const NO_IPVS: &str =
    "kernel has no IPVS (no /proc/net/ip_vs): kube-proxy is not in IPVS mode here; ipvsadm not run";

//! Raw `ip addr` / `ip route` text per namespace, for people and tools that
//! read `ip` output; the analysis uses the native `netlink.json` instead.
//!
//! All of it is the [`step::IpTextStep`]: commands built per namespace and run
//! through [`crate::sys::exec`] (no logic of its own to separate).

pub mod step;

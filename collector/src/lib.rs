//! netsnap collector library: the node-local capture behind `netsnap-collect`.
//!
//! Linux only. Read-only by construction: it never flushes, loads modules or
//! writes sysctls.
#![cfg(target_os = "linux")]

pub mod correlate;
pub mod dns;
pub mod kube;

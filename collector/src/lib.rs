//! netsnap collector library: the node-local capture behind `netsnap-collect`.
//!
//! Linux only. Read-only by construction: it never flushes, loads modules or
//! writes sysctls, and it does not run tools that would load modules (ipvsadm
//! without IPVS in the kernel, conntrack without nf_conntrack).
//!
//! Structure: [`step`] is the contract a data source implements ([`step::Step`],
//! run against a shared [`step::RunContext`]: bundle writer, options, deadline,
//! namespace list); [`steps`] is the one complete list of steps, built from the
//! [`Options`]; [`runner`] schedules the steps it is given and names none;
//! [`sys`] holds the OS services ([`sys::exec`] is the only module that spawns
//! processes); each data source is a folder with its logic and a `step.rs`.
#![cfg(target_os = "linux")]

pub mod conntrack;
pub mod correlate;
pub mod dns;
pub mod host_files;
pub mod ip_text;
pub mod iptables;
pub mod ipvs;
pub mod kube;
pub mod netlink;
pub mod netns;
pub mod node;
pub mod options;
pub mod runner;
pub mod secrets;
pub mod spool;
pub mod stdout;
pub mod step;
pub mod steps;
pub mod sys;

pub use options::Options;
pub use runner::{Outcome, Plan, collect};
pub use step::{RunContext, Step};
pub use sys::cancel::{Cancel, StopReason};

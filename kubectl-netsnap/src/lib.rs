//! `kubectl netsnap`: collects netsnap bundles from cluster nodes, from a laptop.
//!
//! For each node the plugin creates one short-lived privileged pod pinned to
//! the node ([`pod`]), waits for it, runs `netsnap-collect -o -` in it over the
//! exec WebSocket, writes the streamed bundle locally, verifies it with the
//! bundle crate's reader and deletes the pod whatever happened ([`node`]).
//! [`fleet`] runs many nodes with a bound on parallelism and renders the
//! per-node result table; [`analyze`] hands a directory of bundles to
//! `netsnap-analyze`. `main.rs` only parses flags and wires Ctrl-C.

pub mod analyze;
pub mod cli;
pub mod client;
pub mod fleet;
pub mod node;
pub mod pod;
pub mod verify;

pub use fleet::{NodeReport, ReportStatus};
pub use node::NodeError;

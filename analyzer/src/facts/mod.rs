//! The fact model: one normalized document built from a bundle, with the joins
//! (pod <-> netns <-> veth, service <-> endpoints <-> dataplane) computed in Rust.
//!
//! [`model`] holds the types (the public API rule authors write against),
//! [`build`] builds them from a bundle (streaming large artifacts; one file per topic),
//! [`keys`] is the join-key and CIDR vocabulary every pass shares, `conntrack_table` and
//! `routes` are the two pure engines the builder drives, [`sources`]
//! says which data a rule can require, [`docs`] renders `docs/facts.md`, [`coverage`]
//! counts the lines each artifact's parser did not understand.

pub mod build;
pub mod cluster;
mod conntrack_table;
pub mod coverage;
pub mod docs;
pub mod keys;
pub mod model;
pub mod netfilter;
pub mod nfeval;
mod routes;
pub mod sources;

pub use build::from_bundle;
pub use model::{FACTS_SCHEMA_VERSION, Facts, Source};

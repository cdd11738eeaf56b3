//! The fact model: one normalized document built from a bundle, with the joins
//! (pod <-> netns <-> veth, service <-> endpoints <-> dataplane) computed in Rust.
//!
//! [`model`] holds the types (the public API rule authors write against),
//! [`build`] builds them from a bundle (streaming large artifacts), [`sources`]
//! says which data a rule can require, [`docs`] renders `docs/facts.md`, [`coverage`]
//! counts the lines each artifact's parser did not understand.

pub mod build;
pub mod cluster;
pub mod coverage;
pub mod docs;
pub mod model;
pub mod netfilter;
pub mod nfeval;
pub mod sources;

pub use build::from_bundle;
pub use model::{FACTS_SCHEMA_VERSION, Facts, Source};

//! The rule engine: YAML rule files with CEL conditions evaluated over the facts.
//!
//! Rules are data (`rules/<id>.yaml`, embedded at build time; `--rules DIR` adds or
//! overrides). [`spec`] is the file format, [`engine`] compiles and evaluates,
//! [`testing`] runs the test cases each rule file carries, [`docs`] renders
//! `docs/rules.md`.

pub mod docs;
pub mod engine;
pub mod spec;
pub mod testing;

pub use engine::{Outcome, RawFinding, Rule, RuleError, RuleSet};
pub use spec::{RuleSpec, Severity};

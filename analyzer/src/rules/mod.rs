//! The rule engine: YAML rule files with CEL conditions evaluated over the facts.
//!
//! Rules are data (`rules/<id>.yaml`, embedded at build time; `--rules DIR` adds or
//! overrides). [`spec`] is the file format, [`engine`] compiles and evaluates,
//! [`testing`] runs the test cases each rule file carries, [`docs`] renders
//! `docs/rules.md`.

pub mod budget;
pub mod docs;
pub mod engine;
pub mod needs;
pub mod spec;
pub mod testing;
pub mod typecheck;
pub mod value;

pub use engine::{Outcome, RawFinding, Rule, RuleError, RuleSet};
pub use spec::{RuleSpec, Severity};

use std::path::PathBuf;

/// Where rules come from and how they are adjusted (the `--rules/--disable/--set` options).
#[derive(Debug, Clone, Default)]
pub struct RuleOptions {
    /// Skip the embedded rules (only `dirs`).
    pub no_builtin: bool,
    /// Directories whose rules add to or override the embedded ones.
    pub dirs: Vec<PathBuf>,
    /// Rule ids to drop.
    pub disable: Vec<String>,
    /// `id.param=value` assignments.
    pub set: Vec<String>,
}

/// Builds the rule set the options describe.
pub fn load(opts: &RuleOptions) -> Result<RuleSet, RuleError> {
    let mut set = if opts.no_builtin {
        RuleSet::empty()
    } else {
        RuleSet::builtin()?
    };
    for d in &opts.dirs {
        set.add_dir(d)?;
    }
    for id in &opts.disable {
        set.disable(id)?;
    }
    for s in &opts.set {
        set.set_param(s)?;
    }
    Ok(set)
}

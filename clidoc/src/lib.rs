//! What every netsnap binary offers besides its job: shell completions
//! (`<bin> completions bash|zsh|fish`), man pages (written by `scripts/gen-docs`
//! into `docs/man/`, checked for staleness by each binary's `cli_docs` test) and
//! the git revision in `--version` (see [`build`]).

pub mod build;

#[cfg(feature = "cli")]
pub mod check;
#[cfg(feature = "cli")]
mod cli;
#[cfg(feature = "cli")]
pub use cli::*;

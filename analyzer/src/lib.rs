//! netsnap analyzer library: everything `netsnap-analyze` does, callable from tests.
//!
//! Data flows one way: [`parse`] (pure text -> typed data, one module per tool)
//! -> [`facts`] (the joins) -> [`rules`] (CEL rules over facts) -> [`report`].
//! Nothing here depends on Linux-only code: the analyzer runs on laptops.

pub mod analyze;
pub mod diff;
pub mod exit;
pub mod facts;
pub mod import;
pub mod inert;
pub mod inputs;
pub mod inspect;
pub mod join;
pub mod lines;
pub use netsnap_parse as parse;
pub mod report;
pub mod rules;
pub mod trace;

//! Reports: text, JSON and Markdown renderings of findings and manifests.

pub mod analysis;
pub mod coverage;
pub mod diff;
pub mod manifest;
pub mod trace;

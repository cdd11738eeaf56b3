//! Reports: text, JSON and Markdown renderings of findings and manifests.

pub mod analysis;
pub mod cluster;
pub mod coverage;
pub mod manifest;

//! Reports: text, JSON, Markdown and HTML renderings of findings and manifests.

pub mod analysis;
pub mod cluster;
pub mod coverage;
pub mod html;
pub mod manifest;

//! Reports: text, JSON, Markdown and HTML renderings of findings and manifests.

pub mod cluster;
pub mod coverage;
pub mod diff;
pub mod html;
pub mod manifest;
pub mod markdown;
pub mod text;
pub mod trace;

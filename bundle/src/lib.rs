//! The netsnap bundle format, version 1: the contract between `netsnap-collect`
//! (which writes bundles on a node) and `netsnap-analyze` (which reads them anywhere).
//!
//! A bundle is one `.tar.zst` file whose first entry is `manifest.json`
//! ([`Manifest`]); the other entries are artifacts at the paths fixed in
//! [`layout`]. `docs/bundle-format.md` is the normative description.
//!
//! This crate is portable on purpose: it must build on macOS and Windows because
//! the analyzer runs on laptops. It knows neither the producer nor the consumer.

pub mod derive;
pub mod k8s;
pub mod layout;
pub mod manifest;
pub mod native;
pub mod net;
pub mod reader;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod writer;

pub use manifest::{
    ArtifactKind, ArtifactRecord, ArtifactSource, ArtifactStatus, CollectionInfo,
    CollectionOutcome, FORMAT_MAJOR, FORMAT_MINOR, FORMAT_VERSION, Manifest, NodeInfo,
    REDACTED_FORMAT_VERSION, Redaction, ResourceUsage, SAME_AS_ATTRIBUTE, ToolInfo, Truncation,
    TruncationReason, incomplete_core,
};
pub use reader::{Bundle, ReadError, ReaderOptions};
pub use writer::{
    ArtifactSink, ArtifactSpec, BundleWriter, Completion, SPOOL_PREFIX, SPOOL_SUFFIX, WriteError,
    WriterOptions, remove_live_spools, spool_owner_pid,
};

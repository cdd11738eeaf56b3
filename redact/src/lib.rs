//! Redaction of netsnap bundles, shared by `netsnap-analyze redact` and
//! `netsnap-collect --redact` (`docs/redaction.md`).
//!
//! A keyed, consistent rewrite: addresses are anonymized prefix-preserving
//! ([`cryptopan`], special ranges kept, [`addr`]), MACs, names, UIDs, DNS
//! labels and kube-proxy chain hashes are replaced by keyed pseudonyms
//! ([`names`], [`text`]), secret values in configuration files are removed
//! ([`secrets`]). The same key gives the same output on every bundle, so
//! redacted bundles of several nodes still join; the owner keeps the [`map`].

use std::path::{Path, PathBuf};

pub mod addr;
pub mod bundle;
pub mod cryptopan;
pub mod key;
pub mod map;
pub mod names;
pub mod secrets;
pub mod text;

pub use bundle::{RedactOptions, RedactOutcome, redact_bundle, redact_opened};
pub use key::Key;
pub use map::Map;

/// Why a redaction failed.
#[derive(Debug, thiserror::Error)]
pub enum RedactError {
    /// The input bundle could not be read.
    #[error(transparent)]
    Read(#[from] netsnap_bundle::ReadError),
    /// The output bundle could not be written.
    #[error(transparent)]
    Write(#[from] netsnap_bundle::WriteError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A bad key file.
    #[error("bad key: {0}")]
    Key(String),
    /// A bad map file.
    #[error("bad map: {0}")]
    Map(String),
    /// An input changed under the redaction.
    #[error("{0}")]
    Invariant(String),
}

impl RedactError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        RedactError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

//! Secrets never leave the node: the filter lives in `netsnap-redact`
//! (`netsnap_redact::secrets`), shared with `netsnap-analyze redact`, which
//! applies the same rules to bundles collected without it.

pub use netsnap_redact::secrets::*;

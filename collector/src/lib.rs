//! netsnap collector library: the node-local capture behind `netsnap-collect`.
//!
//! Linux only. Read-only by construction: it never flushes, loads modules or
//! writes sysctls.

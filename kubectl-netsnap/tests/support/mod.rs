//! Test support: the fake API server and bundle builders.

pub mod apiserver;
pub mod bundles;

//! Shared test support: a Kubernetes API test server and lab helpers.
#![allow(dead_code, clippy::unwrap_used, clippy::disallowed_methods)]

pub mod apiserver;
pub mod netlab;
pub mod simcluster;

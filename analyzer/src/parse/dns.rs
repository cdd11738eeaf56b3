//! Parser module (see parse/mod.rs for the shared rules).

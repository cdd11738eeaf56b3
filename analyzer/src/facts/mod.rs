//! The fact model: one normalized document built from a bundle, with the joins
//! (pod <-> netns <-> veth, service <-> endpoints <-> dataplane) computed in Rust.

//! Benchmark helpers (generators of realistic inputs).

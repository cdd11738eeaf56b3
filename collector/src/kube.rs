//! Collector module (issue 5).

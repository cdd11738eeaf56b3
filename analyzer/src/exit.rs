//! Documented process exit codes of `netsnap-analyze` (see README, "Exit codes").

/// Success; for `analyze`, no finding at or above `--fail-on`.
pub const OK: i32 = 0;
/// `analyze`: at least one finding at or above `--fail-on`.
pub const FINDINGS: i32 = 1;
/// Usage error, unreadable or invalid bundle, invalid rules, a rule error at evaluation.
pub const ERROR: i32 = 2;
/// `inspect`: the bundle lacks the data the view needs (the reason is printed).
pub const NO_DATA: i32 = 3;
/// Interrupted by SIGINT, SIGTERM or SIGHUP (extraction directories removed).
pub const INTERRUPTED: i32 = 130;

//! Parsers: pure functions from a tool's text output to typed data.
//!
//! Every parser keeps the 1-based line number of each item so findings can cite
//! `path:line`, and keeps lines it does not understand as *unparsed* (counted,
//! never silently dropped). No parser does I/O, reads the clock, or logs.

//! OS services the steps and the scheduler share; they name no data source.
//!
//! - [`exec`]: the only place processes are spawned (timeouts, process-group
//!   kill, niceness, dump slots);
//! - [`fileio`]: every file read (inside the node's or a pod's root, capped, on
//!   an abandonable thread);
//! - [`cancel`]: the one deadline / interrupt token of a run;
//! - [`progress`]: the progress lines on stderr;
//! - [`host`]: the host's identity (`uname`) and the collector's resource usage;
//! - [`netns`]: entering a network namespace (inode-checked, on a dedicated thread);
//! - [`sysctl`]: reading sysctls by their dotted names.

pub mod cancel;
pub mod exec;
pub mod fileio;
pub mod host;
pub mod netns;
pub mod progress;
pub mod sysctl;

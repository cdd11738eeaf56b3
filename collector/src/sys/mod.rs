//! OS services the steps and the scheduler share: the host's identity and the
//! collector's own resource usage. They name no data source.

pub mod host;

//! `kernel-log`: the node's kernel log with each line's classification (conntrack
//! table full, martians, neighbour overflow, …), like `dmesg` plus a KIND column.

use netsnap_bundle::{Bundle, layout};
use serde::Serialize;

use super::load::{self, no_data};
use super::table::{Table, opt};
use super::{InspectArgs, InspectError, Outcome, emit};
use crate::parse::kernel_log::{self, KernelEventKind};

/// One kernel log record.
#[derive(Debug, Serialize)]
pub struct KernelLogRow {
    /// Line in the artifact.
    pub line: usize,
    /// Wall-clock time as printed, when present.
    pub time: Option<String>,
    /// Seconds since boot, when present.
    pub uptime_s: Option<f64>,
    /// Syslog level (0 emerg … 7 debug).
    pub level: Option<u8>,
    /// Classification.
    pub kind: KernelEventKind,
    /// The message.
    pub message: String,
}

/// `inspect kernel-log`.
pub fn kernel_log(bundle: &Bundle, args: &InspectArgs) -> Result<Outcome, InspectError> {
    let Some(text) = load::text(bundle, layout::node::KERNEL_LOG)? else {
        return Ok(Outcome::NoData(no_data(
            "kernel-log",
            bundle,
            layout::node::KERNEL_LOG,
        )));
    };
    let log = kernel_log::parse_kernel_log(&text);
    let rows: Vec<KernelLogRow> = log
        .records
        .iter()
        .map(|r| KernelLogRow {
            line: r.line,
            time: r.wall_time.clone(),
            uptime_s: r.monotonic_us.map(|us| us as f64 / 1e6),
            level: r.level,
            kind: r.kind,
            message: r.message.clone(),
        })
        .collect();
    emit(args, &rows, |rows| {
        let mut t = Table::new(&["LINE", "TIME", "KIND", "MESSAGE"]);
        t.drop_first(&["LINE"]);
        for r in rows {
            let time = r
                .time
                .clone()
                .or_else(|| r.uptime_s.map(|s| format!("[{s:.6}]")));
            let kind = serde_json::to_value(r.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string));
            t.row(vec![
                r.line.to_string(),
                opt(time.as_deref()),
                opt(kind.as_deref()),
                r.message.clone(),
            ]);
        }
        t.render()
    })
}

//! Copying node files (`/proc`, `/sys`, `/etc`) into the bundle verbatim,
//! streamed, with the per-unit timeout and the run's cancellation honoured.
//!
//! Missing files are recorded `unavailable` (information), unreadable ones
//! `failed` with the OS error.

use std::io::{ErrorKind, Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use netsnap_bundle::{
    ArtifactRecord, ArtifactSpec, ArtifactStatus, BundleWriter, Completion, WriteError,
};

use crate::cancel::Cancel;

/// Copies `src` into artifact `spec`, keeping at most `max_lines` lines if set.
pub async fn copy_file(
    writer: &BundleWriter,
    spec: ArtifactSpec,
    src: &Path,
    max_lines: Option<u64>,
    timeout: Duration,
    cancel: &Cancel,
) -> Result<ArtifactRecord, WriteError> {
    let stop = Arc::new(AtomicBool::new(false));
    let why: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let task = {
        let writer = writer.clone();
        let src = src.to_path_buf();
        let stop = stop.clone();
        let why = why.clone();
        tokio::task::spawn_blocking(move || {
            copy_blocking(&writer, spec, &src, max_lines, &stop, &why)
        })
    };
    let abort = async {
        tokio::select! {
            _ = tokio::time::sleep(timeout) => format!("timed out after {}s", timeout.as_secs()),
            r = cancel.stopped() => r.as_str().to_string(),
        }
    };
    tokio::pin!(task);
    tokio::select! {
        r = &mut task => return r.map_err(|_| WriteError::Poisoned)?,
        reason = abort => {
            if let Ok(mut g) = why.lock() {
                *g = Some(reason);
            }
            stop.store(true, Ordering::Relaxed);
        }
    }
    task.await.map_err(|_| WriteError::Poisoned)?
}

fn copy_blocking(
    writer: &BundleWriter,
    mut spec: ArtifactSpec,
    src: &Path,
    max_lines: Option<u64>,
    stop: &AtomicBool,
    why: &std::sync::Mutex<Option<String>>,
) -> Result<ArtifactRecord, WriteError> {
    let start = Instant::now();
    spec.attributes
        .entry("source_path".into())
        .or_insert_with(|| src.display().to_string());
    let mut f = match std::fs::File::open(src) {
        Ok(f) => f,
        Err(e) => {
            let (status, reason) = if e.kind() == ErrorKind::NotFound {
                (
                    ArtifactStatus::Unavailable,
                    format!("{} does not exist on this node", src.display()),
                )
            } else {
                (
                    ArtifactStatus::Failed,
                    format!("cannot open {}: {e}", src.display()),
                )
            };
            return writer.record_missing(
                spec,
                status,
                reason,
                Completion {
                    duration: start.elapsed(),
                    ..Completion::default()
                },
            );
        }
    };
    let mut sink = writer.artifact(spec)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = max_lines;
    let mut error = None;
    loop {
        if stop.load(Ordering::Relaxed) {
            error = why
                .lock()
                .ok()
                .and_then(|g| g.clone())
                .or(Some("stopped".into()));
            break;
        }
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                error = Some(format!("read error: {e}"));
                break;
            }
        };
        let chunk = &buf[..n];
        if left == Some(0) {
            sink.mark_entry_cap();
            break;
        }
        let mut part = chunk;
        if let Some(l) = left.as_mut() {
            for pos in memchr::memchr_iter(b'\n', chunk) {
                *l -= 1;
                if *l == 0 {
                    part = &chunk[..pos + 1];
                    break;
                }
            }
        }
        let _ = sink.write_all(part);
        if part.len() < chunk.len() {
            sink.mark_entry_cap();
            break;
        }
        if sink.is_truncated() {
            break;
        }
    }
    sink.finish(Completion {
        duration: start.elapsed(),
        error,
        ..Completion::default()
    })
}

/// Reads a small text file (sysctl, status), trimmed; None when absent or unreadable.
pub fn read_small(path: &Path) -> Option<String> {
    let mut s = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(1 << 20)
        .read_to_string(&mut s)
        .ok()?;
    Some(s.trim_end().to_string())
}

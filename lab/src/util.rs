//! Small shared pieces: the harness error type, running a command with a
//! deadline (output captured through files so a chatty child never blocks on a
//! full pipe), random identifiers and shell quoting.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Errors of the lab harness. Each is one line naming what failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A command ran and exited non-zero (or was killed).
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        cmd: String,
        /// Exit status as text.
        status: String,
        /// Trimmed standard error.
        stderr: String,
    },
    /// A command did not finish within its deadline and was killed.
    #[error("`{cmd}` did not finish within {secs:.1}s and was killed")]
    Timeout {
        /// The command line.
        cmd: String,
        /// The deadline in seconds.
        secs: f64,
    },
    /// An I/O operation of the harness itself failed.
    #[error("{context}: {source}")]
    Io {
        /// What the harness was doing.
        context: String,
        /// Cause.
        source: io::Error,
    },
    /// The machine cannot provide what the test asked for.
    #[error("unsupported on this machine: {0}")]
    Unsupported(String),
    /// The test asked for something inconsistent (unknown pod, too many pods...).
    #[error("invalid lab request: {0}")]
    Invalid(String),
}

impl LabError {
    /// Wraps an I/O error with what the harness was doing.
    pub fn io(context: impl Into<String>, source: io::Error) -> LabError {
        LabError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result alias of the harness.
pub type LabResult<T> = Result<T, LabError>;

/// What a finished command produced.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
    /// Wall time.
    pub elapsed: Duration,
}

impl CmdOutput {
    /// True when the command exited with status 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

/// Renders a command for messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    if s.len() > 300 {
        let mut cut = 300;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// Runs `cmd` to completion or until `timeout`, capturing stdout and stderr.
/// A non-zero exit is *not* an error here; see [`check`].
pub fn run_timeout(cmd: &mut Command, timeout: Duration) -> LabResult<CmdOutput> {
    run_timeout_with(cmd, timeout, &mut |_| {})
}

/// [`run_timeout`], calling `tick(child_pid)` every few milliseconds while the child runs
/// (used to sample a process's memory high-water mark).
pub fn run_timeout_with(
    cmd: &mut Command,
    timeout: Duration,
    tick: &mut dyn FnMut(u32),
) -> LabResult<CmdOutput> {
    let out = tempfile::tempfile().map_err(|e| LabError::io("creating capture file", e))?;
    let err = tempfile::tempfile().map_err(|e| LabError::io("creating capture file", e))?;
    let out_w = out
        .try_clone()
        .map_err(|e| LabError::io("cloning capture file", e))?;
    let err_w = err
        .try_clone()
        .map_err(|e| LabError::io("cloning capture file", e))?;
    cmd.stdout(Stdio::from(out_w)).stderr(Stdio::from(err_w));
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| LabError::io(format!("spawning `{}`", describe(cmd)), e))?;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => return Err(LabError::io(format!("waiting for `{}`", describe(cmd)), e)),
        }
        tick(child.id());
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(LabError::Timeout {
                cmd: describe(cmd),
                secs: timeout.as_secs_f64(),
            });
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    Ok(CmdOutput {
        status,
        stdout: read_all(out)?,
        stderr: read_all(err)?,
        elapsed: started.elapsed(),
    })
}

fn read_all(mut f: File) -> LabResult<String> {
    use std::io::Seek;
    f.seek(io::SeekFrom::Start(0))
        .map_err(|e| LabError::io("rewinding capture file", e))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)
        .map_err(|e| LabError::io("reading capture file", e))?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Turns a non-zero exit into [`LabError::Command`].
pub fn check(cmd_desc: &str, out: CmdOutput) -> LabResult<CmdOutput> {
    if out.success() {
        Ok(out)
    } else {
        Err(LabError::Command {
            cmd: cmd_desc.to_string(),
            status: out.status.to_string(),
            stderr: out.stderr.trim().chars().take(2000).collect(),
        })
    }
}

/// `n` random lowercase hex characters from the kernel's CSPRNG.
pub fn rand_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n.div_ceil(2)];
    let filled = File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_ok();
    if !filled {
        // Fall back to the std hasher's per-process random keys; uniqueness, not secrecy, matters.
        use std::hash::{BuildHasher, Hasher};
        for chunk in bytes.chunks_mut(8) {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0),
            );
            let v = h.finish().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
    let mut s: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    s.truncate(n);
    s
}

/// A random version-4-shaped UUID string (as Kubernetes uses for object UIDs).
pub fn rand_uuid() -> String {
    let h = rand_hex(32);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// Random lowercase alphanumeric suffix like the ones Kubernetes appends to generated names.
pub fn rand_suffix(n: usize) -> String {
    // Kubernetes avoids vowels and confusable characters in generated names.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let hex = rand_hex(n * 2);
    hex.as_bytes()
        .chunks(2)
        .map(|c| {
            let v = u8::from_str_radix(std::str::from_utf8(c).unwrap_or("0"), 16).unwrap_or(0);
            ALPHABET[v as usize % ALPHABET.len()] as char
        })
        .collect()
}

/// Quotes `s` for `sh` (single quotes, embedded quotes escaped).
pub fn shq(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@+%".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Finds `prog` on `PATH` (or returns it if it is already a path that exists).
pub fn which(prog: &str) -> Option<std::path::PathBuf> {
    if prog.contains('/') {
        let p = Path::new(prog);
        return p.exists().then(|| p.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].iter().map(std::path::PathBuf::from))
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_round_trips_through_sh() {
        for s in ["plain", "a b", "it's", "", "$(rm -rf /)"] {
            let out = Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", shq(s)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), s);
        }
    }

    #[test]
    fn random_ids_have_the_right_shape() {
        let u = rand_uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(u.as_bytes()[14], b'4');
        assert_ne!(rand_uuid(), u);
        assert_eq!(rand_hex(11).len(), 11);
        assert!(rand_suffix(5).chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn timeout_kills_the_child() {
        let err =
            run_timeout(Command::new("sleep").arg("5"), Duration::from_millis(100)).unwrap_err();
        assert!(matches!(err, LabError::Timeout { .. }), "{err}");
    }
}

//! Pod sandboxes as the container runtime sees them, for when the API is not
//! available: `crictl pods -o json` + `crictl inspectp -o json`, or
//! `docker ps` + `docker inspect` (dockershim / cri-dockerd nodes, as in the
//! tutorial).
//!
//! Processes are spawned through [`CommandRunner`] so the collector's own exec
//! module (timeouts, output caps) can be plugged in; [`StdRunner`] is a small
//! bounded fallback.

use std::io::{self, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netsnap_bundle::k8s::RuntimePod;
use serde_json::Value;

/// Cap on how many sandboxes get an `inspectp`/`inspect` call (the rest keep list data).
pub const MAX_INSPECT: usize = 512;

/// The result of running one command.
#[derive(Debug, Clone, Default)]
pub struct CommandOutput {
    /// Exit code, None when killed by a signal or the timeout.
    pub status: Option<i32>,
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
    /// True when the timeout killed the process.
    pub timed_out: bool,
}

impl CommandOutput {
    /// True when the command exited 0 in time.
    pub fn success(&self) -> bool {
        self.status == Some(0) && !self.timed_out
    }
}

/// Spawns a process and collects its output under a timeout.
pub trait CommandRunner: Send + Sync {
    /// Runs `argv` (argv[0] looked up in PATH). `Err` with `NotFound` means the program is missing.
    fn run(&self, argv: &[String], timeout: Duration) -> io::Result<CommandOutput>;
}

/// Minimal runner on `std::process`: kills the child at the timeout.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdRunner;

impl CommandRunner for StdRunner {
    fn run(&self, argv: &[String], timeout: Duration) -> io::Result<CommandOutput> {
        let (prog, args) = argv
            .split_first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
        let mut child = Command::new(prog)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        // Readers on threads so a chatty child never blocks on a full pipe.
        let mut out = child.stdout.take();
        let mut err = child.stderr.take();
        let out_t = std::thread::spawn(move || {
            let mut b = Vec::new();
            if let Some(o) = out.as_mut() {
                let _ = o.read_to_end(&mut b);
            }
            b
        });
        let err_t = std::thread::spawn(move || {
            let mut b = Vec::new();
            if let Some(e) = err.as_mut() {
                let _ = e.take(64 * 1024).read_to_end(&mut b);
            }
            b
        });
        let start = Instant::now();
        let mut timed_out = false;
        let status = loop {
            if let Some(s) = child.try_wait()? {
                break s.code();
            }
            if start.elapsed() >= timeout {
                let _ = child.kill();
                let _ = child.wait();
                timed_out = true;
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        Ok(CommandOutput {
            status,
            stdout: out_t.join().unwrap_or_default(),
            stderr: err_t.join().unwrap_or_default(),
            timed_out,
        })
    }
}

fn s(v: &Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    match cur {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Parses `crictl pods -o json` (`{"items": [...]}`).
pub fn parse_crictl_pods(json: &[u8]) -> Result<Vec<RuntimePod>, String> {
    let v: Value =
        serde_json::from_slice(json).map_err(|e| format!("crictl pods output is not JSON: {e}"))?;
    let items = v
        .get("items")
        .and_then(Value::as_array)
        .ok_or("crictl pods output has no \"items\" array")?;
    Ok(items
        .iter()
        .map(|i| RuntimePod {
            source: "crictl".into(),
            id: s(i, &["id"]).unwrap_or_default(),
            name: s(i, &["metadata", "name"]).unwrap_or_default(),
            namespace: s(i, &["metadata", "namespace"]).unwrap_or_default(),
            uid: s(i, &["metadata", "uid"]),
            state: s(i, &["state"]),
            ip: None,
            pid: None,
        })
        .collect())
}

/// Fills IP and PID from `crictl inspectp -o json <id>`.
pub fn apply_crictl_inspectp(pod: &mut RuntimePod, json: &[u8]) -> Result<(), String> {
    let v: Value = serde_json::from_slice(json)
        .map_err(|e| format!("crictl inspectp output is not JSON: {e}"))?;
    pod.ip = s(&v, &["status", "network", "ip"]).or(pod.ip.take());
    pod.pid = v
        .get("info")
        .and_then(|i| i.get("pid"))
        .and_then(Value::as_u64)
        .and_then(|p| u32::try_from(p).ok())
        .filter(|p| *p > 0)
        .or(pod.pid);
    Ok(())
}

/// Parses `docker inspect <sandbox ids…>` (a JSON array of containers).
pub fn parse_docker_inspect(json: &[u8]) -> Result<Vec<RuntimePod>, String> {
    let v: Value = serde_json::from_slice(json)
        .map_err(|e| format!("docker inspect output is not JSON: {e}"))?;
    let arr = v
        .as_array()
        .ok_or("docker inspect output is not an array")?;
    Ok(arr
        .iter()
        .filter(|c| {
            s(c, &["Config", "Labels", "io.kubernetes.docker.type"]).as_deref() != Some("container")
        })
        .map(|c| RuntimePod {
            source: "docker".into(),
            id: s(c, &["Id"]).unwrap_or_default(),
            name: s(c, &["Config", "Labels", "io.kubernetes.pod.name"]).unwrap_or_default(),
            namespace: s(c, &["Config", "Labels", "io.kubernetes.pod.namespace"])
                .unwrap_or_default(),
            uid: s(c, &["Config", "Labels", "io.kubernetes.pod.uid"]),
            state: s(c, &["State", "Status"]),
            ip: s(c, &["NetworkSettings", "IPAddress"]),
            pid: c
                .get("State")
                .and_then(|st| st.get("Pid"))
                .and_then(Value::as_u64)
                .and_then(|p| u32::try_from(p).ok())
                .filter(|p| *p > 0),
        })
        .collect())
}

/// Why no runtime answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeError {
    /// Neither crictl nor docker is installed.
    NotInstalled,
    /// A runtime was found but failed; the command and why.
    Failed {
        /// The command line.
        command: Vec<String>,
        /// Why.
        reason: String,
        /// Its stderr.
        stderr: Vec<u8>,
    },
}

/// What the runtime query produced.
#[derive(Debug, Clone)]
pub struct RuntimeListing {
    /// `crictl` or `docker`.
    pub runtime: String,
    /// The listing command.
    pub command: Vec<String>,
    /// Sandboxes.
    pub pods: Vec<RuntimePod>,
    /// Non-fatal problems (an inspect that failed, the inspect cap).
    pub warnings: Vec<String>,
}

fn argv(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

fn failed(command: Vec<String>, out: &CommandOutput) -> RuntimeError {
    let reason = if out.timed_out {
        "timed out".to_string()
    } else {
        format!("exited with status {:?}", out.status)
    };
    RuntimeError::Failed {
        command,
        reason,
        stderr: out.stderr.clone(),
    }
}

/// Lists pod sandboxes with crictl, falling back to docker.
pub fn list_runtime_pods(
    runner: &dyn CommandRunner,
    timeout: Duration,
) -> Result<RuntimeListing, RuntimeError> {
    let cmd = argv(&["crictl", "pods", "-o", "json"]);
    match runner.run(&cmd, timeout) {
        Ok(out) if out.success() => {
            let mut pods =
                parse_crictl_pods(&out.stdout).map_err(|reason| RuntimeError::Failed {
                    command: cmd.clone(),
                    reason,
                    stderr: Vec::new(),
                })?;
            let mut warnings = Vec::new();
            if pods.len() > MAX_INSPECT {
                warnings.push(format!(
                    "only the first {MAX_INSPECT} of {} sandboxes were inspected",
                    pods.len()
                ));
            }
            for pod in pods.iter_mut().take(MAX_INSPECT) {
                let icmd = argv(&["crictl", "inspectp", "-o", "json", &pod.id]);
                match runner.run(&icmd, timeout) {
                    Ok(o) if o.success() => {
                        if let Err(e) = apply_crictl_inspectp(pod, &o.stdout) {
                            warnings.push(format!("{}: {e}", pod.id));
                        }
                    }
                    Ok(o) => warnings.push(format!(
                        "crictl inspectp {}: status {:?}: {}",
                        pod.id,
                        o.status,
                        String::from_utf8_lossy(&o.stderr).trim()
                    )),
                    Err(e) => warnings.push(format!("crictl inspectp {}: {e}", pod.id)),
                }
            }
            return Ok(RuntimeListing {
                runtime: "crictl".into(),
                command: cmd,
                pods,
                warnings,
            });
        }
        Ok(out) => return Err(failed(cmd, &out)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(RuntimeError::Failed {
                command: cmd,
                reason: e.to_string(),
                stderr: Vec::new(),
            });
        }
    }
    let ps = argv(&[
        "docker",
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        "label=io.kubernetes.docker.type=podsandbox",
    ]);
    let out = match runner.run(&ps, timeout) {
        Ok(o) if o.success() => o,
        Ok(o) => return Err(failed(ps, &o)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(RuntimeError::NotInstalled),
        Err(e) => {
            return Err(RuntimeError::Failed {
                command: ps,
                reason: e.to_string(),
                stderr: Vec::new(),
            });
        }
    };
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .take(MAX_INSPECT)
        .map(str::to_string)
        .collect();
    if ids.is_empty() {
        return Ok(RuntimeListing {
            runtime: "docker".into(),
            command: ps,
            pods: Vec::new(),
            warnings: Vec::new(),
        });
    }
    let mut inspect = argv(&["docker", "inspect"]);
    inspect.extend(ids);
    let out = match runner.run(&inspect, timeout) {
        Ok(o) if o.success() => o,
        Ok(o) => return Err(failed(inspect, &o)),
        Err(e) => {
            return Err(RuntimeError::Failed {
                command: inspect,
                reason: e.to_string(),
                stderr: Vec::new(),
            });
        }
    };
    let pods = parse_docker_inspect(&out.stdout).map_err(|reason| RuntimeError::Failed {
        command: inspect.clone(),
        reason,
        stderr: Vec::new(),
    })?;
    Ok(RuntimeListing {
        runtime: "docker".into(),
        command: ps,
        pods,
        warnings: Vec::new(),
    })
}

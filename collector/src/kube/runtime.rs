//! Pod sandboxes as the container runtime sees them, for when the API is not
//! available: `crictl pods -o json` + `crictl inspectp -o json`, or
//! `docker ps` + `docker inspect` (dockershim / cri-dockerd nodes, as in the
//! tutorial).
//!
//! Processes are spawned only through the collector's [`crate::sys::exec::Exec`]
//! (timeouts, process-group kill, output caps), behind the small
//! [`CommandRunner`] trait so tests can serve recorded outputs.

use std::future::Future;
use std::io;
use std::pin::Pin;

use netsnap_bundle::k8s::RuntimePod;
use serde_json::Value;

use crate::sys::exec::{Captured, End, Exec};

/// Cap on how many sandboxes get an `inspectp`/`inspect` call (the rest keep list data).
pub const MAX_INSPECT: usize = 512;

/// Cap on one command's captured stdout.
pub const MAX_OUTPUT: usize = 64 << 20;

/// The result of running one command.
#[derive(Debug, Clone, Default)]
pub struct CommandOutput {
    /// Exit code, None when killed by a signal or the timeout.
    pub status: Option<i32>,
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
    /// Why it did not end cleanly (timeout, signal, spawn failure), if it did not.
    pub failure: Option<String>,
}

impl CommandOutput {
    /// True when the command exited 0.
    pub fn success(&self) -> bool {
        self.status == Some(0) && self.failure.is_none()
    }
}

/// A boxed future borrowing the runner.
pub type RunFuture<'a> = Pin<Box<dyn Future<Output = io::Result<CommandOutput>> + Send + 'a>>;

/// Runs a program and collects its output.
pub trait CommandRunner: Send + Sync {
    /// Runs `argv` (argv[0] looked up in PATH). `Err` with `NotFound` means the program is missing.
    fn run<'a>(&'a self, argv: &'a [String]) -> RunFuture<'a>;
}

impl CommandRunner for Exec {
    fn run<'a>(&'a self, argv: &'a [String]) -> RunFuture<'a> {
        Box::pin(async move {
            let args: Vec<&str> = argv.iter().map(String::as_str).collect();
            match self.capture(&args, MAX_OUTPUT).await {
                Captured::Missing => Err(io::ErrorKind::NotFound.into()),
                Captured::Output(stdout, report) => Ok(CommandOutput {
                    status: report.exit_status,
                    failure: match report.end {
                        End::Exited | End::CapReached => None,
                        _ => report.error(),
                    },
                    stdout,
                    stderr: report.stderr,
                }),
            }
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
    let reason = out.failure.clone().unwrap_or_else(|| match out.status {
        Some(c) => format!("exited with status {c}"),
        None => "ended without an exit status".to_string(),
    });
    RuntimeError::Failed {
        command,
        reason,
        stderr: out.stderr.clone(),
    }
}

/// Lists pod sandboxes with crictl, falling back to docker.
pub async fn list_runtime_pods(runner: &dyn CommandRunner) -> Result<RuntimeListing, RuntimeError> {
    let cmd = argv(&["crictl", "pods", "-o", "json"]);
    match runner.run(&cmd).await {
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
                match runner.run(&icmd).await {
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
    let out = match runner.run(&ps).await {
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
    let out = match runner.run(&inspect).await {
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

//! Throwaway network namespaces for root-gated tests.
//!
//! Everything is created inside namespaces this module owns (interfaces are
//! created with `ip -n <ns>`, so not even a transient name appears in the
//! host namespace); [`Netns`] and [`Proc`] clean up on drop.

#![allow(clippy::disallowed_methods)] // tests drive ip(8), iptables and dnsmasq directly

use std::process::{Child, Command, Stdio};

/// Whether the lab can run here; `Err(reason)` to skip. With
/// `NETSNAP_REQUIRE_LAB=1` a missing lab is a failure instead.
pub fn lab_available(programs: &[&str]) -> Result<(), String> {
    let reason = if !nix::unistd::geteuid().is_root() {
        Some("not root".to_string())
    } else {
        programs
            .iter()
            .find(|p| {
                Command::new("sh")
                    .args(["-c", &format!("command -v {p}")])
                    .stdout(Stdio::null())
                    .status()
                    .map(|s| !s.success())
                    .unwrap_or(true)
            })
            .map(|p| format!("{p} not installed"))
    };
    match reason {
        None => Ok(()),
        Some(r) if std::env::var("NETSNAP_REQUIRE_LAB").as_deref() == Ok("1") => {
            panic!("NETSNAP_REQUIRE_LAB=1 but the lab cannot run: {r}")
        }
        Some(r) => Err(r),
    }
}

/// Runs a command, panicking with its stderr on failure.
pub fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{:?} failed: {}",
        args,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A named network namespace, deleted on drop.
pub struct Netns {
    /// Its name under /run/netns.
    pub name: String,
}

impl Netns {
    /// Creates it and brings `lo` up.
    pub fn new(name: &str) -> Netns {
        // A leftover from a crashed earlier run would make `add` fail.
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        sh(&["ip", "netns", "add", name]);
        let ns = Netns { name: name.into() };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n <ns> <args>`.
    pub fn ip(&self, args: &[&str]) {
        let mut a = vec!["ip", "-n", &self.name];
        a.extend_from_slice(args);
        sh(&a);
    }

    /// `ip netns exec <ns> <args>`.
    pub fn exec(&self, args: &[&str]) {
        let mut a = vec!["ip", "netns", "exec", &self.name];
        a.extend_from_slice(args);
        sh(&a);
    }

    /// Starts a long-running process inside.
    pub fn spawn(&self, args: &[&str]) -> Proc {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Proc { child: Some(child) }
    }

    /// `/run/netns/<name>`.
    pub fn path(&self) -> std::path::PathBuf {
        std::path::PathBuf::from("/run/netns").join(&self.name)
    }

    /// The namespace inode (its bundle id is `ns-<inode>`).
    pub fn inode(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(self.path()).unwrap().ino()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A child process killed (and reaped) on drop.
pub struct Proc {
    child: Option<Child>,
}

impl Proc {
    /// Its PID (`ip netns exec` execs the program, so it is the program's PID).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Kills it now.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// True while it runs.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

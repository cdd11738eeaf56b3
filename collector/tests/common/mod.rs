//! Shared helpers for the collector's real-kernel tests: throwaway network
//! namespaces with Drop cleanup, the root/lab gate, and running the binary.
#![allow(clippy::disallowed_methods, clippy::unwrap_used, dead_code)] // tests drive ip(8) and the binary directly

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use netsnap_bundle::{Bundle, ReaderOptions};

/// Unique short prefix per test (pid + counter), safe for netns names.
pub fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "nsc{}{}-{}",
        tag,
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs a command, panicking with its stderr on failure.
pub fn sh(argv: &[&str]) -> Output {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    assert!(
        out.status.success(),
        "{argv:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// True when this test can use namespaces and every program in `tools` is on
/// `$PATH`; otherwise prints `SKIP lab test: <test>: <why>` and returns false, or
/// panics under `NETSNAP_REQUIRE_LAB=1`.
pub fn lab_available(test: &str, tools: &[&str]) -> bool {
    let missing: Vec<&str> = ["ip"]
        .iter()
        .chain(tools)
        .copied()
        .filter(|t| !on_path(t))
        .collect();
    let why = if !nix::unistd::geteuid().is_root() {
        Some("not root".to_string())
    } else if !missing.is_empty() {
        Some(format!(
            "missing programs: {} (.ci/run installs them)",
            missing.join(", ")
        ))
    } else {
        let probe = unique("probe");
        let ok = Command::new("ip")
            .args(["netns", "add", &probe])
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        let _ = Command::new("ip").args(["netns", "del", &probe]).status();
        (!ok).then(|| "`ip netns add` failed".to_string())
    };
    match why {
        None => true,
        Some(w) => {
            if std::env::var("NETSNAP_REQUIRE_LAB").as_deref() == Ok("1") {
                panic!("{test}: lab required (NETSNAP_REQUIRE_LAB=1) but {w}");
            }
            eprintln!("SKIP lab test: {test}: {w}");
            false
        }
    }
}

/// True when `program` is an executable file in a `$PATH` directory.
pub fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|d| {
        std::fs::metadata(d.join(program))
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    })
}

/// A named network namespace deleted on drop.
pub struct Ns {
    /// Its name under /run/netns.
    pub name: String,
}

impl Ns {
    /// Creates it (with loopback up).
    pub fn new(name: &str) -> Ns {
        sh(&["ip", "netns", "add", name]);
        let ns = Ns {
            name: name.to_string(),
        };
        sh(&["ip", "-n", name, "link", "set", "lo", "up"]);
        ns
    }

    /// Inode of the namespace (its bundle id is `ns-<inode>`).
    pub fn inode(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("/run/netns/{}", self.name))
            .expect("netns file")
            .ino()
    }

    /// Runs `ip -n <ns> <args>`.
    pub fn ip(&self, args: &[&str]) -> Output {
        let mut argv = vec!["ip", "-n", &self.name];
        argv.extend_from_slice(args);
        sh(&argv)
    }

    /// Runs a command inside the namespace (`ip netns exec`).
    pub fn exec(&self, argv: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(argv);
        sh(&full)
    }

    /// Index of interface `ifname` in this namespace.
    pub fn ifindex(&self, ifname: &str) -> u32 {
        let out = self.ip(&["-j", "link", "show", "dev", ifname]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j");
        v[0]["ifindex"].as_u64().expect("ifindex") as u32
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_netsnap-collect"))
}

/// Runs the collector (optionally inside `ns`, with extra env), returning its output.
pub fn collect(ns: Option<&Ns>, args: &[&str], env: &[(&str, &str)]) -> Output {
    let bin = bin();
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &ns.name]).arg(&bin);
            c
        }
        None => Command::new(&bin),
    };
    cmd.args(args).args(["--no-api", "--quiet"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run netsnap-collect")
}

/// Opens a bundle with verification on.
pub fn open(path: &Path) -> Bundle {
    Bundle::open(path, &ReaderOptions::default())
        .unwrap_or_else(|e| panic!("bundle {} does not open: {e}", path.display()))
}

/// A directory of symlinks to every program on `$PATH` except `hide`,
/// plus the given fake scripts (name, body).
pub fn fake_path(dir: &Path, hide: &[&str], fakes: &[(&str, &str)]) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var("PATH").unwrap_or_default();
    for d in std::env::split_paths(&path) {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if hide.contains(&name.as_str()) || fakes.iter().any(|(n, _)| *n == name) {
                continue;
            }
            let link = dir.join(&name);
            if !link.exists() {
                let _ = std::os::unix::fs::symlink(e.path(), &link);
            }
        }
    }
    for (name, body) in fakes {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir.display().to_string()
}

//! Fixtures for the end-to-end tests: the built `dmarec` and `dmaplay`
//! binaries, scratch directories and loop devices that are always removed,
//! also when a test fails (they clean up in `Drop`, which runs on panic).
//!
//! Tests that need root (loop devices, mounts) call [`require_root`] and are
//! skipped with a loud message when not root; CI runs as root.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};

/// Path of a binary of this workspace, built in the same profile as the tests.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test-binary> -> target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} not built: run `cargo build --workspace` (the test command does)",
        p.display()
    );
    p
}

/// Runs `bin` with `args`, returning its output (never panics on exit status).
pub fn run(bin_name: &str, args: &[&str]) -> Output {
    Command::new(bin(bin_name))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {bin_name}: {e}"))
}

/// Runs and requires success, returning stdout.
pub fn run_ok(bin_name: &str, args: &[&str]) -> String {
    let out = run(bin_name, args);
    assert!(
        out.status.success(),
        "{bin_name} {} failed with {}\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Returns false (and says so) when the test cannot run without root.
pub fn require_root(test: &str) -> bool {
    if !is_root() {
        eprintln!("SKIPPED {test}: needs root for loop devices (CI runs as root)");
    }
    is_root()
}

/// A scratch directory removed on drop.
pub struct Scratch {
    pub path: PathBuf,
}

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        static N: AtomicU64 = AtomicU64::new(0);
        let base = std::env::var_os("DMAREC_TEST_TMP")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let path = base.join(format!(
            "dmarec-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create scratch dir");
        Scratch { path }
    }
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
    pub fn file(&self, name: &str) -> String {
        self.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A loop device over a sparse backing file; detached and deleted on drop.
pub struct LoopDevice {
    pub device: String,
    pub backing: PathBuf,
}

impl LoopDevice {
    /// Creates a `size_bytes` sparse file in `dir` and attaches it with direct I/O.
    pub fn new(dir: &Path, name: &str, size_bytes: u64) -> Result<LoopDevice> {
        let backing = dir.join(name);
        let f = std::fs::File::create(&backing)
            .with_context(|| format!("create {}", backing.display()))?;
        f.set_len(size_bytes)?;
        drop(f);
        Self::attach(backing)
    }

    /// Attaches an existing backing file.
    pub fn attach(backing: PathBuf) -> Result<LoopDevice> {
        let out = Command::new("losetup")
            .args(["-f", "--show", "--direct-io=on"])
            .arg(&backing)
            .output()
            .context("run losetup")?;
        if !out.status.success() {
            bail!(
                "losetup {}: {}",
                backing.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let device = String::from_utf8(out.stdout)?.trim().to_string();
        Ok(LoopDevice { device, backing })
    }

    /// Reads the whole device content through the backing file.
    pub fn read_backing(&self) -> Vec<u8> {
        std::fs::read(&self.backing).expect("read backing file")
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        // Retry: a just-closed device can be briefly busy.
        for _ in 0..50 {
            let ok = Command::new("losetup")
                .arg("-d")
                .arg(&self.device)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = std::fs::remove_file(&self.backing);
    }
}

/// Parses the JSON a command printed with `--json`.
pub fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

//! Other Nix versions, from Debian chroots made once by
//! `scripts/debian-chroot.sh` and reused while present: Nix 2.3.7
//! (bullseye, protocol 1.21), 2.26.3 (trixie, 1.38, local-overlay store)
//! and 2.34 (sid, 1.38).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

/// A Debian release whose `nix-bin` the tests use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Suite {
    /// Nix 2.3.7, worker protocol 1.21
    Bullseye,
    /// Nix 2.26.3, 1.38
    Trixie,
    /// Nix 2.34, 1.38
    Sid,
}

impl Suite {
    pub fn name(self) -> &'static str {
        match self {
            Suite::Bullseye => "bullseye",
            Suite::Trixie => "trixie",
            Suite::Sid => "sid",
        }
    }
}

/// The chroot of `suite`, prepared on first use (root and network needed
/// the first time); a test that needs it fails if it cannot be made.
pub fn chroot(suite: Suite) -> &'static Path {
    static ROOTS: Mutex<Option<HashMap<Suite, &'static Path>>> = Mutex::new(None);
    let mut roots = ROOTS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = roots.get_or_insert_with(HashMap::new).get(&suite) {
        return p;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/debian-chroot.sh");
    std::fs::create_dir_all("/var/cache/snix-tests").expect("creating /var/cache/snix-tests");
    // one preparation at a time, across test processes too
    let out = Command::new("flock")
        .arg("/var/cache/snix-tests/.lock")
        .arg("bash")
        .arg(&script)
        .arg(suite.name())
        .stdin(Stdio::null())
        .output()
        .expect("running scripts/debian-chroot.sh");
    assert!(
        out.status.success(),
        "no {} chroot (scripts/debian-chroot.sh {}): {}",
        suite.name(),
        suite.name(),
        String::from_utf8_lossy(&out.stderr)
    );
    let root: &'static Path = Box::leak(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).into_boxed_path());
    roots.get_or_insert_with(HashMap::new).insert(suite, root);
    root
}

/// Runs `script` (sh) inside the chroot, in a private mount and PID
/// namespace with /proc and /dev mounted: its mounts and any process it
/// leaves behind are gone when it ends. Host mounts made before — a FUSE
/// mount inside the chroot — are visible.
pub fn run(root: &Path, script: &str) -> Output {
    run_prepared(root, "", script)
}

/// Like [`run`], with `pre` (sh, `$R` is the chroot) run on the host side
/// of the new namespaces first: bind mounts that only this run sees.
pub fn run_prepared(root: &Path, pre: &str, script: &str) -> Output {
    command_prepared(root, pre, script).stdin(Stdio::null()).output().expect("running unshare/chroot")
}

/// The command [`run_prepared`] runs, to spawn it instead.
pub fn command_prepared(root: &Path, pre: &str, script: &str) -> Command {
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "--pid", "--fork", "sh", "-ec"])
        .arg(r#"mount -t proc proc "$R/proc"; mount --rbind /dev "$R/dev"; eval "$SNIX_PRE"; exec chroot "$R" /bin/sh -ec "$SNIX_INNER""#)
        .env("R", root)
        .env("SNIX_PRE", pre)
        .env("SNIX_INNER", script)
        .env("HOME", "/root")
        .env_remove("NIX_CONFIG");
    c
}

/// Like [`run`], panicking with the output on failure; returns stdout.
pub fn ok(root: &Path, script: &str) -> String {
    let out = run(root, script);
    assert!(
        out.status.success(),
        "in the chroot {}: {script}\nstdout: {}\nstderr: {}",
        root.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// A fresh directory inside the chroot: (host path, path inside).
pub fn scratch(root: &Path, name: &str) -> (PathBuf, PathBuf) {
    let inside = PathBuf::from("/tmp").join(format!("{name}-{}", std::process::id()));
    let host = root.join(inside.strip_prefix("/").expect("absolute"));
    let _ = std::fs::remove_dir_all(&host);
    std::fs::create_dir_all(&host).expect("creating a scratch directory in the chroot");
    (host, inside)
}

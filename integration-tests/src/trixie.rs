//! Nix 2.26 (protocol 1.38, local-overlay store) from a Debian trixie chroot
//! made once by `scripts/trixie-chroot.sh` and reused while present.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The chroot, prepared on first use (root and network needed the first
/// time); a test that needs it fails if it cannot be made.
pub fn chroot() -> &'static Path {
    static ROOT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let r = ROOT.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/trixie-chroot.sh");
        std::fs::create_dir_all("/var/cache/snix-tests").map_err(|e| e.to_string())?;
        // one preparation at a time, across test processes too
        let out = Command::new("flock")
            .arg("/var/cache/snix-tests/.lock")
            .arg("bash")
            .arg(&script)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    });
    match r {
        Ok(p) => p.as_path(),
        Err(e) => panic!("no trixie chroot with Nix 2.26 (scripts/trixie-chroot.sh): {e}"),
    }
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
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--pid", "--fork", "sh", "-ec"])
        .arg(r#"mount -t proc proc "$R/proc"; mount --rbind /dev "$R/dev"; eval "$SNIX_PRE"; exec chroot "$R" /bin/sh -ec "$SNIX_INNER""#)
        .env("R", root)
        .env("SNIX_PRE", pre)
        .env("SNIX_INNER", script)
        .env("HOME", "/root")
        .env_remove("NIX_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("running unshare/chroot")
}

/// Like [`run`], panicking with the output on failure; returns stdout.
pub fn ok(root: &Path, script: &str) -> String {
    let out = run(root, script);
    assert!(
        out.status.success(),
        "in the trixie chroot: {script}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A fresh directory inside the chroot: (host path, path inside).
pub fn scratch(root: &Path, name: &str) -> (PathBuf, PathBuf) {
    let inside = PathBuf::from("/tmp").join(format!("{name}-{}", std::process::id()));
    let host = root.join(inside.strip_prefix("/").unwrap());
    let _ = std::fs::remove_dir_all(&host);
    std::fs::create_dir_all(&host).unwrap();
    (host, inside)
}

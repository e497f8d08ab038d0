//! Running the real Nix, which judges our formats and protocols.
//!
//! Outside CI a missing Nix skips a test with a loud message; under
//! `CI=true` it fails the test, so nothing silently passes there.

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Settings that keep Nix off the network and enable the `nix` command.
/// Builds run as root without build users: concurrent test builds would
/// otherwise kill each other's builders (Nix kills all processes of a build user).
pub const NIX_CONFIG: &str =
    "substituters =\nexperimental-features = nix-command\nrequire-sigs = true\nbuild-users-group =\nsandbox = false\n";

pub fn in_ci() -> bool {
    std::env::var("CI").map(|v| v == "true" || v == "1").unwrap_or(false)
}

fn on_path(cmd: &str) -> bool {
    std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file())).unwrap_or(false)
}

/// Reports a test that returns early because a prerequisite is missing:
/// on stderr, and appended to `$SNIX_SKIP_LOG` when set, so that
/// scripts/test.sh counts it as skipped rather than passed (cargo shows a
/// passing test's stderr to nobody).
pub fn skipped(test: &str, why: &str) {
    eprintln!("SKIPPED {test}: {why}");
    if let Some(log) = std::env::var_os("SNIX_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(log) {
            let _ = writeln!(f, "SKIPPED {test}: {why}");
        }
    }
}

/// Whether the real Nix can be used. `false` only outside CI.
pub fn nix_available(test: &str) -> bool {
    if on_path("nix-store") && on_path("nix") {
        return true;
    }
    if in_ci() {
        panic!("{test}: the real Nix (nix-bin) is required under CI=true but nix-store is not on PATH");
    }
    skipped(test, "nix-store not found (install nix-bin or run scripts/test.sh)");
    false
}

/// Runs a Nix command, panicking with its stderr if it fails.
pub fn nix(args: &[&str]) -> Output {
    let out = nix_cmd(args[0]).args(&args[1..]).stdin(Stdio::null()).output().expect("spawning nix");
    assert!(
        out.status.success(),
        "`{}` failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a Nix command and returns its trimmed stdout.
pub fn nix_stdout(args: &[&str]) -> String {
    String::from_utf8(nix(args).stdout).expect("utf-8 output").trim().to_string()
}

/// A `Command` for a Nix program with our settings.
pub fn nix_cmd(program: &str) -> Command {
    let mut c = Command::new(program);
    c.env("NIX_CONFIG", NIX_CONFIG);
    c
}

/// The lines of a command's output, sorted (store path lists compare as sets).
pub fn sorted_lines(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s.lines().map(str::to_string).collect();
    v.sort();
    v
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// Builds, with Nix, an input-addressed path that refers to a content-addressed
/// one (added with `nix-store --add`). Returns (top, dep).
pub fn build_closure(tmp: &Path) -> (String, String) {
    let dep_dir = tmp.join("dep");
    std::fs::create_dir_all(&dep_dir).unwrap();
    let unique = format!("{:?}", tmp);
    std::fs::write(dep_dir.join("data"), unique.as_bytes()).unwrap();
    let dep = nix_stdout(&["nix-store", "--add", path_str(&dep_dir)]);
    let file = tmp.join("top.nix");
    std::fs::write(
        &file,
        format!(
            r#"derivation {{ name = "top"; system = builtins.currentSystem; builder = "/bin/bash";
                args = ["-c" "echo ${{builtins.storePath "{dep}"}}/data > $out"]; }}"#
        ),
    )
    .unwrap();
    let top = nix_stdout(&["nix-build", "--no-out-link", path_str(&file)]);
    (top.lines().last().unwrap().to_string(), dep)
}

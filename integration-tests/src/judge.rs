//! Running the real Nix, which judges our formats and protocols.
//!
//! Tests that need Nix are `#[ignore = "needs nix"]`: a plain `cargo test`
//! reports them as ignored; the test command runs them (`--include-ignored`)
//! and there a missing Nix fails them ([`require_nix`]) — a count never
//! lies.

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Settings that keep Nix off the network and enable the `nix` command.
/// Builds run as root without build users: concurrent test builds would
/// otherwise kill each other's builders (Nix kills all processes of a build user).
pub const NIX_CONFIG: &str =
    "substituters =\nexperimental-features = nix-command\nrequire-sigs = true\nbuild-users-group =\nsandbox = false\n";

fn on_path(cmd: &str) -> bool {
    std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file())).unwrap_or(false)
}

/// Fails the test unless the real Nix is on PATH.
pub fn require_nix() {
    assert!(
        on_path("nix-store") && on_path("nix"),
        "this test needs the real Nix: `apt-get install nix-bin`, or run scripts/test.sh (which installs it)"
    );
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

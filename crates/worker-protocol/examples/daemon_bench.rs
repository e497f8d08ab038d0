//! Our nix-daemon against Debian's own `nix-daemon`, same run, same data,
//! the same Nix 2.8 client:
//!
//!     cargo build --release --workspace --bins && \
//!     cargo run --release -p snix-worker-protocol --example daemon_bench -- [SCRATCH]
//!
//! - `nix path-info -r --json` over a closure of 2,500 paths (a chain of
//!   `builtins.toFile` paths, each referring to the one before);
//! - `nix copy --to unix://…` of a ≥1 GiB path (a copy of /usr/lib/x86_64-linux-gnu
//!   and /usr/lib/jvm) into a fresh store behind each daemon.
//!
//! Debian's daemon serves a local store (`--option store`), on its own
//! socket (NIX_DAEMON_SOCKET_PATH). Each metric: median of 3 (path-info) or
//! of 2 fresh copies; ratio = Debian's time / ours (>1: we are faster).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use integration_tests::stack::{NixDaemon, StoreDaemon};

const NIX_CONFIG: &str = "substituters =\nexperimental-features = nix-command\nbuild-users-group =\nsandbox = false\n";
const CHAIN: usize = 2500;

fn nix(args: &[&str]) -> String {
    let out =
        Command::new(args[0]).args(&args[1..]).env("NIX_CONFIG", NIX_CONFIG).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn timed(args: &[&str]) -> Duration {
    let t = Instant::now();
    nix(args);
    t.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    if v.len().is_multiple_of(2) {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2
    } else {
        v[v.len() / 2]
    }
}

/// Debian's nix-daemon serving the local store rooted at `root` (None:
/// the system store) on `socket`.
struct DebianDaemon(Child);

impl DebianDaemon {
    fn start(socket: &Path, root: Option<&Path>) -> DebianDaemon {
        let mut c = Command::new("nix-daemon");
        c.env("NIX_CONFIG", NIX_CONFIG).env("NIX_DAEMON_SOCKET_PATH", socket);
        if let Some(r) = root {
            c.args(["--option", "store", r.to_str().unwrap()]);
        }
        let child = c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let t = Instant::now();
        while std::os::unix::net::UnixStream::connect(socket).is_err() {
            assert!(t.elapsed() < Duration::from_secs(20), "Debian's nix-daemon did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        DebianDaemon(child)
    }
}

impl Drop for DebianDaemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn row(metric: &str, ours: Duration, theirs: Duration) {
    println!(
        "{metric:<44} {:>9.3}s {:>9.3}s {:>7.2}x   (goal ≥1.0x)",
        ours.as_secs_f64(),
        theirs.as_secs_f64(),
        theirs.as_secs_f64() / ours.as_secs_f64()
    );
}

fn main() {
    let scratch = std::env::args().nth(1).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/var/tmp"));
    let tmp = tempfile::Builder::new().prefix("daemon-bench").tempdir_in(&scratch).unwrap();
    let t = tmp.path();

    // a closure of CHAIN paths
    let expr = t.join("chain.nix");
    std::fs::write(
        &expr,
        format!(
            "let step = prev: i: builtins.toFile \"chain-${{toString i}}\" \"${{prev}} ${{toString i}}\"; \
             in builtins.foldl' step \"start\" (builtins.genList (x: x) {CHAIN})"
        ),
    )
    .unwrap();
    let top = nix(&["nix-instantiate", "--read-write-mode", "--eval", expr.to_str().unwrap()])
        .trim()
        .trim_matches('"')
        .to_string();
    let n = nix(&["nix-store", "-qR", &top]).lines().count();
    assert!(n >= 2000, "closure of {n} paths");

    // a ≥1 GiB path
    let tree = t.join("big-tree");
    std::fs::create_dir_all(&tree).unwrap();
    for src in ["/usr/lib/x86_64-linux-gnu", "/usr/lib/jvm"] {
        if Path::new(src).exists() {
            let st = Command::new("cp").arg("-a").arg(src).arg(&tree).status().unwrap();
            assert!(st.success());
        }
    }
    let big = nix(&["nix-store", "--add", tree.to_str().unwrap()]).trim().to_string();
    let size: u64 = nix(&["nix", "path-info", "--json", &big])
        .split("\"narSize\":")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    assert!(size >= 1 << 30, "big path is only {size} bytes");

    println!("closure of {n} paths; copy of {:.2} GiB; client: Debian's Nix 2.8", size as f64 / (1u64 << 30) as f64);
    println!("{:<44} {:>10} {:>10} {:>8}", "metric", "ours", "Debian", "ratio");

    // path-info: both daemons serve the same paths
    let store = StoreDaemon::start(&t.join("state-q"));
    let ours = NixDaemon::start(&store, &t.join("ours-q.sock"), &[]);
    nix(&["nix", "copy", "--no-check-sigs", "--to", &ours.url(None), &top]);
    let debian_sock = t.join("debian-q.sock");
    let debian = DebianDaemon::start(&debian_sock, None);
    let debian_url = format!("unix://{}", debian_sock.display());
    let q = |url: &str| timed(&["nix", "path-info", "-r", "--json", "--store", url, &top]);
    q(&ours.url(None));
    q(&debian_url);
    let (mut a, mut b) = (vec![], vec![]);
    for _ in 0..3 {
        a.push(q(&ours.url(None)));
        b.push(q(&debian_url));
    }
    row(&format!("nix path-info -r --json ({n} paths)"), median(a), median(b));
    drop(debian);
    drop(ours);
    drop(store);

    // copy: into a fresh store behind each daemon, twice
    let (mut a, mut b) = (vec![], vec![]);
    for i in 0..2 {
        let store = StoreDaemon::start(&t.join(format!("state-c{i}")));
        let ours = NixDaemon::start(&store, &t.join(format!("ours-c{i}.sock")), &[]);
        a.push(timed(&["nix", "copy", "--no-check-sigs", "--to", &ours.url(None), &big]));
        drop(ours);
        drop(store);
        let root = t.join(format!("debian-root-{i}"));
        let sock = t.join(format!("debian-c{i}.sock"));
        let debian = DebianDaemon::start(&sock, Some(&root));
        b.push(timed(&["nix", "copy", "--no-check-sigs", "--to", &format!("unix://{}", sock.display()), &big]));
        drop(debian);
        let _ = std::fs::remove_dir_all(&root);
        let _ = std::fs::remove_dir_all(t.join(format!("state-c{i}")));
    }
    row(&format!("nix copy --to ({:.2} GiB)", size as f64 / (1u64 << 30) as f64), median(a), median(b));
    nix(&["nix-store", "--delete", &big]);
}

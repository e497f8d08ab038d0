//! Store benchmarks against the real Nix, same run, same data.
//!
//!     cargo run --release -p snix-store --example store_bench -- [TREE] [SCRATCH]
//!
//! TREE defaults to a copy of /usr/lib/x86_64-linux-gnu and /usr/lib/jvm
//! (≈1.2 GiB) made under SCRATCH (default /var/tmp). Each metric: 2 timed
//! runs after a warm-up, median; ratio = Nix time / our time (>1: faster).
//!
//! - import: `snix-store import TREE` vs `nix-store --store FRESH --add TREE`
//! - copy: `snix-store copy P` vs `nix copy --to FRESH P` (from the local store)
//! - dump: `snix-store dump P` vs `nix-store --dump P`
//!
//! and the store daemon's peak RSS.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const NIX_CONFIG: &str = "substituters =\nexperimental-features = nix-command\nbuild-users-group =\nsandbox = false\n";

fn bin(name: &str) -> PathBuf {
    std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join(name)
}

fn timed(mut c: Command) -> Duration {
    let t = Instant::now();
    let out = c.stdin(Stdio::null()).stderr(Stdio::piped()).output().expect("spawn");
    let d = t.elapsed();
    assert!(out.status.success(), "{c:?}: {}", String::from_utf8_lossy(&out.stderr));
    d
}

fn median2(mut f: impl FnMut() -> Duration) -> Duration {
    f();
    let (a, b) = (f(), f());
    (a + b) / 2
}

fn row(metric: &str, ours: Duration, theirs: Duration, base: &str) {
    println!(
        "{metric:<40} {:>9.2}s {:>9.2}s {:>7.2}x   (baseline: {base})",
        ours.as_secs_f64(),
        theirs.as_secs_f64(),
        theirs.as_secs_f64() / ours.as_secs_f64()
    );
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let tree_arg = args.next().filter(|s| !s.is_empty());
    let scratch_root = PathBuf::from(args.next().unwrap_or_else(|| "/var/tmp".into()));
    let scratch = tempfile::Builder::new().prefix("store-bench").tempdir_in(&scratch_root).unwrap();
    let s = scratch.path();
    let tree = match tree_arg {
        Some(t) => PathBuf::from(t),
        None => {
            let t = s.join("bench-tree");
            std::fs::create_dir_all(&t).unwrap();
            for src in ["/usr/lib/x86_64-linux-gnu", "/usr/lib/jvm"] {
                assert!(Command::new("cp").args(["-a", src, t.to_str().unwrap()]).status().unwrap().success());
            }
            t
        }
    };
    let tree_s = tree.to_str().unwrap();

    // our daemon on embedded backends; a fresh state for every timed run
    let start = |name: &str| -> (std::process::Child, String) {
        let dir = s.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        let socket = dir.join("snix-store.sock");
        let child = Command::new(bin("snix-store"))
            .args(["daemon", "-l", socket.to_str().unwrap()])
            .env("STATE_DIRECTORY", dir.join("state"))
            .env("RUST_LOG", "warn")
            .spawn()
            .expect("snix-store (build it: cargo build --release -p snix-store)");
        while !socket.exists() {
            std::thread::sleep(Duration::from_millis(20));
        }
        (child, format!("grpc+unix://{}", socket.display()))
    };
    let stop = |mut c: std::process::Child| {
        let _ = c.kill();
        let _ = c.wait();
    };
    let ours = |addr: &str, args: &[&str]| {
        let mut c = Command::new(bin("snix-store"));
        c.args(args)
            .env("BLOB_SERVICE_ADDR", addr)
            .env("DIRECTORY_SERVICE_ADDR", addr)
            .env("PATH_INFO_SERVICE_ADDR", addr)
            .env("NIX_CONFIG", NIX_CONFIG)
            .env("RUST_LOG", "warn");
        c
    };
    let nix = |prog: &str, args: &[&str]| {
        let mut c = Command::new(prog);
        c.args(args).env("NIX_CONFIG", NIX_CONFIG);
        c
    };
    let fresh = |name: &str| -> String {
        let p = s.join(name);
        if p.exists() {
            // a Nix store is read-only: make it removable
            let _ = Command::new("chmod").args(["-R", "u+w", p.to_str().unwrap()]).status();
            let _ = std::fs::remove_dir_all(&p);
        }
        p.to_str().unwrap().to_string()
    };

    let size: u64 = String::from_utf8(Command::new("du").args(["-sb", tree_s]).output().unwrap().stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    println!("tree {tree_s} ({:.0} MiB)", size as f64 / 1048576.0);
    println!("{:<40} {:>10} {:>10} {:>8}", "metric", "ours", "nix", "ratio");

    // import vs nix-store --add into a fresh local store
    let mut path = String::new();
    let imp = median2(|| {
        let (d, addr) = start("import");
        let mut c = ours(&addr, &["import", tree_s]);
        let t = Instant::now();
        let out = c.stdin(Stdio::null()).output().unwrap();
        let e = t.elapsed();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        path = String::from_utf8(out.stdout).unwrap().trim().to_string();
        stop(d);
        e
    });
    let add = median2(|| {
        let store = fresh("fresh-add");
        timed(nix("nix-store", &["--store", &store, "--add", tree_s]))
    });
    row("import (vs nix-store --add)", imp, add, "fresh local store");

    // copy out of the local Nix store vs nix copy into a fresh local store
    let local =
        String::from_utf8(nix("nix-store", &["--add", tree_s]).output().unwrap().stdout).unwrap().trim().to_string();
    assert_eq!(local, path, "our import and nix-store --add disagree");
    let mut rss = 0;
    let cp = median2(|| {
        let (d, addr) = start("copy");
        let t = timed(ours(&addr, &["copy", &local]));
        rss = rss.max(vm_hwm_kib(d.id()));
        stop(d);
        t
    });
    let ncp = median2(|| {
        let store = fresh("fresh-copy");
        timed(nix("nix", &["copy", "--no-check-sigs", "--to", &store, &local]))
    });
    row("copy (vs nix copy)", cp, ncp, "local store → fresh local store");

    // dump vs nix-store --dump
    let (d, addr) = start("dump");
    assert!(ours(&addr, &["copy", &local]).status().unwrap().success());
    let out = s.join("dump.nar");
    let dump = median2(|| {
        let mut c = ours(&addr, &["dump", &path]);
        c.stdout(std::fs::File::create(&out).unwrap());
        timed(c)
    });
    let ndump = median2(|| {
        let mut c = nix("nix-store", &["--dump", &local]);
        c.stdout(std::fs::File::create(&out).unwrap());
        timed(c)
    });
    row("dump (vs nix-store --dump)", dump, ndump, "same path");
    stop(d);

    println!("store daemon peak RSS during copy: {} MiB", rss / 1024);
    let _ = Command::new("chmod").args(["-R", "u+w", s.to_str().unwrap()]).status();
}

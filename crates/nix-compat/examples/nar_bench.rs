//! NAR throughput against the real Nix, on the same tree in the same run.
//!
//!     cargo run --release -p nix-compat --example nar_bench -- [TREE] [RUNS]
//!
//! TREE defaults to /usr/share; RUNS (default 3) timed runs after one warm-up
//! of each side, alternating ours/theirs. Prints medians and the ratio
//! nix_time / our_time (>1.0: we are faster).
#![allow(clippy::unwrap_used)]

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix_compat::nar::reader::restore;
use nix_compat::nar::writer::{nar_hash_path, write_path};

const NIX_CONFIG: &str = "substituters =\nexperimental-features = nix-command\n";

fn nix(args: &[&str], stdin: Option<&Path>, stdout: Option<&Path>) -> Duration {
    let mut c = Command::new(args[0]);
    c.args(&args[1..]).env("NIX_CONFIG", NIX_CONFIG);
    c.stdin(stdin.map(|p| Stdio::from(File::open(p).unwrap())).unwrap_or(Stdio::null()));
    c.stdout(stdout.map(|p| Stdio::from(File::create(p).unwrap())).unwrap_or(Stdio::null()));
    let t = Instant::now();
    let st = c.status().expect("running nix (apt-get install nix-bin)");
    let d = t.elapsed();
    assert!(st.success(), "{args:?} failed");
    d
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Times `ours` and `theirs` alternately; returns their medians.
fn compare(
    runs: usize,
    mut ours: impl FnMut() -> Duration,
    mut theirs: impl FnMut() -> Duration,
) -> (Duration, Duration) {
    ours();
    theirs();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        a.push(ours());
        b.push(theirs());
    }
    (median(a), median(b))
}

fn timed(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let tree = PathBuf::from(args.next().unwrap_or_else(|| "/usr/share".into()));
    let runs: usize = args.next().map(|s| s.parse().expect("RUNS is a number")).unwrap_or(3);
    let scratch = tempfile::Builder::new().prefix("nar-bench").tempdir_in("/var/tmp").unwrap();
    let nar_file = scratch.path().join("tree.nar");
    let tree_s = tree.to_str().unwrap();

    // our NAR, checked against Nix's before anything is timed
    let ours_nar = write_path(&tree, Vec::new()).expect("serialising the tree");
    nix(&["nix-store", "--dump", tree_s], None, Some(&nar_file));
    let theirs_nar = std::fs::read(&nar_file).unwrap();
    assert!(ours_nar == theirs_nar, "our NAR differs from nix-store --dump");
    let nar_mib = ours_nar.len() as f64 / (1024.0 * 1024.0);
    drop((ours_nar, theirs_nar));
    println!("tree {tree_s}: NAR {nar_mib:.0} MiB; {runs} runs each, medians");
    println!("{:<34} {:>10} {:>10} {:>8}", "metric", "ours", "nix", "ratio");

    let report = |name: &str, (o, t): (Duration, Duration)| {
        println!(
            "{:<34} {:>8.0}ms {:>8.0}ms {:>7.2}x   ({:.0} MiB/s vs {:.0} MiB/s)",
            name,
            o.as_secs_f64() * 1e3,
            t.as_secs_f64() * 1e3,
            t.as_secs_f64() / o.as_secs_f64(),
            nar_mib / o.as_secs_f64(),
            nar_mib / t.as_secs_f64()
        );
    };

    let out = scratch.path().join("out.nar");
    report(
        "NAR write (tree -> file)",
        compare(
            runs,
            || {
                // as for nix below: the file is created (truncated) before and
                // closed after the timed part
                let file = File::create(&out).unwrap();
                let mut written = None;
                let t = timed(|| {
                    written = Some(write_path(&tree, std::io::BufWriter::with_capacity(1 << 20, &file)).unwrap())
                });
                drop(written);
                t
            },
            || nix(&["nix-store", "--dump", tree_s], None, Some(&out)),
        ),
    );

    let dest = scratch.path().join("restored");
    report(
        "NAR read (file -> tree)",
        compare(
            runs,
            || {
                let _ = std::fs::remove_dir_all(&dest);
                timed(|| restore(BufReader::with_capacity(1 << 20, File::open(&nar_file).unwrap()), &dest).unwrap())
            },
            || {
                let _ = std::fs::remove_dir_all(&dest);
                nix(&["nix-store", "--restore", dest.to_str().unwrap()], Some(&nar_file), None)
            },
        ),
    );

    report(
        "NAR sha256 (nix hash path)",
        compare(
            runs,
            || timed(|| drop(nar_hash_path(&tree).unwrap())),
            || nix(&["nix", "hash", "path", tree_s], None, None),
        ),
    );
}

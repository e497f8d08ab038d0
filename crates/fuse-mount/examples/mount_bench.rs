//! FUSE mount benchmarks against the native file system, same run, same
//! bytes (needs root and /dev/fuse):
//!
//!     cargo build --release -p snix-store -p snix-fuse-mount && \
//!     cargo run --release -p snix-fuse-mount --example mount_bench -- [SCRATCH]
//!
//! SCRATCH (default /var/tmp) gets a 1 GiB file made of real binaries from
//! /usr/lib and a synthetic tree of 60,000 entries; both are imported into a
//! fresh `snix-store daemon` and mounted with `snix-mount`. Cold runs drop
//! the page cache first (ours and the daemon's storage alike). The first
//! read of the big file comes from the castore and leaves a copy in the
//! mount's content cache; the later ones read that copy (through the kernel
//! when passthrough is on). Each metric: median of 3 (a first read: 3
//! mounts, each with an empty cache); ratio = native time / our time (>1: faster than native).
#![allow(clippy::unwrap_used)]

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use integration_tests::stack::{Mount, StoreDaemon};

const BIG: u64 = 1 << 30;
/// Random reads, cold (each from disk) and warm (each from the page cache:
/// many, so that the one open does not dominate).
const RANDOM_READS_COLD: usize = 2000;
const RANDOM_READS_WARM: usize = 200_000;

fn drop_caches() {
    let _ = Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3").expect("dropping the page cache needs root");
}

/// Median of 3 runs of `f` on `p`, each after dropping the page cache.
fn cold(f: impl Fn(&Path) -> Duration, p: &Path) -> Duration {
    median3(|| {
        drop_caches();
        f(p)
    })
}

fn median3(mut f: impl FnMut() -> Duration) -> Duration {
    let mut v = [f(), f(), f()];
    v.sort();
    v[1]
}

fn read_all(p: &Path) -> Duration {
    let t = Instant::now();
    let mut f = std::fs::File::open(p).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).unwrap();
        if k == 0 {
            break;
        }
        n += k as u64;
    }
    assert_eq!(n, BIG);
    t.elapsed()
}

fn random_reads(p: &Path, reads: usize) -> Duration {
    let t = Instant::now();
    let mut f = std::fs::File::open(p).unwrap();
    let mut buf = [0u8; 4096];
    let mut x = 12345u64;
    for _ in 0..reads {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        f.seek(SeekFrom::Start((x >> 11) % (BIG - 4096))).unwrap();
        f.read_exact(&mut buf).unwrap();
    }
    t.elapsed()
}

fn find_ls(p: &Path) -> Duration {
    let t = Instant::now();
    let out = Command::new("find").arg(p).arg("-ls").output().unwrap();
    assert!(out.status.success());
    t.elapsed()
}

fn row(metric: &str, ours: Duration, native: Duration, goal: &str) {
    println!(
        "{metric:<34} {:>9.3}s {:>9.3}s {:>7.2}x   (goal {goal})",
        ours.as_secs_f64(),
        native.as_secs_f64(),
        native.as_secs_f64() / ours.as_secs_f64()
    );
}

/// 1 GiB of real binaries (cycled), so compression and dedup see real data.
fn make_big_file(path: &Path) {
    let mut sources: Vec<PathBuf> = std::fs::read_dir("/usr/lib/x86_64-linux-gnu")
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.symlink_metadata().map(|m| m.is_file() && m.len() > 4096).unwrap_or(false))
        .collect();
    sources.sort();
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut left = BIG;
    let mut round = 0u8;
    while left > 0 {
        for s in &sources {
            let mut data = std::fs::read(s).unwrap();
            // later rounds differ, so the file does not dedup into one copy
            for b in data.iter_mut().step_by(4096) {
                *b ^= round;
            }
            let n = (data.len() as u64).min(left) as usize;
            std::io::Write::write_all(&mut out, &data[..n]).unwrap();
            left -= n as u64;
            if left == 0 {
                break;
            }
        }
        round = round.wrapping_add(1);
    }
}

fn make_tree(root: &Path) -> usize {
    let mut n = 0;
    for d in 0..600 {
        let dir = root.join(format!("d{d:03}"));
        std::fs::create_dir_all(&dir).unwrap();
        n += 1;
        for f in 0..100 {
            std::fs::write(dir.join(format!("f{f:03}")), format!("{d}/{f}\n")).unwrap();
            n += 1;
        }
    }
    n
}

/// Bytes of the files directly in `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()?.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum())
        .unwrap_or(0)
}

fn main() {
    let scratch = std::env::args().nth(1).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/var/tmp"));
    let tmp = tempfile::Builder::new().prefix("mount-bench").tempdir_in(&scratch).unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("big")).unwrap();
    let big_native = data.join("big").join("file");
    make_big_file(&big_native);
    let entries = make_tree(&data.join("tree"));

    let daemon = StoreDaemon::start(&tmp.path().join("state"));
    let big_path = daemon.snix_store(&["import", data.join("big").to_str().unwrap()]).trim().to_string();
    let tree_path = daemon.snix_store(&["import", data.join("tree").to_str().unwrap()]).trim().to_string();
    let cache = tmp.path().join("cache");
    let mnt = tmp.path().join("mnt");
    let base = |mount: &Mount, p: &str| mount.dir.join(p.rsplit('/').next().unwrap());
    let wait_for_copy = || {
        let t = Instant::now();
        while dir_bytes(&cache) < BIG && t.elapsed() < Duration::from_secs(120) {
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // `read` of the big file never read before: a new mount, an empty
    // cache, a dropped page cache; the copy it starts is let finish
    let never_read_before = |read: &dyn Fn(&Path) -> Duration| {
        let _ = std::fs::remove_dir_all(&cache);
        let mount = Mount::start(&daemon, &mnt, &["--cache-dir", cache.to_str().unwrap()]);
        drop_caches();
        let d = read(&base(&mount, &big_path).join("file"));
        wait_for_copy();
        mount.stop();
        d
    };
    let first_read = median3(|| never_read_before(&read_all));
    // (the copy made meanwhile competes with them, as it would in use)
    let never_read = never_read_before(&|p| random_reads(p, RANDOM_READS_COLD));
    let mount = Mount::start(&daemon, &mnt, &["--cache-dir", cache.to_str().unwrap()]);
    let big_ours = base(&mount, &big_path).join("file");
    let tree_ours = base(&mount, &tree_path);

    println!("1 GiB file of /usr/lib binaries; tree of {entries} entries; daemon over a unix socket");
    println!("{:<34} {:>10} {:>10} {:>8}", "metric", "ours", "native", "ratio");
    let passthrough = std::fs::read_to_string(&mount.log).unwrap().contains("passthrough on");
    println!("content cache in {}; passthrough {}", cache.display(), if passthrough { "on" } else { "off" });
    row("first read 1 GiB (never read), cold", first_read, cold(read_all, &big_native), "≥0.3x");
    let read_so_far = BIG;
    row(
        "sequential read 1 GiB, cold",
        median3(|| cold(read_all, &big_ours)),
        median3(|| cold(read_all, &big_native)),
        "≥0.9x",
    );
    read_all(&big_ours);
    read_all(&big_native);
    row("sequential read 1 GiB, warm", median3(|| read_all(&big_ours)), median3(|| read_all(&big_native)), "≥0.95x");
    let random_cold = |p: &Path| random_reads(p, RANDOM_READS_COLD);
    let (rnd_ours, rnd_native) = (cold(random_cold, &big_ours), cold(random_cold, &big_native));
    row(&format!("{RANDOM_READS_COLD} random 4 KiB reads, cold (never read)"), never_read, rnd_native, "≥0.3x");
    row(&format!("{RANDOM_READS_COLD} random 4 KiB reads, cold (read before)"), rnd_ours, rnd_native, "≥0.8x");
    // warm: every page in the page cache first
    read_all(&big_ours);
    read_all(&big_native);
    row(
        &format!("{RANDOM_READS_WARM} random 4 KiB reads, warm"),
        median3(|| random_reads(&big_ours, RANDOM_READS_WARM)),
        median3(|| random_reads(&big_native, RANDOM_READS_WARM)),
        "≥0.9x",
    );
    let (find_ours, find_native) = (cold(find_ls, &tree_ours), cold(find_ls, &data.join("tree")));
    row(&format!("find -ls over {entries} entries, cold"), find_ours, find_native, "≥0.77x, i.e. ≤1.3x native time");
    row(
        &format!("find -ls over {entries} entries, warm"),
        median3(|| find_ls(&tree_ours)),
        median3(|| find_ls(&data.join("tree"))),
        "≥0.91x, i.e. ≤1.1x native time",
    );
    println!(
        "content cache: {:.2} bytes on disk per byte read of the big file (goal ≤1.0)",
        dir_bytes(&cache) as f64 / read_so_far as f64
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", mount.pid())).unwrap();
    let rss = status.lines().find(|l| l.starts_with("VmRSS")).unwrap_or("VmRSS: ?").to_string();
    let hwm = status.lines().find(|l| l.starts_with("VmHWM")).unwrap_or("VmHWM: ?").to_string();
    println!(
        "snix-mount after the walk: {} (peak {})",
        rss.split_whitespace().nth(1).unwrap_or("?").to_string() + " kB",
        hwm.split_whitespace().nth(1).unwrap_or("?").to_string() + " kB"
    );
}

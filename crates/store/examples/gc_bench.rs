//! Garbage collection: does the store shrink back, and how long does it take?
//!
//!     cargo run --release -p snix-store --example gc_bench -- [SCRATCH]
//!
//! Imports 20 versions of a 200 MiB tree (200 files of 1 MiB; each version
//! rewrites 3 of them) into an embedded store under SCRATCH (default
//! /var/tmp), deletes the first 19 and collects with no grace period. Then:
//! - disk use of its blobs against a fresh store holding only the last
//!   version (goal: within 10 %);
//! - the collection's time against a plain `du` of the blob directory
//!   before it (cold caches for both), as a ratio.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use snix_store::composition::StoreServices;
use snix_store::gc::{collect_garbage, delete_paths, GcOptions};
use snix_store::import::import_path;

const FILES: usize = 200;
const FILE: usize = 1024 * 1024;
const VERSIONS: usize = 20;
const CHANGED: usize = 3;

fn random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn du(dir: &Path) -> u64 {
    let out = Command::new("du").arg("-sB1").arg(dir).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().parse().unwrap()
}

fn files_under(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                files_under(&e.path())
            } else {
                1
            }
        })
        .sum()
}

fn drop_caches() {
    let _ = Command::new("sync").status();
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
}

fn store(root: &Path) -> StoreServices {
    std::fs::create_dir_all(root).unwrap();
    StoreServices::from_addrs(
        &format!("objectstore+file://{}", root.join("blobs").display()),
        &format!("sled://{}", root.join("dirs").display()),
        &format!("sled://{}", root.join("pathinfo").display()),
    )
    .unwrap()
}

#[tokio::main]
async fn main() {
    let scratch = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "/var/tmp".into()));
    let tmp = tempfile::tempdir_in(&scratch).unwrap();
    let tree = tmp.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    for i in 0..FILES {
        std::fs::write(tree.join(format!("f{i:03}")), random(i as u64, FILE)).unwrap();
    }
    let a = store(&tmp.path().join("a"));
    let mut paths = Vec::new();
    let t = Instant::now();
    for v in 0..VERSIONS {
        for c in 0..CHANGED {
            let i = (v * 7 + c * 31) % FILES;
            std::fs::write(tree.join(format!("f{i:03}")), random(1000 + (v * CHANGED + c) as u64, FILE)).unwrap();
        }
        paths.push(import_path(&tree, &*a.blobs, &*a.dirs, &*a.infos).await.unwrap().store_path);
    }
    println!("imported {VERSIONS} versions of {} MiB in {:.1}s", (FILES * FILE) >> 20, t.elapsed().as_secs_f64());
    delete_paths(&*a.infos, &paths[..VERSIONS - 1], false).await.unwrap();

    let blobs = tmp.path().join("a/blobs");
    let before = du(&blobs);
    let files_before = files_under(&blobs);
    drop_caches();
    let t = Instant::now();
    let entries_before = du(&blobs);
    let du_time = t.elapsed();
    assert_eq!(entries_before, before);
    drop_caches();
    let t = Instant::now();
    let opts = GcOptions { grace: Duration::ZERO, ..Default::default() };
    let stats = collect_garbage(&*a.infos, &*a.blobs, &*a.dirs, &opts, |_| {}).await.unwrap();
    let gc_time = t.elapsed();
    let after = du(&blobs);

    let fresh = store(&tmp.path().join("fresh"));
    import_path(&tree, &*fresh.blobs, &*fresh.dirs, &*fresh.infos).await.unwrap();
    let only_last = du(&tmp.path().join("fresh/blobs"));
    println!(
        "gc freed {} chunks, {} blob lists, {} directories, {} MiB",
        stats.chunks,
        stats.blobs,
        stats.directories,
        stats.bytes >> 20
    );
    println!(
        "{:<44} {:>9.1}MiB {:>9.1}MiB {:>7.2}x   (goal <=1.10x)",
        "disk after gc vs a store of only the last",
        after as f64 / 1048576.0,
        only_last as f64 / 1048576.0,
        after as f64 / only_last as f64
    );
    println!(
        "{:<44} {:>9.3}s {:>9.3}s {:>7.2}x   (store before: {:.0} MiB in {} files, {} paths)",
        "gc time vs du of the blob directory (cold)",
        gc_time.as_secs_f64(),
        du_time.as_secs_f64(),
        gc_time.as_secs_f64() / du_time.as_secs_f64(),
        before as f64 / 1048576.0,
        files_before,
        VERSIONS
    );
}

//! castore benchmarks, each a ratio against a baseline measured in the same
//! run on the same data.
//!
//!     cargo run --release -p snix-castore --example castore_bench -- [TREE] [SCRATCH]
//!
//! TREE (default /usr/share) is ingested; SCRATCH (default /var/tmp) is on the
//! disk everything is written to. Metrics:
//! - ingest: `cp -a TREE` time / our ingest time (goal ≥ 0.5×);
//! - blob read: reading a 512 MiB file from the page cache / reading the same
//!   bytes as a blob over the unix-socket gRPC API (goal ≥ 0.8×);
//! - dedup: bytes on disk for 5 copies of a tree of large files with small
//!   scattered edits / 5 × the tree's size (goal ≤ 0.3×).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use snix_castore::blobservice::BlobService;
use snix_castore::composition;
use snix_castore::directoryservice::DirectoryService;
use snix_castore::import::ingest_path;
use tokio::io::AsyncReadExt;

fn du_bytes(p: &Path) -> u64 {
    let out = Command::new("du").args(["-sb", p.to_str().unwrap()]).output().expect("du");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().parse().unwrap()
}

fn tree_bytes(p: &Path) -> u64 {
    // apparent size of regular files only
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("find '{}' -type f -printf '%s\\n' | awk '{{s+=$1}} END {{print s+0}}'", p.display()))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn stores(root: &Path) -> (Arc<dyn BlobService>, Arc<dyn DirectoryService>) {
    let _ = std::fs::remove_dir_all(root);
    (
        composition::blob_service(&format!("objectstore+file://{}", root.join("blobs").display())).unwrap(),
        composition::directory_service(&format!("sled://{}", root.join("dirs").display())).unwrap(),
    )
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn row(metric: &str, ours: String, base: String, ratio: f64, goal: &str) {
    println!("{metric:<40} {ours:>14} {base:>14} {ratio:>8.2}x   goal {goal}");
}

fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let tree = PathBuf::from(args.next().unwrap_or_else(|| "/usr/share".into()));
    let scratch_root = PathBuf::from(args.next().unwrap_or_else(|| "/var/tmp".into()));
    let scratch = tempfile::Builder::new().prefix("castore-bench").tempdir_in(&scratch_root).unwrap();
    let s = scratch.path();
    println!("{:<40} {:>14} {:>14} {:>9}", "metric", "ours", "baseline", "ratio");

    // --- ingest vs cp -a (3 runs each, alternating; the tree is warm in the page cache) ---
    let bytes = tree_bytes(&tree);
    let mut ours = Vec::new();
    let mut cps = Vec::new();
    for i in 0..3 {
        let dst = s.join(format!("cp{i}"));
        let t = Instant::now();
        assert!(Command::new("cp")
            .args(["-a", tree.to_str().unwrap(), dst.to_str().unwrap()])
            .status()
            .unwrap()
            .success());
        Command::new("sync").status().unwrap();
        cps.push(t.elapsed());
        let _ = std::fs::remove_dir_all(&dst);

        let (b, d) = stores(&s.join("store"));
        let t = Instant::now();
        ingest_path(&*b, &*d, &tree).await.expect("ingest");
        Command::new("sync").status().unwrap();
        ours.push(t.elapsed());
    }
    let (o, c) = (median(ours), median(cps));
    row(
        &format!("ingest vs cp -a {} ({:.0} MiB)", tree.display(), bytes as f64 / 1048576.0),
        format!("{:.2}s", o.as_secs_f64()),
        format!("{:.2}s", c.as_secs_f64()),
        c.as_secs_f64() / o.as_secs_f64(),
        "≥0.5",
    );

    // --- blob read over unix-socket gRPC vs reading the file ---
    let big = s.join("big-file");
    std::fs::write(&big, pseudo_random(7, 512 * 1024 * 1024)).unwrap();
    let (b, d) = stores(&s.join("store-read"));
    let node = ingest_path(&*b, &*d, &big).await.unwrap();
    let snix_castore::Node::File { digest, .. } = node else { panic!("a file") };
    let socket = s.join("castore.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let (bs, ds) = (b.clone(), d.clone());
    tokio::spawn(async move {
        snix_castore::grpc_server::castore_router(bs, ds)
            .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener))
            .await
            .unwrap()
    });
    let client = composition::blob_service(&format!("grpc+unix://{}", socket.display())).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut grpc_t = Vec::new();
    let mut file_t = Vec::new();
    for _ in 0..4 {
        let t = Instant::now();
        let mut f = tokio::fs::File::open(&big).await.unwrap();
        while f.read(&mut buf).await.unwrap() > 0 {}
        file_t.push(t.elapsed());
        let t = Instant::now();
        let mut r = client.open_read(&digest).await.unwrap().unwrap();
        let mut n = 0;
        loop {
            let k = r.read(&mut buf).await.unwrap();
            if k == 0 {
                break;
            }
            n += k;
        }
        assert_eq!(n, 512 * 1024 * 1024);
        grpc_t.push(t.elapsed());
    }
    let (g, f) = (median(grpc_t), median(file_t));
    row(
        "blob read 512 MiB (grpc+unix vs file)",
        format!("{:.0}MiB/s", 512.0 / g.as_secs_f64()),
        format!("{:.0}MiB/s", 512.0 / f.as_secs_f64()),
        f.as_secs_f64() / g.as_secs_f64(),
        "≥0.8",
    );

    // --- dedup: 5 copies of a tree of large files with small scattered edits ---
    let base = pseudo_random(11, 4 * 48 * 1024 * 1024);
    let (b, d) = stores(&s.join("store-dedup"));
    let mut logical = 0u64;
    let mut rng = 12345u64;
    for copy in 0..5 {
        let dir = s.join(format!("tree{copy}"));
        std::fs::create_dir_all(&dir).unwrap();
        for (i, part) in base.chunks(48 * 1024 * 1024).enumerate() {
            let mut data = part.to_vec();
            if copy > 0 {
                // 20 small edits scattered through each file
                for _ in 0..20 {
                    rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let off = (rng >> 17) as usize % (data.len() - 16);
                    data[off..off + 16].copy_from_slice(&copy.to_string().repeat(16).as_bytes()[..16]);
                }
            }
            std::fs::write(dir.join(format!("file{i}")), &data).unwrap();
            logical += data.len() as u64;
        }
        ingest_path(&*b, &*d, &dir).await.unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
    drop((b, d));
    let on_disk = du_bytes(&s.join("store-dedup"));
    row(
        "dedup: 5 edited copies, bytes on disk",
        format!("{:.0}MiB", on_disk as f64 / 1048576.0),
        format!("{:.0}MiB", logical as f64 / 1048576.0),
        on_disk as f64 / logical as f64,
        "≤0.3",
    );
}

//! Lists the mount's root of a store of N registered paths and times it:
//! `root_listing_bench [N…]` (default 10000 100000). Each N gets a fresh
//! store daemon (sled), N paths registered through its gRPC API (each a
//! symlink, so no blobs; each refers to up to three earlier ones, so the
//! referrers-first order has work to do), a fresh snix-mount, then
//! `readdir` of the root: cold (first open after the mount) and again.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use integration_tests::stack::{Mount, StoreDaemon};
use nix_compat::store_path::StorePath;
use snix_castore::Node;
use snix_store::pathinfoservice::PathInfoService;
use snix_store::PathInfo;

fn path(i: u64) -> StorePath {
    let mut digest = [0u8; 20];
    digest[..8].copy_from_slice(&i.to_le_bytes());
    digest[8..16].copy_from_slice(&i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
    StorePath::from_parts(digest, &format!("bench-{i}")).unwrap()
}

fn info(i: u64) -> PathInfo {
    let references = [i / 2, i / 3, i.saturating_sub(1)].into_iter().filter(|&r| r < i).map(path).collect();
    PathInfo {
        store_path: path(i),
        node: Node::Symlink { target: format!("/bench/{i}").into() },
        references,
        nar_size: 0,
        nar_sha256: [0; 32],
        signatures: vec![],
        deriver: None,
        ca: None,
    }
}

fn list(dir: &std::path::Path) -> (usize, f64) {
    let t = Instant::now();
    let n = std::fs::read_dir(dir).unwrap().count();
    (n, t.elapsed().as_secs_f64())
}

fn main() {
    let counts: Vec<u64> = std::env::args().skip(1).map(|a| a.parse().unwrap()).collect();
    let counts = if counts.is_empty() { vec![10_000, 100_000] } else { counts };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _in_rt = rt.enter();
    for n in counts {
        let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
        let daemon = StoreDaemon::start(&tmp.path().join("state"));
        let infos: Arc<dyn PathInfoService> =
            snix_store::composition::path_info_service(&format!("grpc+unix://{}", daemon.socket.display())).unwrap();
        let t = Instant::now();
        rt.block_on(async {
            futures::stream::iter(0..n)
                .map(|i| {
                    let infos = infos.clone();
                    async move { infos.put(info(i)).await.unwrap() }
                })
                .buffer_unordered(64)
                .collect::<Vec<_>>()
                .await
        });
        let registered = t.elapsed().as_secs_f64();
        let mount = Mount::start(&daemon, &tmp.path().join("mnt"), &[]);
        let (listed, cold) = list(&mount.dir);
        let (_, again) = list(&mount.dir);
        assert_eq!(listed as u64, n, "the root lists every registered path");
        println!(
            "{n:>7} paths: registered in {registered:.1} s; root listed in {cold:.3} s (first), {again:.3} s (again)"
        );
        // the mount's own account (with RUST_LOG=snix_fuse_mount=debug): fetching vs ordering
        for l in std::fs::read_to_string(&mount.log).unwrap().lines().filter(|l| l.contains("listed the root")) {
            println!("        {}", l.split("DEBUG").nth(1).unwrap_or(l).trim());
        }
    }
}

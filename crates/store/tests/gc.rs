//! Garbage collection's safety, as a user runs it (`snix-store delete`,
//! `snix-store gc` against a store daemon), judged by the real Nix: every
//! path still registered dumps byte-identical to `nix-store --dump` of its
//! original.
//! - an import and a `nix copy --to` running during collections, reusing
//!   content that is garbage older than the grace period, lose nothing;
//! - a daemon killed with SIGKILL at random points of collections leaves
//!   every registered path whole, and the next collection finishes the job;
//! - a file being read through snix-mount keeps reading after its path is
//!   deleted and collected; a new lookup of the path finds nothing.
#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use integration_tests::judge::{nix, nix_cmd, nix_stdout, path_str, require_nix};
use integration_tests::stack::{bin, Mount, NixDaemon, StoreDaemon};

fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A tree of `files` files of `size` bytes (seeded), plus `extra`.
fn tree(dir: &Path, files: usize, size: usize, seed: u64, extra: &[(&str, Vec<u8>)]) -> PathBuf {
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    for i in 0..files {
        std::fs::write(dir.join("sub").join(format!("f{i}")), pseudo_random(seed + i as u64, size)).unwrap();
    }
    for (name, data) in extra {
        std::fs::write(dir.join(name), data).unwrap();
    }
    dir.to_path_buf()
}

/// sha256 of a NAR, streamed from a command's stdout.
fn nar_sha256(mut c: Command) -> String {
    let mut child = c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = out.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        sha2::Digest::update(&mut hasher, &buf[..n]);
    }
    let status = child.wait_with_output().unwrap();
    assert!(status.status.success(), "{c:?}: {}", String::from_utf8_lossy(&status.stderr));
    format!("{:x}", sha2::Digest::finalize(hasher))
}

/// Every registered path (with the file it was imported from) dumps as
/// `nix-store --dump` dumps that file.
fn assert_whole(store: &StoreDaemon, paths: &[(String, PathBuf)]) {
    for (path, source) in paths {
        let mut ours = store.client(&bin("snix-store"));
        ours.args(["dump", path]);
        let mut theirs = nix_cmd("nix-store");
        theirs.arg("--dump").arg(source);
        assert_eq!(nar_sha256(ours), nar_sha256(theirs), "{path} no longer renders as {}", source.display());
    }
}

fn import(store: &StoreDaemon, dir: &Path) -> String {
    store.snix_store(&["import", path_str(dir)]).trim().to_string()
}

fn blob_bytes(dir: &Path) -> u64 {
    let out = Command::new("du").args(["-sb"]).arg(dir).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
#[ignore = "needs nix"]
fn imports_and_copies_during_collections_lose_nothing() {
    require_nix();
    let tmp = tempfile::tempdir().unwrap();
    let store = StoreDaemon::start(&tmp.path().join("state"));
    // garbage older than the grace period: two trees, imported and deleted
    let old = tree(&tmp.path().join("old"), 40, 300_000, 1, &[]);
    let old2 = tree(&tmp.path().join("old2"), 40, 300_000, 500, &[]);
    for dir in [&old, &old2] {
        let p = import(&store, dir);
        store.snix_store(&["delete", &p]);
    }
    // (the grace period must outlast an import: content an import wrote
    // longer ago than that, and has not registered yet, is fair game)
    let grace = "8s";
    std::thread::sleep(Duration::from_secs(9));

    // each tree again, then a large new file (NAR order): an import of one
    // and a `nix copy --to` of the other run while collections run back to
    // back. Both reuse chunks older than the grace period that a collection
    // is about to take, and keep them unregistered while they send the rest.
    let again = tree(&tmp.path().join("again"), 40, 300_000, 1, &[("zz-big", pseudo_random(99, 60 << 20))]);
    let copied_dir = tree(&tmp.path().join("copied"), 40, 300_000, 500, &[("zz-big", pseudo_random(98, 40 << 20))]);
    let copied = nix_stdout(&["nix-store", "--add", path_str(&copied_dir)]);
    let daemon = NixDaemon::start(&store, &tmp.path().join("nd.sock"), &[]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let collector = {
        let (stop, env) = (stop.clone(), store.client_env());
        std::thread::spawn(move || {
            let mut runs = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let out =
                    Command::new(bin("snix-store")).args(["gc", "--grace", grace]).envs(env.clone()).output().unwrap();
                assert!(out.status.success(), "gc: {}", String::from_utf8_lossy(&out.stderr));
                runs += 1;
            }
            runs
        })
    };
    let copy = {
        let (url, copied) = (daemon.url(None), copied.clone());
        std::thread::spawn(move || nix(&["nix", "copy", "--no-check-sigs", "--to", &url, &copied]))
    };
    let again_path = import(&store, &again);
    copy.join().unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let runs = collector.join().unwrap();
    assert!(runs >= 2, "only {runs} collections ran during the import");
    let registered = [(again_path, again), (copied, copied_dir)];
    assert_whole(&store, &registered);

    // the old tombstones are purged, and what nothing needs goes
    let out = store.client(&bin("snix-store")).args(["gc", "--grace", "0s"]).output().unwrap();
    assert!(out.status.success());
    assert_whole(&store, &registered);
}

#[test]
#[ignore = "needs nix"]
fn sigkill_at_any_point_of_a_collection_leaves_every_path_whole() {
    require_nix();
    let tmp = tempfile::tempdir().unwrap();
    let mut store = StoreDaemon::start(&tmp.path().join("state"));
    // kept: three trees; garbage: twenty deleted ones and their shared chunks
    let mut kept = Vec::new();
    for i in 0..3 {
        let dir = tree(&tmp.path().join(format!("kept{i}")), 20, 200_000, 100 * i, &[("tag", vec![i as u8])]);
        kept.push((import(&store, &dir), dir));
    }
    let mut garbage = Vec::new();
    for i in 0..20 {
        // each shares half its files with kept0: shared chunks must stay
        let dir = tree(
            &tmp.path().join(format!("junk{i}")),
            20,
            200_000,
            if i % 2 == 0 { 0 } else { 1000 + 100 * i },
            &[("tag", vec![200 + i as u8])],
        );
        garbage.push(import(&store, &dir));
    }
    store.snix_store(&[&["delete"][..], &garbage.iter().map(String::as_str).collect::<Vec<_>>()].concat());
    let before = blob_bytes(&store.blob_dir());

    // collections killed at random points (the daemon, mid-delete)
    let mut killed = 0;
    for round in 0..8u64 {
        let mut gc =
            store.client(&bin("snix-store")).args(["gc", "--grace", "0s"]).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(20 + (round * 37) % 150));
        let done = gc.try_wait().unwrap().is_some();
        store.kill9_and_restart();
        let _ = gc.wait();
        if !done {
            killed += 1;
        }
        assert_whole(&store, &kept);
    }
    assert!(killed >= 2, "only {killed} of the collections were cut short");
    // the next one finishes the job
    store.snix_store(&["gc", "--grace", "0s"]);
    assert_whole(&store, &kept);
    let after = blob_bytes(&store.blob_dir());
    assert!(after < before, "{after} bytes after, {before} before");
    // nothing left: a dry run finds nothing to free
    let out = store.client(&bin("snix-store")).args(["gc", "--grace", "0s", "--dry-run"]).output().unwrap();
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(report.contains("would free 0 paths, 0 tombstones, 0 directories, 0 blobs, 0 chunks: 0 bytes"), "{report}");
}

#[test]
#[ignore = "needs nix, root and /dev/fuse"]
fn a_file_being_read_through_the_mount_keeps_reading_after_its_path_is_collected() {
    require_nix();
    let tmp = tempfile::tempdir().unwrap();
    let store = StoreDaemon::start(&tmp.path().join("state"));
    let data = pseudo_random(7, 64 * 1024 * 1024);
    let dir = tree(&tmp.path().join("read-me"), 0, 0, 0, &[("blob", data.clone())]);
    let path = import(&store, &dir);
    let mount = Mount::start(&store, &tmp.path().join("mnt"), &[]);
    let base = path.rsplit('/').next().unwrap();
    let file = mount.dir.join(base).join("blob");
    let mut f = std::fs::File::open(&file).unwrap();
    let mut first = vec![0u8; 1024 * 1024];
    f.read_exact(&mut first).unwrap();

    store.snix_store(&["delete", &path]);
    // default grace period: a deleted path's content stays
    store.snix_store(&["gc"]);
    let mut rest = Vec::new();
    f.read_to_end(&mut rest).unwrap();
    first.extend(rest);
    assert!(first == data, "the open file read back different bytes");
    drop(f);

    // a new lookup finds nothing once the kernel's entry expires
    let t = Instant::now();
    while mount.dir.join(base).exists() {
        assert!(t.elapsed() < Duration::from_secs(15), "{base} still resolves after its deletion");
        std::thread::sleep(Duration::from_millis(250));
    }
    let err = std::fs::metadata(&file).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    // and with no grace period its content goes
    let out = store.client(&bin("snix-store")).args(["gc", "--grace", "0s"]).output().unwrap();
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && report.contains("freed 0 paths, 1 tombstones"), "{report}");
    assert!(!report.contains(": 0 bytes"), "{report}");
}

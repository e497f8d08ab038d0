//! `snix-mount` as a user runs it: a real FUSE mount (root, /dev/fuse) of a
//! `snix-store daemon` filled from real Nix store paths, judged against the
//! originals by `diff -r`, file metadata and `nix-store --dump`.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use integration_tests::corpus;
use integration_tests::judge::{build_closure, nix_stdout, path_str, require_nix};
use integration_tests::stack::{bin, is_mounted, Mount, StoreDaemon};

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap()
}

/// (type, permission bits, size for files, target for symlinks) of every
/// entry under `root`, by relative path.
fn tree(root: &Path) -> BTreeMap<PathBuf, (char, u32, u64, PathBuf)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let p = if rel.as_os_str().is_empty() { root.to_path_buf() } else { root.join(&rel) };
        let m = std::fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let mode = m.permissions().mode() & 0o7777;
        let entry = if m.file_type().is_symlink() {
            ('l', mode, 0, std::fs::read_link(&p).unwrap())
        } else if m.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(rel.join(e.unwrap().file_name()));
            }
            ('d', mode, 0, PathBuf::new())
        } else {
            ('f', mode, m.len(), PathBuf::new())
        };
        out.insert(rel, entry);
    }
    out
}

fn sha256_of_dump(p: &Path) -> String {
    let out = Command::new("nix-store").arg("--dump").arg(p).output().unwrap();
    assert!(out.status.success(), "nix-store --dump {}: {}", p.display(), String::from_utf8_lossy(&out.stderr));
    format!("{:x?}", nix_compat::hash::sha256(&out.stdout))
}

/// Imports the corpus (no Nix needed) and returns the store paths.
fn import_corpus(daemon: &StoreDaemon) -> Vec<String> {
    let mut args = vec!["import"];
    args.extend(corpus::shared().iter().map(|p| path_str(p)));
    daemon.snix_store(&args).lines().map(str::to_string).collect()
}

/// Imports a directory holding one file, `file`, with `data` (made under
/// `scratch`); its store path.
fn import_one_file(daemon: &StoreDaemon, scratch: &Path, data: &[u8]) -> String {
    let src = scratch.join("one");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("file"), data).unwrap();
    daemon.snix_store(&["import", path_str(&src)]).trim().to_string()
}

/// Makes a one-file source tree `name` under `scratch`, looks its store path
/// up under `dir` (a miss), imports it, and reads it under `dir`. Returns
/// its store path.
fn register_after_a_miss(daemon: &StoreDaemon, dir: &Path, scratch: &Path, name: &str) -> String {
    register_after_a_miss_then(daemon, dir, dir, || {}, scratch, name)
}

/// The same, with the miss under `dir` (the mount `mount`, or an overlay
/// over it): the path is read in the mount as soon as the import returned
/// (the daemon holds a registration until the mount confirms it dropped its
/// misses), then `then` runs, then it is read under `dir` at once.
fn register_after_a_miss_then(
    daemon: &StoreDaemon,
    dir: &Path,
    mount: &Path,
    then: impl FnOnce(),
    scratch: &Path,
    name: &str,
) -> String {
    let src = scratch.join(name);
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), name).unwrap();
    let (nar_hash, _) = nix_compat::nar::writer::nar_hash_path(&src).unwrap();
    let expected =
        nix_compat::store_path::make_source_path(name, &nar_hash.sha256_digest().unwrap(), [], false).unwrap();
    for _ in 0..3 {
        let e = std::fs::metadata(dir.join(expected.basename())).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "not there yet: {e}");
    }
    let path = daemon.snix_store(&["import", path_str(&src)]).trim().to_string();
    assert_eq!(path, expected.to_string());
    let read = std::fs::read(mount.join(basename(&path)).join("f"));
    assert_eq!(
        read.ok().as_deref(),
        Some(name.as_bytes()),
        "{path} registered after a miss is not in the mount at once"
    );
    then();
    let read = std::fs::read(dir.join(basename(&path)).join("f"));
    assert_eq!(read.ok().as_deref(), Some(name.as_bytes()), "{path} is not under {} at once", dir.display());
    path
}

fn corpus_path<'a>(paths: &'a [String], name: &str) -> &'a str {
    paths.iter().find(|p| p.ends_with(&format!("-{name}"))).unwrap()
}

#[test]
#[ignore = "needs nix, root and /dev/fuse"]
fn mounted_paths_equal_the_originals() {
    require_nix();
    let tmp = tempfile::tempdir().unwrap();
    // real store paths: the corpus added by Nix, and a built closure
    let mut paths: Vec<String> =
        corpus::shared().iter().map(|e| nix_stdout(&["nix-store", "--add", path_str(e)])).collect();
    let (top, dep) = build_closure(tmp.path());
    paths.push(top.clone());
    let daemon = StoreDaemon::start(&tmp.path().join("state"));
    let mut copy = vec!["copy", top.as_str()];
    copy.extend(paths.iter().map(String::as_str));
    daemon.snix_store(&copy);
    paths.push(dep);

    let mount = Mount::start(&daemon, &tmp.path().join("mnt"), &[]);
    for p in &paths {
        let mounted = mount.dir.join(basename(p));
        let diff = Command::new("diff").args(["-r", "--no-dereference"]).arg(p).arg(&mounted).output().unwrap();
        assert!(diff.status.success(), "diff -r {p}: {}", String::from_utf8_lossy(&diff.stdout));
        assert_eq!(tree(Path::new(p)), tree(&mounted), "metadata of {p}");
        assert_eq!(sha256_of_dump(Path::new(p)), sha256_of_dump(&mounted), "nix-store --dump of {p}");
    }
    // A second walk is answered by the kernel alone, but for an
    // opendir/releasedir pair per directory while the root is listable
    // (the default; each pair is ~100 bytes of requests, no listing or
    // lookup) and with no request at all under --no-list-root (opendir is
    // answered ENOSYS once). A request is a read of /dev/fuse, counted in
    // rchar.
    let dirs: usize = paths.iter().map(|p| tree(Path::new(p)).values().filter(|e| e.0 == 'd').count()).sum();
    let warm_walk = |mount: &Mount| {
        let walk = || {
            let out = Command::new("find").args(paths.iter().map(|p| mount.dir.join(basename(p)))).arg("-ls").output();
            assert!(out.unwrap().status.success());
        };
        walk();
        let before = bytes_read_by(mount.pid());
        walk();
        bytes_read_by(mount.pid()) - before
    };
    let read = warm_walk(&mount);
    assert!(dirs >= 10 && read < 200 * dirs as u64, "a warm walk of {dirs} directories read {read} bytes of requests");
    let unlisted = Mount::start(&daemon, &tmp.path().join("unlisted"), &["--no-list-root"]);
    let read = warm_walk(&unlisted);
    // an opendir/releasedir pair per directory would be >= 96 bytes each
    assert!(read < 96 * dirs as u64 / 2, "a warm walk of {dirs} directories read {read} bytes of requests");
    // uid/gid 0, Nix's mtime, st_blocks from the size
    let big = mount.dir.join(basename(corpus_path(&paths, "big-file")));
    let m = std::fs::metadata(&big).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mtime()), (0, 0, 1));
    assert_eq!(m.blocks(), m.len().div_ceil(512));
    // a directory's link count is 2 + its subdirectories
    let mixed = mount.dir.join(basename(corpus_path(&paths, "mixed-tree")));
    assert_eq!(std::fs::metadata(&mixed).unwrap().nlink(), 2 + 2);
    // read-only
    let e = std::fs::write(mixed.join("new"), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");

    let status = mount.stop();
    assert!(status.success(), "snix-mount exit: {status}");
    assert!(!is_mounted(&tmp.path().join("mnt").canonicalize().unwrap()));
}

#[test]
#[ignore = "needs root and /dev/fuse"]
fn root_lookups_and_listing() {
    let tmp = tempfile::tempdir().unwrap();
    let daemon = StoreDaemon::start(&tmp.path().join("state"));
    let paths = import_corpus(&daemon);

    let plain = Mount::start(&daemon, &tmp.path().join("plain"), &["--no-list-root"]);
    // refused at open or (no opendir without a root listing) at the first read
    let e = std::fs::read_dir(&plain.dir).and_then(|mut rd| rd.next().transpose()).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
    assert!(std::fs::read_to_string(&plain.log).unwrap().contains("--no-list-root"), "the refusal is logged with why");
    // unknown, invalid, and a right hash with the wrong name
    for name in [
        "00000000000000000000000000000000-nothing".to_string(),
        "not-a-store-path".to_string(),
        format!("{}-other-name", &basename(&paths[0])[..32]),
    ] {
        let e = std::fs::metadata(plain.dir.join(&name)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{name}: {e}");
    }
    // a path registered after a miss is there at once
    let late = register_after_a_miss(&daemon, &plain.dir, tmp.path(), "fresh");

    // listed by default, every path before those it refers to (a closure
    // Nix built: top refers to dep)
    let (top, dep) = build_closure(tmp.path());
    daemon.snix_store(&["copy", &top]);
    let listing = Mount::start(&daemon, &tmp.path().join("listing"), &[]);
    let mut names: Vec<String> =
        std::fs::read_dir(&listing.dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    let at = |p: &str| names.iter().position(|n| n == basename(p)).unwrap_or_else(|| panic!("{p} not listed"));
    assert!(at(&top) < at(&dep), "{top} is listed after {dep}, which it refers to: {names:?}");
    names.sort();
    let mut want: Vec<String> = paths.iter().chain([&late, &top, &dep]).map(|p| basename(p).to_string()).collect();
    want.sort();
    want.dedup();
    assert_eq!(names, want);
}

#[test]
#[ignore = "needs root and /dev/fuse"]
fn sixteen_threads_read_the_same_and_different_files() {
    let tmp = tempfile::tempdir().unwrap();
    let daemon = StoreDaemon::start(&tmp.path().join("state"));
    let paths = import_corpus(&daemon);
    let mount = Mount::start(&daemon, &tmp.path().join("mnt"), &["--threads", "8"]);
    let big_orig = corpus::entry("big-file");
    let big = mount.dir.join(basename(corpus_path(&paths, "big-file")));
    let many = mount.dir.join(basename(corpus_path(&paths, "many-files")));
    let many_orig = corpus::entry("many-files");
    let expected = std::fs::read(big_orig).unwrap();

    std::thread::scope(|s| {
        for t in 0..16u64 {
            let (big, many, many_orig, expected) = (&big, &many, &many_orig, &expected);
            s.spawn(move || match t % 4 {
                // the same big file, whole
                0 => assert!(std::fs::read(big).unwrap() == *expected, "thread {t}: big file differs"),
                // the same big file, random reads
                1 | 2 => {
                    let mut f = std::fs::File::open(big).unwrap();
                    let mut x = t * 7919;
                    for _ in 0..200 {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        let off = (x >> 11) % (expected.len() as u64 - 4096);
                        let mut buf = [0u8; 4096];
                        f.seek(SeekFrom::Start(off)).unwrap();
                        f.read_exact(&mut buf).unwrap();
                        assert!(buf[..] == expected[off as usize..off as usize + 4096], "thread {t} at {off}");
                    }
                }
                // different small files
                _ => {
                    for i in (t as usize..10_000).step_by(16 * 4) {
                        let rel = format!("{:02}/f{i}", i % 100);
                        assert_eq!(
                            std::fs::read(many.join(&rel)).unwrap(),
                            std::fs::read(many_orig.join(&rel)).unwrap(),
                            "thread {t}: {rel}"
                        );
                    }
                }
            });
        }
    });
}

#[test]
#[ignore = "needs root and /dev/fuse"]
fn a_missing_blob_fails_that_file_only_and_xattrs_show_digests() {
    let tmp = tempfile::tempdir().unwrap();
    let daemon = StoreDaemon::start(&tmp.path().join("state"));
    let src = tmp.path().join("victim");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("lost"), corpus::pseudo_random(99, 10_000)).unwrap();
    std::fs::write(src.join("kept"), b"still here").unwrap();
    let victim = daemon.snix_store(&["import", path_str(&src)]).trim().to_string();
    let paths = import_corpus(&daemon);

    let mount = Mount::start(&daemon, &tmp.path().join("mnt"), &["--show-xattr"]);
    let lost = mount.dir.join(basename(&victim)).join("lost");
    let out = Command::new("getfattr").args(["--only-values", "-n", "user.snix.castore.digest"]).arg(&lost).output();
    let digest = match out {
        Ok(o) if o.status.success() => String::from_utf8(o.stdout).unwrap(),
        // getfattr (package attr) missing: read the attribute directly
        _ => {
            let c = std::ffi::CString::new(lost.to_str().unwrap()).unwrap();
            let name = c"user.snix.castore.digest";
            let mut buf = vec![0u8; 256];
            let n = unsafe { libc::getxattr(c.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
            assert!(n > 0, "getxattr: {}", std::io::Error::last_os_error());
            String::from_utf8(buf[..n as usize].to_vec()).unwrap()
        }
    };
    let digest: snix_castore::B3Digest = digest.trim().parse().expect("a castore digest");
    assert_eq!(digest, snix_castore::B3Digest::of(&corpus::pseudo_random(99, 10_000)));

    // remove the blob from the castore behind the daemon's back
    let hex = digest.to_hex();
    let chunk = daemon.blob_dir().join("chunks").join(&hex[..2]).join(&hex);
    std::fs::remove_file(&chunk).unwrap_or_else(|e| panic!("{}: {e}", chunk.display()));

    let e = std::fs::read(&lost).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    // everything else is still served
    assert_eq!(std::fs::read(mount.dir.join(basename(&victim)).join("kept")).unwrap(), b"still here");
    let seven = mount.dir.join(basename(corpus_path(&paths, "seven-bytes")));
    assert_eq!(std::fs::read(seven).unwrap(), b"1234567");
}

/// An overlayfs over `lower`, its upper, work and merged directories in
/// `base`; unmounted when dropped.
struct Overlay(PathBuf);

impl Overlay {
    fn mount(lower: &Path, base: &Path) -> Overlay {
        let (upper, work, merged) = (base.join("upper"), base.join("work"), base.join("merged"));
        for d in [&upper, &work, &merged] {
            std::fs::create_dir(d).unwrap();
        }
        let opts = format!("lowerdir={},upperdir={},workdir={}", lower.display(), upper.display(), work.display());
        let st = Command::new("mount").args(["-t", "overlay", "overlay", "-o", &opts]).arg(&merged).status().unwrap();
        assert!(st.success(), "mount -t overlay over {} failed", lower.display());
        Overlay(merged)
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
#[ignore = "needs root and /dev/fuse"]
fn works_as_an_overlayfs_lower_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let daemon = StoreDaemon::start(&tmp.path().join("state"));
    let paths = import_corpus(&daemon);
    let mount = Mount::start(&daemon, &tmp.path().join("lower"), &[]);
    let (upper, merged) = (tmp.path().join("upper"), tmp.path().join("merged"));
    let _guard = Overlay::mount(&mount.dir, tmp.path());

    let mixed = basename(corpus_path(&paths, "mixed-tree"));
    let orig = corpus::entry("mixed-tree");
    let diff =
        Command::new("diff").args(["-r", "--no-dereference"]).arg(orig).arg(merged.join(mixed)).output().unwrap();
    assert!(diff.status.success(), "{}", String::from_utf8_lossy(&diff.stdout));
    // writes land in the upper layer; the lower one is untouched
    std::fs::write(merged.join("new-file"), b"upper").unwrap();
    assert_eq!(std::fs::read(upper.join("new-file")).unwrap(), b"upper");
    let readme = merged.join(mixed).join("share/doc/README");
    std::fs::set_permissions(&readme, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&readme, b"changed").unwrap();
    assert_eq!(std::fs::read(upper.join(mixed).join("share/doc/README")).unwrap(), b"changed");
    assert_eq!(std::fs::read(mount.dir.join(mixed).join("share/doc/README")).unwrap(), b"docs\n");

    // A path registered after the overlay missed it is there once the
    // overlay is mounted again, as Nix's remount-hook does (overlayfs keeps
    // its own misses; our mount must not keep one under it), and one
    // unregistered is gone from the mount as soon as it hears of it.
    let remount = || {
        let st = Command::new("mount").args(["-o", "remount"]).arg(&merged).status().unwrap();
        assert!(st.success(), "mount -o remount {}", merged.display());
    };
    let late = register_after_a_miss_then(&daemon, &merged, &mount.dir, remount, tmp.path(), "late");
    daemon.snix_store(&["delete", &late]);
    assert!(!mount.dir.join(basename(&late)).exists(), "{late} is still in the mount once its deletion returned");
    remount();
    let e = std::fs::metadata(merged.join(basename(&late))).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{late} is still in the overlay after its deletion: {e}");
}

/// Waits until `mount` has begun watching the daemon `n` times.
fn wait_for_watches(mount: &Mount, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = std::fs::read_to_string(&mount.log).unwrap();
        if log.matches("watching the store's registrations").count() >= n {
            return;
        }
        assert!(Instant::now() < deadline, "the mount did not begin watching {n} times: {log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Misses are kept (a stopped daemon does not hold them up) while the
/// mount watches the daemon; a daemon that restarts ends the watch, and a
/// path registered then is still seen at once; a stopped mount holds a
/// registration up for a bounded time only.
#[test]
#[ignore = "needs root and /dev/fuse"]
fn misses_are_kept_until_a_registration_and_a_restart_keeps_nothing_stale() {
    let tmp = tempfile::tempdir().unwrap();
    let mut daemon = StoreDaemon::start(&tmp.path().join("state"));
    let mount = Mount::start(&daemon, &tmp.path().join("mnt"), &[]);
    wait_for_watches(&mount, 1);
    let absent: Vec<String> = (0..200).map(|i| format!("{:0>32}-absent-{i}", i % 10)).collect();
    let misses = |what: &str| {
        let start = Instant::now();
        for name in &absent {
            let e = std::fs::metadata(mount.dir.join(name)).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{what}: {name}: {e}");
        }
        start.elapsed()
    };
    misses("first");
    // with the daemon stopped, the kept misses are answered all the same
    let pid = daemon.pid();
    let stop = |sig: &str| assert!(Command::new("kill").args([sig, &pid.to_string()]).status().unwrap().success());
    stop("-STOP");
    let (tx, rx) = std::sync::mpsc::channel();
    let dir = mount.dir.clone();
    let names = absent.clone();
    std::thread::spawn(move || {
        let start = Instant::now();
        let all_absent = names.iter().all(|n| std::fs::metadata(dir.join(n)).is_err());
        let _ = tx.send((all_absent, start.elapsed()));
    });
    let answered = rx.recv_timeout(Duration::from_secs(10));
    stop("-CONT");
    let (all_absent, took) = answered.expect("kept misses waited for a stopped daemon");
    assert!(all_absent && took < Duration::from_secs(2), "200 kept misses took {took:?}");

    register_after_a_miss(&daemon, &mount.dir, tmp.path(), "first");
    // a restarted daemon: the watch ends, nothing kept from before is trusted
    misses("before the restart");
    daemon.kill9_and_restart();
    register_after_a_miss(&daemon, &mount.dir, tmp.path(), "after-restart");
    // and the watch comes back: misses are kept again
    wait_for_watches(&mount, 2);
    register_after_a_miss(&daemon, &mount.dir, tmp.path(), "after-the-watch-is-back");

    // a mount that does not confirm (stopped here) holds a registration up
    // for a bounded time only; the daemon then ends its watch, and the
    // mount starts another
    let mount_pid = mount.pid().to_string();
    let signal = |sig: &str| assert!(Command::new("kill").args([sig, &mount_pid]).status().unwrap().success());
    let src = tmp.path().join("while-stopped");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), b"registered while the mount was stopped").unwrap();
    signal("-STOP");
    let start = Instant::now();
    let out = daemon.client(&bin("snix-store")).arg("import").arg(&src).output().unwrap();
    let took = start.elapsed();
    signal("-CONT");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bound = snix_store::pathinfoservice::CONFIRM_WITHIN;
    assert!(
        took >= bound - Duration::from_millis(500) && took < bound + Duration::from_secs(10),
        "a registration with a stopped mount watching took {took:?} (the bound is {bound:?})"
    );
    wait_for_watches(&mount, 3);
    register_after_a_miss(&daemon, &mount.dir, tmp.path(), "after-a-cut-off");
}

#[test]
#[ignore = "needs root and /dev/fuse"]
fn sigterm_unmounts_and_a_stale_mount_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let daemon = StoreDaemon::start(&tmp.path().join("state"));
    let dir = tmp.path().join("mnt");
    let m = Mount::start(&daemon, &dir, &[]);
    let canon = m.dir.clone();
    assert!(m.stop().success());
    assert!(!is_mounted(&canon));

    let stale = Mount::start(&daemon, &dir, &[]).kill9();
    let out = daemon.client(&bin("snix-mount")).arg(&stale).output().unwrap();
    let _ = Command::new("umount").arg("-l").arg(&stale).status();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stale FUSE mount") && err.contains("umount -l"), "{err}");
    // after clearing it, mounting works again
    let again = Mount::start(&daemon, &dir, &[]);
    let log = again.log.clone();
    let status = again.stop();
    assert!(status.success(), "{status}: {}", std::fs::read_to_string(log).unwrap());
}

/// A copy of the mount in another, private mount namespace (what a
/// service with PrivateTmp= gets where / is not shared) keeps the file
/// system alive after our unmount; SIGTERM must still end the process.
#[test]
#[ignore = "needs root and /dev/fuse"]
fn sigterm_ends_the_process_while_another_namespace_holds_a_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let daemon = StoreDaemon::start(&tmp.path().join("state"));
    let m = Mount::start(&daemon, &tmp.path().join("mnt"), &[]);
    let mut holder =
        Command::new("unshare").args(["--mount", "--propagation", "private", "sleep", "60"]).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let canon = m.dir.clone();
    let start = std::time::Instant::now();
    let status = m.stop();
    let took = start.elapsed();
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(status.success(), "{status}");
    assert!(took < std::time::Duration::from_secs(10), "SIGTERM took {took:?}");
    assert!(!is_mounted(&canon));
}

/// Bytes the process `pid` has read with read(2)/pread(2) so far.
fn io_counter(pid: u32, name: &str) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    io.lines().find_map(|l| l.strip_prefix(name)).unwrap().trim().parse().unwrap()
}

fn bytes_read_by(pid: u32) -> u64 {
    io_counter(pid, "rchar: ")
}

fn bytes_written_by(pid: u32) -> u64 {
    io_counter(pid, "wchar: ")
}

fn drop_caches() {
    let _ = Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3").unwrap();
}

/// Waits (at most 60 s) until the cache holds a copy of `content`, and
/// returns that copy's path.
fn cached_copy(cache: &Path, content: &[u8]) -> PathBuf {
    let copy = cache.join(snix_castore::B3Digest::of(content).to_hex());
    let t = Instant::now();
    while std::fs::metadata(&copy).map(|m| m.len()).ok() != Some(content.len() as u64) {
        assert!(t.elapsed() < Duration::from_secs(60), "no cached copy at {}", copy.display());
        std::thread::sleep(Duration::from_millis(50));
    }
    copy
}

/// Reads `file` cold through the mount; returns (its bytes, how many bytes
/// the mount's process read meanwhile).
fn cold_read(mount: &Mount, file: &Path) -> (Vec<u8>, u64) {
    drop_caches();
    let before = bytes_read_by(mount.pid());
    let data = std::fs::read(file).unwrap();
    (data, bytes_read_by(mount.pid()) - before)
}

fn log_of(mount: &Mount) -> String {
    std::fs::read_to_string(&mount.log).unwrap()
}

#[test]
#[ignore = "needs root and /dev/fuse"]
fn cached_copies_are_read_by_the_kernel_and_equal_the_originals() {
    let tmp = tempfile::tempdir().unwrap();
    let daemon = StoreDaemon::start(&tmp.path().join("state"));
    let paths = import_corpus(&daemon);
    let cache = tmp.path().join("cache");
    let cache_arg = path_str(&cache).to_string();
    let mount = Mount::start(&daemon, &tmp.path().join("mnt"), &["--cache-dir", &cache_arg, "--passthrough", "auto"]);
    assert!(log_of(&mount).contains("passthrough on"), "{}", log_of(&mount));
    let big_name = basename(corpus_path(&paths, "big-file"));
    let big = mount.dir.join(big_name);
    let want = std::fs::read(corpus::entry("big-file")).unwrap();
    // the first read comes from the castore, and leaves a copy behind; the
    // reader reads the copy as it is made, so the blob is sent only once
    let sent_before = bytes_written_by(daemon.pid());
    let (first, _) = cold_read(&mount, &big);
    assert!(first == want, "first read of big-file differs");
    let copy = cached_copy(&cache, &want);
    let sent = bytes_written_by(daemon.pid()) - sent_before;
    assert!(sent < want.len() as u64 * 5 / 4, "the daemon sent {sent} bytes for a first read of {}", want.len());
    assert!(std::fs::read(&copy).unwrap() == want, "the cached copy differs");
    // the next open is handed to the kernel: the bytes do not pass through us
    let (second, through_us) = cold_read(&mount, &big);
    assert!(second == want, "passthrough read of big-file differs");
    assert!(through_us < want.len() as u64 / 10, "{through_us} bytes went through snix-mount");
    // every file of every path: once to fill the cache, once from it
    for round in 0..2 {
        for p in &paths {
            let orig = corpus::entry(basename(p).split_once('-').unwrap().1);
            let mounted = mount.dir.join(basename(p));
            let out = Command::new("diff").args(["-r", "--no-dereference"]).arg(orig).arg(mounted).output().unwrap();
            assert!(out.status.success(), "round {round}, diff -r {p}: {}", String::from_utf8_lossy(&out.stdout));
        }
        std::thread::sleep(Duration::from_secs(2));
        drop_caches();
    }
    // and as an overlayfs lower layer over passthrough (stack depth 2)
    let overlay = Overlay::mount(&mount.dir, tmp.path());
    drop_caches();
    let through_overlay = std::fs::read(overlay.0.join(big_name));
    drop(overlay);
    assert!(through_overlay.unwrap() == want, "big-file through the overlay differs");
    assert!(!log_of(&mount).contains("refused a cached copy"), "{}", log_of(&mount));
}

#[test]
#[ignore = "needs root and /dev/fuse"]
fn a_corrupted_copy_is_fetched_again_and_a_restart_keeps_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let daemon = StoreDaemon::start(&tmp.path().join("state"));
    let src = tmp.path().join("two");
    std::fs::create_dir(&src).unwrap();
    let (a, b) = (corpus::pseudo_random(7, 3 << 20), corpus::pseudo_random(8, 5 << 20));
    std::fs::write(src.join("a"), &a).unwrap();
    std::fs::write(src.join("b"), &b).unwrap();
    let path = daemon.snix_store(&["import", path_str(&src)]).trim().to_string();
    let cache = tmp.path().join("cache");
    let cache_arg = path_str(&cache).to_string();
    let mnt = tmp.path().join("mnt");
    let mount = Mount::start(&daemon, &mnt, &["--cache-dir", &cache_arg, "--passthrough", "auto"]);
    let (fa, fb) = (mount.dir.join(basename(&path)).join("a"), mount.dir.join(basename(&path)).join("b"));
    assert!(std::fs::read(&fa).unwrap() == a && std::fs::read(&fb).unwrap() == b);
    let (copy_a, copy_b) = (cached_copy(&cache, &a), cached_copy(&cache, &b));
    let ino_b = std::fs::metadata(&copy_b).unwrap().ino();
    assert!(mount.stop().success());

    // a byte of a's copy flipped, same size: never served, fetched again
    let mut bad = std::fs::read(&copy_a).unwrap();
    bad[1 << 20] ^= 0xff;
    std::fs::write(&copy_a, &bad).unwrap();
    let mount = Mount::start(&daemon, &mnt, &["--cache-dir", &cache_arg, "--passthrough", "auto"]);
    let (read_a, _) = cold_read(&mount, &fa);
    assert!(read_a == a, "a corrupted cached copy was served");
    assert!(log_of(&mount).contains("does not hash to its name"), "{}", log_of(&mount));
    cached_copy(&cache, &a);
    let t = Instant::now();
    while std::fs::read(&copy_a).unwrap() != a {
        assert!(t.elapsed() < Duration::from_secs(60), "a's copy was not fetched again");
        std::thread::sleep(Duration::from_millis(50));
    }
    // b's copy survived the restart: checked once (hashed here), then the
    // kernel's to read
    assert!(std::fs::read(&fb).unwrap() == b);
    assert_eq!(std::fs::metadata(&copy_b).unwrap().ino(), ino_b, "b's copy was made again");
    let (read_b, through_us) = cold_read(&mount, &fb);
    assert!(read_b == b);
    assert!(through_us < b.len() as u64 / 10, "{through_us} bytes of b went through snix-mount after the restart");
}

#[test]
#[ignore = "needs root and /dev/fuse"]
fn the_cache_stays_within_its_bound_and_pread_serves_without_passthrough() {
    let tmp = tempfile::tempdir().unwrap();
    let daemon = StoreDaemon::start(&tmp.path().join("state"));
    let src = tmp.path().join("many");
    std::fs::create_dir(&src).unwrap();
    let files: Vec<Vec<u8>> = (0..12).map(|i| corpus::pseudo_random(100 + i, 1 << 20)).collect();
    for (i, f) in files.iter().enumerate() {
        std::fs::write(src.join(format!("f{i:02}")), f).unwrap();
    }
    let path = daemon.snix_store(&["import", path_str(&src)]).trim().to_string();
    let cache = tmp.path().join("cache");
    let cache_arg = path_str(&cache).to_string();
    // 4 MiB for 12 MiB read 3 times; and pread instead of passthrough
    let args = ["--cache-dir", &cache_arg, "--cache-size", "4M", "--passthrough", "never"];
    let mount = Mount::start(&daemon, &tmp.path().join("mnt"), &args);
    assert!(log_of(&mount).contains("passthrough off: --passthrough never"), "{}", log_of(&mount));
    let used = || -> u64 {
        std::fs::read_dir(&cache)
            .unwrap()
            .filter_map(|e| e.unwrap().metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum()
    };
    for round in 0..3 {
        for (i, want) in files.iter().enumerate() {
            let f = mount.dir.join(basename(&path)).join(format!("f{i:02}"));
            let (got, _) = cold_read(&mount, &f);
            assert!(got == *want, "round {round}: f{i:02} differs");
            assert!(used() <= 4 << 20, "round {round}: the cache holds {} bytes", used());
        }
    }
    // reads of a cached copy are its preads here (passthrough off)
    let f = |i: usize| mount.dir.join(basename(&path)).join(format!("f{i:02}"));
    cached_copy(&cache, &files[11]);
    let (got, through_us) = cold_read(&mount, &f(11));
    assert!(got == files[11]);
    assert!(through_us >= files[11].len() as u64, "pread of the copy: only {through_us} bytes read");
    // a copy held open stays while the others come and go
    let (got, _) = cold_read(&mount, &f(0));
    assert!(got == files[0]);
    let copy0 = cached_copy(&cache, &files[0]);
    let held = std::fs::File::open(f(0)).unwrap();
    for (i, want) in files.iter().enumerate().skip(1) {
        assert!(std::fs::read(f(i)).unwrap() == *want);
        cached_copy(&cache, want);
        assert!(copy0.exists(), "the open file's copy was evicted (after f{i:02})");
        assert!(used() <= 4 << 20, "the cache holds {} bytes", used());
    }
    drop(held);
}

#[test]
#[ignore = "needs root and /dev/fuse"]
fn reads_while_a_copy_is_made_are_right_near_and_far_from_it() {
    use std::os::unix::fs::FileExt;
    let tmp = tempfile::tempdir().unwrap();
    let daemon = StoreDaemon::start(&tmp.path().join("state"));
    let want = corpus::pseudo_random(7, 64 << 20);
    let path = import_one_file(&daemon, tmp.path(), &want);
    let cache = tmp.path().join("cache");
    let cache_arg = path_str(&cache).to_string();
    let mount = Mount::start(&daemon, &tmp.path().join("mnt"), &["--cache-dir", &cache_arg]);
    let file = mount.dir.join(basename(&path)).join("file");
    drop_caches();
    // from the end backwards: far past the copy's progress (fetched on their
    // own), then nearer to it, then what it has written
    let f = std::fs::File::open(&file).unwrap();
    let mut buf = vec![0u8; 4096];
    for i in (0..64u64).rev() {
        let off = i * (1 << 20) + 12345;
        f.read_exact_at(&mut buf, off).unwrap();
        assert!(buf[..] == want[off as usize..off as usize + 4096], "4 KiB at {off} differ");
    }
    // a second reader of the same file, from the start, while the first is open
    let second = std::fs::read(&file).unwrap();
    assert!(second == want, "a sequential read while the copy is made differs");
    drop(f);
    let copy = cached_copy(&cache, &want);
    assert!(std::fs::read(copy).unwrap() == want, "the cached copy differs");
    assert!(!log_of(&mount).contains("caching a blob failed"), "{}", log_of(&mount));
}

#[test]
#[ignore = "needs root and /dev/fuse"]
fn random_reads_of_a_file_never_read_fetch_only_the_pieces_they_touch() {
    use std::os::unix::fs::FileExt;
    let tmp = tempfile::tempdir().unwrap();
    let daemon = StoreDaemon::start(&tmp.path().join("state"));
    let want = corpus::pseudo_random(11, 64 << 20);
    let path = import_one_file(&daemon, tmp.path(), &want);
    // no content cache: every read goes to the castore
    let mount = Mount::start(&daemon, &tmp.path().join("mnt"), &["--cache-size", "0"]);
    let f = std::fs::File::open(mount.dir.join(basename(&path)).join("file")).unwrap();
    drop_caches();
    let sent_before = bytes_written_by(daemon.pid());
    let mut buf = vec![0u8; 4096];
    let reads = 50u64;
    for i in 0..reads {
        // one read in every 1.25 MiB (past the largest chunk): each in a chunk of its own
        let off = i * (5 << 18) + 70_000;
        f.read_exact_at(&mut buf, off).unwrap();
        assert!(buf[..] == want[off as usize..off as usize + 4096], "4 KiB at {off} differ");
    }
    let sent = bytes_written_by(daemon.pid()) - sent_before;
    // whole chunks (64 KiB to 1 MiB, 256 KiB on average, and a read lands
    // in a large one more often) would be ~400 KiB a read
    println!("the daemon sent {sent} bytes for {reads} random 4 KiB reads");
    assert!(sent < reads * (160 << 10), "the daemon sent {sent} bytes for {reads} random 4 KiB reads");
}

//! The test corpus: the tricky shapes a NAR implementation must get right.
//!
//! Each top-level entry of the corpus directory is a valid store path name,
//! so every entry can also be given to `nix-store --add` on its own.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub const BIG_FILE_SIZE: usize = 100 * 1024 * 1024;
pub const SMALL_FILES: usize = 10_000;
pub const DEPTH: usize = 120;

/// Deterministic pseudo-random bytes (xorshift64*), so big files neither
/// compress nor deduplicate trivially.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
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

fn write(path: &Path, data: &[u8], mode: u32) {
    fs::write(path, data).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Creates the corpus under `root` and returns the paths of its entries.
pub fn generate(root: &Path) -> Vec<PathBuf> {
    fs::create_dir_all(root).unwrap();
    let mut entries = Vec::new();
    let mut add = |name: &str| {
        let p = root.join(name);
        entries.push(p.clone());
        p
    };

    write(&add("empty-file"), b"", 0o644);
    fs::create_dir(add("empty-dir")).unwrap();
    write(&add("executable"), b"#!/bin/sh\necho hi\n", 0o755);
    write(&add("seven-bytes"), b"1234567", 0o644);

    let links = add("symlinks");
    fs::create_dir(&links).unwrap();
    write(&links.join("target"), b"t", 0o644);
    symlink("target", links.join("relative")).unwrap();
    symlink("../symlinks/./target", links.join("relative-dotted")).unwrap();
    symlink("/etc/hostname", links.join("absolute")).unwrap();
    symlink("does/not/exist", links.join("dangling")).unwrap();
    symlink("x".repeat(1000), links.join("long-target")).unwrap();
    symlink("sub", links.join("to-dir")).unwrap();
    fs::create_dir(links.join("sub")).unwrap();

    let deep = add("deep");
    let mut d = deep.clone();
    for i in 0..DEPTH {
        d.push(format!("d{i}"));
    }
    fs::create_dir_all(&d).unwrap();
    write(&d.join("leaf"), b"bottom", 0o644);

    // every byte a name may hold (all but NUL and '/'), including non-UTF-8,
    // alone and inside a longer name; also names that sort near each other
    let names = add("names");
    fs::create_dir(&names).unwrap();
    for b in 1..=255u8 {
        if b == b'/' {
            continue;
        }
        if b != b'.' {
            write(&names.join(std::ffi::OsStr::from_bytes(&[b])), &[b], 0o644);
        }
        write(&names.join(std::ffi::OsStr::from_bytes(&[b'n', b, b'n'])), b"", 0o644);
    }
    for n in ["a", "a.b", "a-b", "aa", "A", "B", "b", "\u{e9}", "\u{1f600}"] {
        let p = names.join(format!("sort-{n}"));
        if !p.exists() {
            write(&p, n.as_bytes(), 0o644);
        }
    }
    write(&names.join(std::ffi::OsStr::from_bytes(&[b'x'; 255])), b"255", 0o644);

    let mixed = add("mixed-tree");
    fs::create_dir_all(mixed.join("bin")).unwrap();
    fs::create_dir_all(mixed.join("share/doc/empty")).unwrap();
    write(&mixed.join("bin/tool"), &pseudo_random(7, 70_001), 0o755);
    write(&mixed.join("share/doc/README"), b"docs\n", 0o444);
    symlink("../bin/tool", mixed.join("share/tool-link")).unwrap();

    write(&add("big-file"), &pseudo_random(42, BIG_FILE_SIZE), 0o644);

    let many = add("many-files");
    fs::create_dir(&many).unwrap();
    for i in 0..SMALL_FILES {
        let sub = many.join(format!("{:02}", i % 100));
        if i < 100 {
            fs::create_dir(&sub).unwrap();
        }
        write(&sub.join(format!("f{i}")), format!("file {i}\n").as_bytes(), if i % 7 == 0 { 0o755 } else { 0o644 });
    }
    entries
}

/// The corpus, generated once per test process under the cargo target
/// directory (so it does not pile up in /tmp; statics are never dropped).
pub fn shared() -> &'static Vec<PathBuf> {
    static CORPUS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let root = scratch_dir("corpus");
        generate(&root)
    })
}

/// The shared corpus entry called `name` (e.g. "big-file").
pub fn entry(name: &str) -> &'static Path {
    shared()
        .iter()
        .find(|p| p.file_name().is_some_and(|f| f == name))
        .unwrap_or_else(|| panic!("no corpus entry {name}"))
}

/// A fresh, empty directory `target/<profile>/scratch/<name>-<pid>`.
pub fn scratch_dir(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test binary>
    let profile_dir = exe.parent().and_then(Path::parent).expect("test binary lives in target/<profile>/deps");
    let dir = profile_dir.join("scratch").join(format!("{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    // earlier runs' leftovers of the same name
    if let Ok(rd) = fs::read_dir(profile_dir.join("scratch")) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(&format!("{name}-")) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
    fs::create_dir_all(&dir).unwrap();
    dir
}

//! Independent upgrades between releases: the previous release's binaries
//! (built by `scripts/previous-release.sh`, passed in
//! `SNIX_PREVIOUS_RELEASE_BIN`) and the current ones in one stack, run as the
//! NixOS modules' units (`integration_tests::units`). All four units start
//! on the previous release; castore, store, mount and nix-daemon are then
//! upgraded one unit at a time, and downgraded in reverse. After every step
//! Nix 2.8 copies one more path in, and every path copied so far still
//! verifies through the mount.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use integration_tests::judge::{build_closure, nix, nix_cmd, nix_stdout, path_str, require_nix};
use integration_tests::units::Units;

/// The previous release's binaries; the test fails without them.
fn previous_release() -> PathBuf {
    let dir = std::env::var_os("SNIX_PREVIOUS_RELEASE_BIN").expect(
        "this test needs the previous release: SNIX_PREVIOUS_RELEASE_BIN=$(bash scripts/previous-release.sh) (scripts/test.sh sets it)",
    );
    PathBuf::from(dir)
}

/// Nix 2.8 adds a new path (named after `step`) and copies it in through
/// the nix-daemon unit's socket; then every path copied so far must verify
/// through the mount and keep the narHash Nix recorded.
fn check(tmp: &Path, copied: &mut Vec<String>, step: &str) {
    let dir = tmp.join("steps").join(step);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("step"), format!("{step} {dir:?}\n")).unwrap();
    let path = nix_stdout(&["nix-store", "--add", path_str(&dir)]);
    let url = format!("unix://{}", tmp.join("run/snix/nix-daemon.sock").display());
    nix(&["nix", "copy", "--no-check-sigs", "--to", &url, &path]);
    copied.push(path);
    let real = format!("{url}?real={}", tmp.join("mnt").display());
    for p in copied.iter() {
        let out = nix_cmd("nix-store").args(["--store", &real, "--verify-path", p]).output().unwrap();
        assert!(out.status.success(), "after {step}: {p}: {}", String::from_utf8_lossy(&out.stderr));
        let ours = nix_stdout(&["nix-store", "--store", &url, "--query", "--hash", p]);
        assert_eq!(ours, nix_stdout(&["nix-store", "--query", "--hash", p]), "after {step}: {p}");
    }
}

#[test]
#[ignore = "needs nix, root, /dev/fuse and the previous release"]
fn a_rolling_upgrade_and_downgrade_keeps_every_path() {
    require_nix();
    let previous = previous_release();
    let old = previous.parent().unwrap().to_path_buf();
    for b in ["snix-castore", "snix-store", "snix-mount", "nix-daemon"] {
        assert!(old.join("bin").join(b).is_file(), "{b} missing in {}", previous.display());
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let new = Units::this_build(t);
    let (top, _) = build_closure(t);

    // the units as the modules make them, all on the previous release
    let units = Units::evaluate(t, &old, "services.snix.nix-daemon.requireSigs = false;");
    let mut castore = units.start("snix-castore");
    let mut store = units.start("snix-store");
    let mut mount = units.start("snix-mount");
    let mut daemon = units.start("snix-nix-daemon");
    nix(&["nix", "copy", "--to", &format!("unix://{}", daemon.socket().display()), &top]);
    let mut copied: Vec<String> = nix_stdout(&["nix-store", "-qR", &top]).lines().map(str::to_string).collect();
    check(t, &mut copied, "all-previous");

    // upgraded one unit at a time, in the units' order, then back
    for (unit, step) in [
        (&mut castore, "castore-upgraded"),
        (&mut store, "store-upgraded"),
        (&mut mount, "mount-upgraded"),
        (&mut daemon, "all-current"),
    ] {
        unit.upgrade(&old, &new);
        check(t, &mut copied, step);
    }
    for (unit, step) in [
        (&mut daemon, "nix-daemon-downgraded"),
        (&mut mount, "mount-downgraded"),
        (&mut store, "store-downgraded"),
        (&mut castore, "all-previous-again"),
    ] {
        unit.upgrade(&new, &old);
        check(t, &mut copied, step);
    }
    drop((daemon, mount, store, castore));
}

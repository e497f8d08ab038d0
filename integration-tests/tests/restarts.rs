//! The daemons as the NixOS modules' systemd units run them (evaluated from
//! `nixos-modules/`, started by `integration_tests::units` with socket
//! activation and sd_notify): each killed with SIGKILL and restarted in turn
//! while Nix keeps using the stack — queries recover, nothing committed is
//! lost, an interrupted copy completes on retry.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use integration_tests::corpus;
use integration_tests::judge::{build_closure, nix, nix_cmd, nix_stdout, path_str, require_nix};
use integration_tests::units::Units;

#[test]
#[ignore = "needs nix, root and /dev/fuse"]
fn each_daemon_killed_and_restarted_while_nix_uses_the_stack() {
    require_nix();
    let tmp = tempfile::tempdir().unwrap();
    let (top, _) = build_closure(tmp.path());
    let units = Units::evaluate(tmp.path(), &Units::this_build(tmp.path()), "");
    let mut castore = units.start("snix-castore");
    let mut store = units.start("snix-store");
    let mut mount = units.start("snix-mount");
    let mut daemon = units.start("snix-nix-daemon");
    let mnt = tmp.path().join("mnt");
    let url = format!("unix://{}", daemon.socket().display());
    let real = format!("{url}?real={}", mnt.display());
    nix(&["nix", "copy", "--no-check-sigs", "--to", &url, &top]);
    let closure = nix_stdout(&["nix-store", "-qR", &top]);

    let check = |what: &str| {
        for p in closure.lines() {
            let out = nix_cmd("nix-store").args(["--store", &real, "--verify-path", p]).output().unwrap();
            assert!(out.status.success(), "after {what}: {p}: {}", String::from_utf8_lossy(&out.stderr));
        }
    };
    check("the first copy");

    // a big path whose copy is interrupted by killing the store daemon
    let big = nix_stdout(&["nix-store", "--add", path_str(corpus::entry("big-file"))]);
    let big = big.trim().to_string();
    // its failure is expected: keep its error out of the test output
    let mut copy = nix_cmd("nix")
        .args(["copy", "--no-check-sigs", "--to", &url, &big])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    store.kill9_and_restart();
    let _ = copy.wait();
    check("killing the store daemon mid-copy");
    nix(&["nix", "copy", "--no-check-sigs", "--to", &url, &big]);

    castore.kill9_and_restart();
    check("restarting the castore daemon");
    daemon.kill9_and_restart();
    check("restarting the nix-daemon");
    store.kill9_and_restart();
    check("restarting the store daemon");
    // a killed mount leaves a stale mount point: the unit's preStart clears it
    mount.kill9_and_restart();
    check("restarting the mount");
    // and `systemctl restart` of each, in the units' order
    for unit in [&mut castore, &mut store, &mut mount, &mut daemon] {
        unit.restart();
        check(&format!("systemctl restart {}", unit.name));
    }

    // everything committed is still there and complete
    nix(&["nix-store", "--store", &real, "--verify-path", &big]);
    let theirs = Command::new("nix-store").arg("--dump").arg(&big).output().unwrap().stdout;
    let ours = Command::new("nix-store").arg("--dump").arg(mnt.join(big.rsplit('/').next().unwrap())).output().unwrap();
    assert!(ours.stdout == theirs, "the big path's NAR through the mount differs");
    drop((daemon, mount, store, castore));
}

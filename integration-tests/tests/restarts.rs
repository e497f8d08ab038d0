//! The daemons as separate processes, as the systemd units run them
//! (castore ← store ← mount, nix-daemon), each killed with SIGKILL and
//! restarted in turn while Nix keeps using the stack: queries recover,
//! nothing committed is lost, an interrupted copy completes on retry.

use std::process::Command;

use integration_tests::corpus;
use integration_tests::judge::{build_closure, nix, nix_available, nix_cmd, nix_stdout, path_str};
use integration_tests::stack::{CastoreDaemon, Mount, NixDaemon, StoreDaemon};

#[test]
fn each_daemon_killed_and_restarted_while_nix_uses_the_stack() {
    let test = "each_daemon_killed_and_restarted_while_nix_uses_the_stack";
    if !nix_available(test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (top, _) = build_closure(tmp.path());
    let mut castore = CastoreDaemon::start_castore(&tmp.path().join("castore"));
    let mut store = StoreDaemon::start_with_castore(&tmp.path().join("store"), &castore);
    let mut daemon = NixDaemon::start(&store, &tmp.path().join("nix-daemon.sock"), &[]);
    let mnt = tmp.path().join("mnt");
    let mut mount = Mount::start(&store, &mnt, &[]);
    let url = daemon.url(None);
    nix(&["nix", "copy", "--no-check-sigs", "--to", &url, &top]);
    let closure = nix_stdout(&["nix-store", "-qR", &top]);

    let check = |mount: &Mount, what: &str| {
        let real = format!("{url}?real={}", mount.dir.display());
        for p in closure.lines() {
            let out = nix_cmd("nix-store").args(["--store", &real, "--verify-path", p]).output().unwrap();
            assert!(out.status.success(), "after {what}: {p}: {}", String::from_utf8_lossy(&out.stderr));
        }
    };
    check(&mount, "the first copy");

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
    check(&mount, "killing the store daemon mid-copy");
    nix(&["nix", "copy", "--no-check-sigs", "--to", &url, &big]);

    castore.kill9_and_restart();
    check(&mount, "restarting the castore daemon");
    daemon.kill9_and_restart();
    check(&mount, "restarting the nix-daemon");
    store.kill9_and_restart();
    check(&mount, "restarting the store daemon");
    // a killed mount leaves a stale mount point: clear it and mount again
    let dir = mount.kill9();
    let st = Command::new("umount").arg("-l").arg(&dir).status().unwrap();
    assert!(st.success());
    mount = Mount::start(&store, &mnt, &[]);
    check(&mount, "restarting the mount");

    // everything committed is still there and complete
    let real = format!("{url}?real={}", mount.dir.display());
    nix(&["nix-store", "--store", &real, "--verify-path", &big]);
    let theirs = Command::new("nix-store").arg("--dump").arg(&big).output().unwrap().stdout;
    let ours =
        Command::new("nix-store").arg("--dump").arg(mount.dir.join(big.rsplit('/').next().unwrap())).output().unwrap();
    assert!(ours.stdout == theirs, "the big path's NAR through the mount differs");
}

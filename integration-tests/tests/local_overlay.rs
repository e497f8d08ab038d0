//! The user's how-to (`local-overlay.md`) end to end, judged by Nix 2.26 in
//! a Debian trixie chroot: our store daemon, snix-mount and nix-daemon as
//! separate processes, filled by Debian's Nix 2.8 over the worker protocol,
//! used as the lower store of a `local-overlay://` store with check-mount on.

use integration_tests::judge::{build_closure, nix, nix_available, nix_stdout, sorted_lines};
use integration_tests::stack::{Mount, NixDaemon, StoreDaemon};
use integration_tests::trixie;

#[test]
fn the_how_to_works_with_nix_2_26_and_check_mount_on() {
    let test = "the_how_to_works_with_nix_2_26_and_check_mount_on";
    if !nix_available(test) {
        return;
    }
    let Some(root) = trixie::chroot(test) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (top, dep) = build_closure(tmp.path());
    let (host, inside) = trixie::scratch(root, "overlay");

    // the seed's daemons, on the host
    let store = StoreDaemon::start(&tmp.path().join("state"));
    let daemon = NixDaemon::start(&store, &host.join("nix-daemon.sock"), &[]);
    nix(&["nix", "copy", "--no-check-sigs", "--to", &daemon.url(None), &top]);
    let mount = Mount::start(&store, &host.join("mnt"), &["--allow-other"]);
    assert!(mount.dir.starts_with(root));

    let i = inside.display();
    let lower = format!("unix://{i}/nix-daemon.sock?real={i}/mnt");
    let encoded: String = lower
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let store_url = format!("local-overlay://?root={i}/merged&lower-store={encoded}&upper-layer={i}/upper/nix/store");
    std::fs::create_dir_all(host.join("new")).unwrap();
    std::fs::write(host.join("new/file"), b"added through the overlay\n").unwrap();
    let script = format!(
        r#"mkdir -p {i}/upper/nix/store {i}/work {i}/merged/nix/store
mount -t overlay overlay -o lowerdir={i}/mnt,upperdir={i}/upper/nix/store,workdir={i}/work {i}/merged/nix/store
S='{store_url}'
nix-store -qR {top} --store "$S"; echo ===
nix path-info --json --recursive {top} --store "$S"; echo ===
nix store cat --store "$S" {dep}/data; echo; echo ===
nix-store --verify --check-contents --store "$S" 2>&1; echo ===
nix-store --add {i}/new --store "$S""#
    );
    let out = trixie::ok(root, &script);
    eprintln!("{out}");
    let parts: Vec<&str> = out.split("===\n").collect();
    assert_eq!(parts.len(), 5, "{out}");
    assert_eq!(sorted_lines(parts[0]), sorted_lines(&nix_stdout(&["nix-store", "-qR", &top])));
    // path infos equal what Nix 2.8 recorded
    let ours: serde_json::Value = serde_json::from_str(parts[1]).unwrap();
    let theirs: serde_json::Value =
        serde_json::from_str(&nix_stdout(&["nix", "path-info", "--json", "--recursive", &top])).unwrap();
    for t in theirs.as_array().unwrap() {
        let p = t["path"].as_str().unwrap();
        let o = &ours[p];
        for k in ["narHash", "narSize", "references"] {
            assert_eq!(o[k], t[k], "{p} {k}");
        }
    }
    // file bytes through overlay and FUSE
    assert_eq!(parts[2].trim(), std::fs::read_to_string(format!("{dep}/data")).unwrap().trim());
    assert!(!parts[3].contains("error"), "verify --check-contents: {}", parts[3]);
    // a new path lands in the upper layer only
    let added = parts[4].trim();
    let base = added.rsplit('/').next().unwrap();
    assert!(host.join("upper/nix/store").join(base).join("file").exists(), "{added} not in the upper layer");
    let in_ours =
        store.client(&integration_tests::stack::bin("snix-store")).args(["path-info", added]).output().unwrap();
    assert!(!in_ours.status.success(), "{added} must not reach the lower store");
    drop(mount);
    let _ = std::fs::remove_dir_all(&host);
}

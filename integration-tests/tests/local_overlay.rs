//! The user's how-to (`local-overlay.md`) end to end, judged by Nix 2.26 and 2.34 in
//! Debian trixie and sid chroots: our store daemon, snix-mount and nix-daemon as
//! separate processes, filled by Debian's Nix 2.8 over the worker protocol,
//! used as the lower store of a `local-overlay://` store with check-mount on
//! — its URL and overlay options as the NixOS modules make them.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use integration_tests::chroots::{self, Suite};
use integration_tests::judge::{build_closure, nix, nix_stdout, require_nix, sorted_lines};
use integration_tests::stack::{Mount, NixDaemon, StoreDaemon};

/// What both scenarios start from: the chroot, a closure built by Nix 2.8
/// (`top` depends on `dep`) and a scratch directory inside the chroot.
struct Scenario {
    root: &'static Path,
    /// holds the closure's sources; lives as long as the test
    tmp: tempfile::TempDir,
    top: String,
    dep: String,
    host: PathBuf,
    inside: PathBuf,
}

fn scenario(scratch: &str) -> Scenario {
    require_nix();
    let root = chroots::chroot(Suite::Trixie);
    let tmp = tempfile::tempdir().unwrap();
    let (top, dep) = build_closure(tmp.path());
    let (host, inside) = chroots::scratch(root, scratch);
    Scenario { root, tmp, top, dep, host, inside }
}

/// The first four answers of Nix 2.26 through the overlay — `-qR`,
/// `path-info --json --recursive`, `store cat DEP/data`, `--verify
/// --check-contents` — against what Nix 2.8 recorded for the same closure.
fn assert_same_as_nix_2_8(answers: &[&str], top: &str, dep: &str) {
    assert_eq!(sorted_lines(answers[0]), sorted_lines(&nix_stdout(&["nix-store", "-qR", top])));
    let ours: serde_json::Value = serde_json::from_str(answers[1]).unwrap();
    let theirs: serde_json::Value =
        serde_json::from_str(&nix_stdout(&["nix", "path-info", "--json", "--recursive", top])).unwrap();
    for t in theirs.as_array().unwrap() {
        let p = t["path"].as_str().unwrap();
        for k in ["narHash", "narSize", "references"] {
            assert_eq!(ours[p][k], t[k], "{p} {k}");
        }
    }
    // file bytes through overlay and FUSE
    assert_eq!(answers[2].trim(), std::fs::read_to_string(format!("{dep}/data")).unwrap().trim());
    assert!(!answers[3].contains("error"), "verify --check-contents: {}", answers[3]);
}

#[test]
#[ignore = "needs nix, root and /dev/fuse"]
fn the_how_to_works_with_nix_2_26_and_check_mount_on() {
    let Scenario { root, tmp, top, dep, host, inside } = scenario("overlay");

    // the seed's daemons, on the host
    let store = StoreDaemon::start(&tmp.path().join("state"));
    let daemon = NixDaemon::start(&store, &host.join("nix-daemon.sock"), &[]);
    nix(&["nix", "copy", "--no-check-sigs", "--to", &daemon.url(None), &top]);
    let mount = Mount::start(&store, &host.join("mnt"), &["--allow-other"]);
    assert!(mount.dir.starts_with(root));

    // the store URL and the overlay's options as the NixOS modules make them
    let i = inside.display();
    let modules = integration_tests::units::evaluate_modules(&format!(
        r#"{{ pkgs, ... }}: {{ services.snix = {{
            package = pkgs.snix;
            mount = {{ enable = true; mountPoint = "{i}/mnt"; }};
            nix-daemon = {{ enable = true; socket = "{i}/nix-daemon.sock"; }};
            localOverlay = {{ enable = true; root = "{i}/merged"; upperLayer = "{i}/upper/nix/store"; workDir = "{i}/work"; }};
          }}; }}"#
    ));
    let store_url = modules["nixSettings"]["store"].as_str().unwrap().to_string();
    let features = modules["nixSettings"]["experimental-features"].as_array().unwrap();
    assert!(features.iter().any(|f| f == "local-overlay-store"), "{features:?}");
    let overlay = &modules["fileSystems"][format!("{i}/merged/nix/store")];
    assert_eq!(overlay["fsType"], "overlay");
    let options: Vec<&str> = overlay["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap())
        .filter(|o| ["lowerdir=", "upperdir=", "workdir="].iter().any(|p| o.starts_with(p)))
        .collect();
    assert_eq!(options.len(), 3, "{overlay}");
    let options = options.join(",");
    std::fs::create_dir_all(host.join("new")).unwrap();
    std::fs::write(host.join("new/file"), b"added through the overlay\n").unwrap();
    let script = format!(
        r#"mkdir -p {i}/upper/nix/store {i}/work {i}/merged/nix/store
mount -t overlay overlay -o {options} {i}/merged/nix/store
S='{store_url}'
nix-store -qR {top} --store "$S"; echo ===
nix path-info --json --recursive {top} --store "$S"; echo ===
nix store cat --store "$S" {dep}/data; echo; echo ===
nix-store --verify --check-contents --store "$S" 2>&1; echo ===
nix-store --add {i}/new --store "$S""#
    );
    let out = chroots::ok(root, &script);
    eprintln!("{out}");
    let parts: Vec<&str> = out.split("===\n").collect();
    assert_eq!(parts.len(), 5, "{out}");
    assert_same_as_nix_2_8(&parts, &top, &dep);
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

/// The how-to's own lines, as written, inside the trixie chroot: its
/// default paths (`/var/lib/snix`, `/path/to/mount`, `/tmp/snix-daemon.sock`,
/// `/opt/nix`), its nix.conf line (check-mount off, no `real=`), Nix 2.26's
/// own daemon with that store and a client with `store = daemon`. Two
/// things differ, both outside our binaries:
/// - `$(nix-build -A …)` stands for the build, done by cargo here (no
///   nixpkgs on this machine): a shell function prints where it put them;
/// - the how-to's overlay line cannot work as written (Linux refuses an
///   upperdir without a workdir: "overlayfs: missing 'workdir'"; and at
///   `/nix` the lower paths would show up as `/nix/<hash>-…`), so the
///   overlay is mounted on `/nix/store`, upper `/opt/nix/store` — the
///   layout the how-to's `store =` line describes.
#[test]
#[ignore = "needs nix, root and /dev/fuse"]
fn the_how_to_lines_run_as_written() {
    let Scenario { root, tmp: _tmp, top, dep, host, inside } = scenario("verbatim");

    // `snix-store daemon` inside keeps its data in /var/lib/snix: fill it
    // from the host with Nix 2.8 through our daemons first.
    let var_lib_snix = root.join("var/lib/snix");
    let _ = std::fs::remove_dir_all(&var_lib_snix);
    {
        let store = StoreDaemon::start(&var_lib_snix);
        let daemon = NixDaemon::start(&store, &host.join("fill.sock"), &[]);
        nix(&["nix", "copy", "--no-check-sigs", "--to", &daemon.url(None), &top]);
    }
    std::fs::create_dir_all(host.join("new")).unwrap();
    std::fs::write(host.join("new/file"), b"added through Nix's daemon\n").unwrap();
    let bins = integration_tests::stack::bin("snix-store").parent().unwrap().to_path_buf();

    // this run's own /nix, /run and /path, on the host side of its namespace
    let pre = format!(
        r#"mkdir -p "$R/snix-result/bin" "$R/nix" "$R/path" {h}/nix/store {h}/nix/var/nix {h}/path
mount --bind {bins} "$R/snix-result/bin"
mount --bind {h}/nix "$R/nix"
mount --bind {h}/path "$R/path"
mount -t tmpfs tmpfs "$R/run""#,
        h = host.display(),
        bins = bins.display(),
    );
    let i = inside.display();
    let script = format!(
        r#"wait_for() {{ n=0; until eval "$1"; do n=$((n+1)); [ $n -lt 300 ] || {{ echo "timed out: $1" >&2; cat {i}/*.log >&2; exit 1; }}; sleep 0.1; done; }}
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
nix-build() {{ echo /snix-result; }}
mkdir -p /var/lib/snix /path/to/mount /opt/nix

$(nix-build -A snix.snix-store)/bin/snix-store daemon --help | grep -q /var/lib/snix
$(nix-build -A snix.snix-store)/bin/snix-store daemon 2>{i}/store.log &
wait_for '[ -S /run/snix/snix-store.sock ]'
$(nix-build -A snix.snix-store)/bin/snix-store mount /path/to/mount 2>{i}/mount.log &
wait_for 'mountpoint -q /path/to/mount'
$(nix-build -A snix.nix-daemon)/bin/nix-daemon -l /tmp/snix-daemon.sock \
    --unix-listen-unlink 2>{i}/nix-daemon.log &
wait_for '[ -S /tmp/snix-daemon.sock ]'
unset -f nix-build

mount --bind /nix /opt/nix
mkdir -p /opt/nix/overlay-work
mount -t overlay overlay -o lowerdir=/path/to/mount -o upperdir=/opt/nix/store -o workdir=/opt/nix/overlay-work /nix/store
echo 'store = local-overlay://?state=/opt/nix/var/nix&upper-layer=/opt/nix/store&check-mount=false&lower-store=unix%3A%2F%2F%2Ftmp%2Fsnix-daemon.sock' >>{i}/nix.conf
mount --bind {i}/nix.conf /etc/nix/nix.conf
nix-daemon 2>{i}/nix-own-daemon.log &
wait_for '[ -S /nix/var/nix/daemon-socket/socket ]'

export NIX_CONFIG='store = daemon'
nix-store -qR {top}; echo ===
nix path-info --json --recursive {top}; echo ===
nix store cat {dep}/data; echo; echo ===
nix-store --verify --check-contents 2>&1; echo ===
added=$(nix-store --add {i}/new); echo "$added"; echo ===
built=$(nix-build --no-out-link -E 'derivation {{ name = "uses-lower"; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" "read x < ${{builtins.storePath "{dep}"}}/data; echo \"built from $x\" > $out" ]; }}')
cat "$built"; echo ===
for p in "$added" "$built"; do
  [ -e "/opt/nix/store/${{p#/nix/store/}}" ] && echo "$p upper"
  nix path-info --store unix:///tmp/snix-daemon.sock "$p" >/dev/null 2>&1 && echo "$p in lower" || true
done
"#
    );
    // the chroot's nix.conf plus the how-to's line, bound over /etc/nix/nix.conf in this run only
    std::fs::copy(root.join("etc/nix/nix.conf"), host.join("nix.conf")).unwrap();
    // bash, not the chroot's sh: the stand-in's name has a dash
    std::fs::write(host.join("how-to.sh"), &script).unwrap();
    let out = chroots::run_prepared(root, &pre, &format!("exec bash -eu {i}/how-to.sh"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    eprintln!("{stdout}");
    let parts: Vec<&str> = stdout.split("===\n").collect();
    assert_eq!(parts.len(), 7, "{stdout}");
    assert_same_as_nix_2_8(&parts, &top, &dep);
    let data = std::fs::read_to_string(format!("{dep}/data")).unwrap();
    let added = parts[4].trim();
    assert!(added.starts_with("/nix/store/") && added.ends_with("-new"), "{added}");
    assert_eq!(parts[5].trim(), format!("built from {}", data.trim()));
    // what Nix's daemon made is in the upper layer, and never reached our store
    let placement = sorted_lines(parts[6]);
    assert_eq!(placement.len(), 2, "{}", parts[6]);
    assert!(placement.iter().all(|l| l.ends_with(" upper")), "{}", parts[6]);
    let _ = std::fs::remove_dir_all(&host);
}

/// Nix 2.34's own nix-daemon serving a local-overlay store whose lower
/// store is ours, through Nix's own local-overlay checks
/// (`local_overlay_checks.sh`: check-post-init, redundant-add, build,
/// verify, delete-refs, bad-uris, add-lower, delete-duplicate, optimise,
/// gc, verify-repair, stale-file-handle), with check-mount on.
#[test]
#[ignore = "needs nix, root and /dev/fuse"]
fn nix_2_34_s_daemon_over_our_lower_store_passes_nix_s_own_checks() {
    run_nix_s_checks(Lower::Ours);
}

/// The control: the same checks with a plain local store (made by Nix 2.8,
/// holding the same closure) as the lower store. If one fails here, the
/// check is wrong, not our stack.
#[test]
#[ignore = "needs nix and root"]
fn the_same_checks_pass_over_a_plain_local_lower_store() {
    run_nix_s_checks(Lower::PlainLocal);
}

enum Lower {
    /// our store daemon, nix-daemon and snix-mount
    Ours,
    /// a local store at /snix/lower
    PlainLocal,
}

fn run_nix_s_checks(lower: Lower) {
    require_nix();
    let root = chroots::chroot(Suite::Sid);
    let tmp = tempfile::tempdir().unwrap();
    let (top, dep) = build_closure(tmp.path());
    let drv = nix_stdout(&["nix-store", "-q", "--deriver", &top]);
    // the lower store, bound at /snix in the chroot
    let stack = tmp.path().join("stack");
    let files = stack.join("files");
    std::fs::create_dir_all(files.join("dep")).unwrap();
    std::fs::copy(tmp.path().join("dep/data"), files.join("dep/data")).unwrap();
    std::fs::write(files.join("lower-only"), format!("only in the lower store {:?}\n", tmp.path())).unwrap();
    std::fs::write(files.join("lower-only-2"), format!("also only in the lower store {:?}\n", tmp.path())).unwrap();
    std::fs::write(files.join("x"), format!("a path the overlay refers to {:?}\n", tmp.path())).unwrap();
    // TOP exported, its file's bytes changed: registered in the lower store
    // again, its contents differ from what the overlay's database recorded
    let export = nix(&["nix-store", "--export", &top]).stdout;
    std::fs::write(files.join("top-changed.export"), changed_contents(&export, b"/data\n", b"/DATA\n")).unwrap();
    // the paths in a file, not the environment: Nix's garbage collector
    // takes what is in a process's environment for a root
    let mut paths = format!("TOP={top}\nDEP={dep}\nDRV={drv}\n");
    let _ours = match lower {
        Lower::Ours => {
            let store = StoreDaemon::start(&tmp.path().join("state"));
            let daemon = NixDaemon::start(&store, &stack.join("nd.sock"), &[]);
            nix(&["nix", "copy", "--no-check-sigs", "--to", &daemon.url(None), &top]);
            nix(&["nix", "copy", "--no-check-sigs", "--derivation", "--to", &daemon.url(None), &drv]);
            let mount = Mount::start(&store, &stack.join("mnt"), &["--allow-other"]);
            Some((store, daemon, mount))
        }
        Lower::PlainLocal => {
            let to = format!("local?root={}", stack.join("lower").display());
            nix(&["nix", "copy", "--no-check-sigs", "--to", &to, &top]);
            nix(&["nix", "copy", "--no-check-sigs", "--derivation", "--to", &to, &drv]);
            paths.push_str(
                "LOWER_URL=/snix/lower\nLOWER_DIR=/snix/lower/nix/store\nLOWER_URL_ENCODED=%2Fsnix%2Flower\n\
                 BAD_LOWER_URL_ENCODED=%2Fopt%2Fbad\n",
            );
            None
        }
    };
    std::fs::write(stack.join("paths.sh"), paths).unwrap();

    // this run's own /nix, /opt and /run
    let fresh = tmp.path().join("fresh");
    let pre = format!(
        r#"mkdir -p "$R/snix" "$R/nix" "$R/opt" {f}/nix {f}/opt
mount --rbind {s} "$R/snix"
mount --bind {f}/nix "$R/nix"
mount --bind {f}/opt "$R/opt"
mount -t tmpfs tmpfs "$R/run""#,
        s = stack.display(),
        f = fresh.display(),
    );
    std::fs::write(stack.join("checks.sh"), include_str!("local_overlay_checks.sh")).unwrap();
    let out = chroots::run_prepared(root, &pre, "exec bash /snix/checks.sh");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{stdout}");
    let daemon_log = std::fs::read_to_string(fresh.join("opt/nix-daemon.log")).unwrap_or_default();
    assert!(
        out.status.success() && stdout.trim_end().ends_with("all checks passed"),
        "stdout: {stdout}\nstderr: {}\nNix's daemon: {daemon_log}",
        String::from_utf8_lossy(&out.stderr)
    );
    let checks = [
        "requisites",
        "referrers",
        "deriver",
        "outputs",
        "path-from-hash-part",
        "redundant-add",
        "build",
        "verify",
        "delete-refs",
        "bad-uris",
        "add-lower",
        "delete-duplicate",
        "optimise",
        "gc",
        "verify-repair",
        "stale-file-handle",
    ];
    for check in checks {
        assert!(stdout.contains(&format!("ok {check}")), "{check} did not run: {stdout}");
    }
}

/// `export` with its one occurrence of `from` (in a file's contents, as
/// the caller knows) replaced by `to`, of the same length: the NAR's framing
/// holds, and an export carries no hash to contradict it.
fn changed_contents(export: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let at: Vec<usize> = export.windows(from.len()).enumerate().filter(|(_, w)| *w == from).map(|(i, _)| i).collect();
    assert_eq!(at.len(), 1, "{:?} occurs {} times in the export", String::from_utf8_lossy(from), at.len());
    let mut changed = export.to_vec();
    changed[at[0]..at[0] + to.len()].copy_from_slice(to);
    changed
}

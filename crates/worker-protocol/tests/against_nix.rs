//! Our nix-daemon judged by real Nix 2.8 clients: copies to and from it,
//! queries, adds, trust — and by a hand-written client sending bad input.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use integration_tests::judge::{build_closure, nix, nix_cmd, nix_stdout, path_str, require_nix, sorted_lines};
use integration_tests::raw_client::{string, u64le, RawClient};
use integration_tests::stack::{Mount, NixDaemon, StoreDaemon};
use serde_json::Value;

fn run(c: &mut Command) -> Output {
    c.stdin(Stdio::null()).output().expect("spawn")
}

fn ok(c: &mut Command) -> String {
    let out = run(c);
    assert!(out.status.success(), "{c:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// `nix path-info --json` reduced to what both stores must agree on.
fn path_infos(json: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(json).unwrap();
    // Nix 2.8 prints a list; Nix ≥2.19 an object keyed by path
    let items: Vec<Value> = match v {
        Value::Array(a) => a,
        Value::Object(o) => o
            .into_iter()
            .map(|(k, mut i)| {
                i["path"] = Value::String(k);
                i
            })
            .collect(),
        other => panic!("unexpected path-info JSON {other}"),
    };
    let mut out: Vec<Value> = items
        .iter()
        .map(|i| {
            let mut m = serde_json::Map::new();
            for k in ["path", "narHash", "narSize", "references", "ca", "deriver"] {
                if let Some(x) = i.get(k).filter(|x| !x.is_null()) {
                    m.insert(k.into(), x.clone());
                }
            }
            Value::Object(m)
        })
        .collect();
    out.sort_by_key(|v| v["path"].to_string());
    out
}

#[test]
#[ignore = "needs nix, root and /dev/fuse"]
fn nix_2_8_copies_queries_and_verifies_through_our_daemon() {
    require_nix();
    let tmp = tempfile::tempdir().unwrap();
    let (top, _dep) = build_closure(tmp.path());
    let store = StoreDaemon::start(&tmp.path().join("state"));
    let daemon = NixDaemon::start(&store, &tmp.path().join("nix-daemon.sock"), &[]);
    let url = daemon.url(None);

    // nix copy --to (ops 19, 31, 44); root is trusted and skips signatures
    nix(&["nix", "copy", "--no-check-sigs", "--to", &url, &top]);
    // path-info and -qR agree with the local store
    let ours = nix_stdout(&["nix", "path-info", "-r", "--json", "--store", &url, &top]);
    let local = nix_stdout(&["nix", "path-info", "-r", "--json", &top]);
    assert_eq!(path_infos(&ours), path_infos(&local));
    let closure = nix_stdout(&["nix-store", "--store", &url, "-qR", &top]);
    assert_eq!(sorted_lines(&closure), sorted_lines(&nix_stdout(&["nix-store", "-qR", &top])));
    // copying again: everything is already there
    nix(&["nix", "copy", "--no-check-sigs", "--to", &url, &top]);

    // Nix checks our FUSE mount's bytes against the narHash we report
    let mount = Mount::start(&store, &tmp.path().join("mnt"), &[]);
    let real = daemon.url(Some(&mount.dir));
    for p in closure.lines() {
        nix(&["nix-store", "--store", &real, "--verify-path", p]);
    }
    // and copies out of it into a fresh store, whose contents then check out
    let fresh = tmp.path().join("fresh");
    nix(&["nix", "copy", "--no-check-sigs", "--from", &real, "--to", path_str(&fresh), &top]);
    nix(&["nix-store", "--store", path_str(&fresh), "--verify", "--check-contents"]);
    let copied = nix_stdout(&["nix-store", "--store", path_str(&fresh), "-qR", &top]);
    assert_eq!(sorted_lines(&copied), sorted_lines(&closure));

    // --add-fixed (ops 1, 39) gives Nix's own path
    let file = tmp.path().join("fixed-input");
    std::fs::write(&file, b"some fixed content\n").unwrap();
    let want = nix_stdout(&["nix-store", "--add-fixed", "sha256", path_str(&file)]);
    let got = nix_stdout(&["nix-store", "--store", &url, "--add-fixed", "sha256", path_str(&file)]);
    assert_eq!(got.trim(), want.trim());
    let got_r = nix_stdout(&["nix-store", "--store", &url, "--add-fixed", "--recursive", "sha256", path_str(&file)]);
    let want_r = nix_stdout(&["nix-store", "--add-fixed", "--recursive", "sha256", path_str(&file)]);
    assert_eq!(got_r.trim(), want_r.trim());

    // nix-instantiate writes its derivation through AddToStore (op 7)
    let expr = tmp.path().join("inst.nix");
    std::fs::write(
        &expr,
        r#"derivation { name = "inst"; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" "echo > $out" ]; src = builtins.toFile "src" "hello"; }"#,
    )
    .unwrap();
    let want = nix_stdout(&["nix-instantiate", path_str(&expr)]);
    let got = nix_stdout(&["nix-instantiate", "--store", &url, "--read-write-mode", path_str(&expr)]);
    assert_eq!(got.trim(), want.trim());
    nix(&["nix-store", "--store", &url, "--check-validity", got.trim()]);
    let drv_info = store.snix_store(&["path-info", "--json", got.trim()]);
    assert!(drv_info.contains("\"ca\":\"text:sha256:"), "{drv_info}");
    let refs = nix_stdout(&["nix-store", "--store", &url, "--query", "--references", got.trim()]);
    assert!(refs.contains("-src"), "the toFile source is a reference: {refs}");

    // building is refused with a clear error, and the connection survives it
    let out = run(nix_cmd("nix-store").args(["--store", &url, "--realise", got.trim()]));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot build"), "{err}");
}

#[test]
#[ignore = "needs nix"]
fn untrusted_users_need_signatures_for_input_addressed_paths() {
    require_nix();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (top, dep) = build_closure(tmp.path());
    // binary caches a non-root user can read: one unsigned, one signed
    let key = tmp.path().join("key.sec");
    let out = nix_stdout(&["nix", "key", "generate-secret", "--key-name", "test-key-1"]);
    std::fs::write(&key, out.trim()).unwrap();
    let pubkey = ok(Command::new("sh").arg("-c").arg(format!(
        "NIX_CONFIG='experimental-features = nix-command' nix key convert-secret-to-public < {}",
        key.display()
    )));
    let (unsigned, signed) = (tmp.path().join("cache"), tmp.path().join("cache-signed"));
    nix(&["nix", "copy", "--to", &format!("file://{}", unsigned.display()), &top]);
    nix(&["nix", "copy", "--to", &format!("file://{}?secret-key={}", signed.display(), key.display()), &top]);
    ok(Command::new("chmod").args(["-R", "a+rX", path_str(tmp.path())]));

    let store = StoreDaemon::start(&tmp.path().join("state"));
    let daemon = NixDaemon::start(
        &store,
        &tmp.path().join("nd.sock"),
        &["--unix-listen-chmod", "everybody", "--trusted-public-keys", pubkey.trim()],
    );
    let home = tmp.path().join("home");
    std::fs::create_dir(&home).unwrap();
    ok(Command::new("chown").args(["65534:65534", path_str(&home)]));
    let as_nobody = |from: &Path| {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "nix", "copy", "--from"])
            .arg(format!("file://{}", from.display()))
            .args(["--to", &daemon.url(None), &top])
            .env("HOME", &home)
            .env("XDG_CACHE_HOME", home.join("cache"))
            .env("NIX_CONFIG", "experimental-features = nix-command\nsubstituters =\n");
        run(&mut c)
    };
    let out = as_nobody(&unsigned);
    assert!(!out.status.success(), "an unsigned input-addressed path was accepted from an untrusted user");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lacks a signature by a trusted key"), "{err}");
    let registered =
        store.client(&integration_tests::stack::bin("snix-store")).args(["path-info", &top]).output().unwrap();
    assert!(!registered.status.success(), "nothing of the refused path may be registered");
    // the content-addressed dependency needs no signature
    let ca = store.client(&integration_tests::stack::bin("snix-store")).args(["path-info", &dep]).output().unwrap();
    assert!(ca.status.success(), "the CA dependency is accepted: {}", String::from_utf8_lossy(&ca.stderr));

    let out = as_nobody(&signed);
    assert!(out.status.success(), "signed copy refused: {}", String::from_utf8_lossy(&out.stderr));
    store.snix_store(&["path-info", &top]);
}

#[test]
#[ignore = "needs nix"]
fn bad_input_gets_errors_and_other_clients_are_served() {
    let tmp = tempfile::tempdir().unwrap();
    let store = StoreDaemon::start(&tmp.path().join("state"));
    let daemon = NixDaemon::start(&store, &tmp.path().join("nd.sock"), &["--require-sigs", "false"]);
    let mut bystander = RawClient::connect(&daemon.socket);
    bystander.works();

    // garbage after the magic
    let mut s = UnixStream::connect(&daemon.socket).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    s.write_all(&u64le(0x6e697863)).unwrap();
    s.write_all(b"\xff\xfe garbage garbage garbage").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    bystander.works();

    // wrong magic
    let mut s = UnixStream::connect(&daemon.socket).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    bystander.works();

    // an unknown op: an error naming it, and the connection goes on
    let mut c = RawClient::connect(&daemon.socket);
    c.send(&u64le(999));
    let msg = c.error();
    assert!(msg.contains("999"), "{msg}");
    c.works();

    // a string longer than the remaining input, then hang up
    let mut c = RawClient::connect(&daemon.socket);
    c.send(&u64le(1));
    c.send(&u64le(1000));
    c.send(b"/nix/store/short");
    c.stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(c.closed());
    bystander.works();

    // an absurd string length
    let mut c = RawClient::connect(&daemon.socket);
    c.send(&u64le(1));
    c.send(&u64le(1 << 60));
    let msg = c.error();
    assert!(msg.contains("longer than"), "{msg}");
    assert!(c.closed());

    // an invalid store path: an error, the connection is closed (out of step)
    let mut c = RawClient::connect(&daemon.socket);
    c.send(&u64le(1));
    c.send(&string(b"/etc/passwd"));
    let msg = c.error();
    assert!(msg.contains("invalid store path"), "{msg}");

    // AddToStoreNar whose NAR does not match its narHash; then a truncated frame
    let nar = {
        let out = Command::new("nix-store").arg("--dump").arg("/bin/sh").output();
        match out {
            Ok(o) if o.status.success() => o.stdout,
            // no Nix: a hand-made NAR of one small file
            _ => {
                let mut v = string(b"nix-archive-1");
                for t in [&b"("[..], b"type", b"regular", b"contents"] {
                    v.extend(string(t));
                }
                v.extend(string(b"hi"));
                v.extend(string(b")"));
                v
            }
        }
    };
    let mut c = RawClient::connect(&daemon.socket);
    let path = b"/nix/store/g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q-wrong-hash";
    c.send(&u64le(39));
    c.send(&string(path));
    c.send(&string(b""));
    c.send(&string(b"0000000000000000000000000000000000000000000000000000000000000000"));
    c.send(&u64le(0)); // references
    c.send(&u64le(0)); // registration time
    c.send(&u64le(nar.len() as u64));
    c.send(&u64le(0)); // ultimate
    c.send(&u64le(0)); // sigs
    c.send(&string(b"")); // ca
    c.send(&u64le(0)); // repair
    c.send(&u64le(1)); // dontCheckSigs
    for chunk in nar.chunks(4000) {
        c.send(&u64le(chunk.len() as u64));
        c.send(chunk);
    }
    c.send(&u64le(0));
    let msg = c.error();
    assert!(msg.contains("NAR hash mismatch"), "{msg}");
    c.works();
    let listed = store
        .client(&integration_tests::stack::bin("snix-store"))
        .args(["path-info", std::str::from_utf8(path).unwrap()])
        .output()
        .unwrap();
    assert!(!listed.status.success(), "nothing may be registered");

    // a truncated frame, then hang up
    let mut c = RawClient::connect(&daemon.socket);
    c.send(&u64le(44));
    c.send(&u64le(0));
    c.send(&u64le(0));
    c.send(&u64le(100));
    c.send(b"only a few bytes");
    c.stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(c.closed());

    bystander.works();
    let log = std::fs::read_to_string(&daemon.log).unwrap();
    assert!(!log.contains("panicked"), "{log}");
}

/// `nix-store --delete`, `--gc`, `--print-live`, `--print-dead` from Nix
/// 2.8 through our daemon: as Nix's daemon answers them for a store whose
/// registered paths are all live (this store keeps no GC roots); an
/// untrusted user is refused.
#[test]
#[ignore = "needs nix"]
fn nix_store_delete_and_gc_through_our_daemon() {
    require_nix();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (top, dep) = build_closure(tmp.path());
    let lonely_dir = tmp.path().join("lonely");
    std::fs::create_dir(&lonely_dir).unwrap();
    std::fs::write(lonely_dir.join("f"), format!("nobody refers to me {:?}\n", tmp.path())).unwrap();
    let lonely = nix_stdout(&["nix-store", "--add", path_str(&lonely_dir)]);
    let store = StoreDaemon::start(&tmp.path().join("state"));
    let daemon = NixDaemon::start(&store, &tmp.path().join("nd.sock"), &["--unix-listen-chmod", "everybody"]);
    let url = daemon.url(None);
    nix(&["nix", "copy", "--no-check-sigs", "--to", &url, &top, &lonely]);
    let nix_store = |args: &[&str]| run(nix_cmd("nix-store").args(["--store", &url]).args(args));

    let live = nix_store(&["--gc", "--print-live"]);
    assert!(live.status.success(), "{}", String::from_utf8_lossy(&live.stderr));
    assert_eq!(
        sorted_lines(&String::from_utf8_lossy(&live.stdout)),
        sorted_lines(&format!("{dep}\n{lonely}\n{top}\n"))
    );
    let dead = nix_store(&["--gc", "--print-dead"]);
    assert!(dead.status.success() && String::from_utf8_lossy(&dead.stdout).trim().is_empty());

    // a referenced path cannot go; a lone one can
    let refused = nix_store(&["--delete", &dep]);
    assert!(!refused.status.success(), "deleting a path {top} refers to succeeded");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("since it is still alive"), "{err}");
    let deleted = nix_store(&["--delete", &lonely]);
    assert!(deleted.status.success(), "{}", String::from_utf8_lossy(&deleted.stderr));
    let said = |o: &Output| format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(said(&deleted).contains("1 store paths deleted"), "{}", said(&deleted));
    let gone = nix_store(&["--check-validity", &lonely]);
    assert!(!gone.status.success(), "{lonely} is still valid");
    assert!(nix_store(&["--check-validity", &top, &dep]).status.success());

    // a collection sweeps; Nix prints what our daemon reports freed
    let gc = nix_store(&["--gc"]);
    assert!(gc.status.success(), "{}", String::from_utf8_lossy(&gc.stderr));
    assert!(said(&gc).contains("0 store paths deleted"), "{}", said(&gc));
    for p in [&top, &dep] {
        let ok = run(nix_cmd("nix-store").args(["--store", &url, "-q", "--hash", p]));
        assert!(ok.status.success());
    }

    // untrusted: refused
    let home = tmp.path().join("home");
    std::fs::create_dir(&home).unwrap();
    ok(Command::new("chown").args(["65534:65534", path_str(&home)]));
    let out = run(Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "nix-store", "--store", &url, "--delete", &top])
        .env("HOME", &home)
        .env("NIX_CONFIG", "substituters =\n"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not privileged to collect garbage"), "{err}");
    assert!(nix_store(&["--check-validity", &top]).status.success());
}

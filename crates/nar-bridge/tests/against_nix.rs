//! nar-bridge judged by the real Nix: Nix 2.8 (and 2.26 in the trixie
//! chroot) copies and substitutes from it into fresh stores and verifies
//! what it got; Nix refuses what is unsigned or wrongly signed; the
//! listings, narinfos and NAR bytes are compared with a binary cache Nix
//! wrote itself; bad requests get clear errors while the bridge keeps
//! serving.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

use integration_tests::chroots::{self, Suite};
use integration_tests::corpus;
use integration_tests::judge::{build_closure, nix, nix_cmd, nix_stdout, path_str, require_nix};
use integration_tests::stack::{NarBridge, StoreDaemon};

/// A closure of Nix's (a build and the path it refers to) and the tricky
/// trees, in our store. Returns the store daemon and the paths.
fn store_with_paths(tmp: &Path) -> (StoreDaemon, Vec<String>) {
    let (top, dep) = build_closure(tmp);
    let mut paths = vec![top, dep];
    for entry in corpus::shared() {
        paths.push(nix_stdout(&["nix-store", "--add", path_str(entry)]));
    }
    let d = StoreDaemon::start(&tmp.join("state"));
    let mut args = vec!["copy"];
    args.extend(paths.iter().map(String::as_str));
    d.snix_store(&args);
    (d, paths)
}

/// (secret key file, public key) made by `nix-store --generate-binary-cache-key`.
fn key_pair(dir: &Path, name: &str) -> (String, String) {
    let (sk, pk) = (dir.join(format!("{name}.sk")), dir.join(format!("{name}.pk")));
    nix(&["nix-store", "--generate-binary-cache-key", name, path_str(&sk), path_str(&pk)]);
    (path_str(&sk).to_string(), std::fs::read_to_string(&pk).unwrap().trim().to_string())
}

/// `nix copy --from CACHE --to local?root=DST PATHS` trusting `public_key`.
fn nix_copy_from(cache: &str, dst: &Path, public_key: &str, paths: &[String]) -> Output {
    let to = format!("local?root={}", dst.display());
    let mut c = nix_cmd("nix");
    c.args(["copy", "--from", cache, "--to", &to, "--option", "trusted-public-keys", public_key]);
    c.args(paths).stdin(Stdio::null()).output().unwrap()
}

fn ok(out: &Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `curl URL ARGS`: (HTTP status, body, curl's exit code).
fn curl(url: &str, args: &[&str]) -> (u16, Vec<u8>, i32) {
    let body = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new("curl")
        .args(["-sS", "-o", path_str(body.path()), "-w", "%{http_code}"])
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("running curl");
    let status = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
    (status, std::fs::read(body.path()).unwrap(), out.status.code().unwrap_or(-1))
}

fn get(url: &str) -> (u16, Vec<u8>) {
    let (status, body, code) = curl(url, &[]);
    assert_eq!(code, 0, "curl {url}");
    (status, body)
}

fn hash_part(path: &str) -> &str {
    &path["/nix/store/".len()..][..32]
}

fn narinfo_field<'a>(narinfo: &'a str, key: &str) -> Option<&'a str> {
    narinfo.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(": "))
}

#[test]
#[ignore = "needs nix"]
fn nix_copies_from_the_bridge_into_a_fresh_store_and_verifies_it() {
    require_nix();
    let tmp = tempfile::tempdir().unwrap();
    let (d, paths) = store_with_paths(tmp.path());
    let (sk, pk) = key_pair(tmp.path(), "bridge-test-1");

    for compression in ["none", "zstd", "xz"] {
        let bridge = NarBridge::start(&d, &["--signing-key", &sk, "--compression", compression]);
        let dst = tmp.path().join(format!("dst-{compression}"));
        // the tricky trees only once: they are large
        let wanted = if compression == "none" { &paths[..] } else { &paths[..2] };
        ok(&nix_copy_from(&bridge.url, &dst, &pk, wanted), &format!("nix copy --from nar-bridge ({compression})"));
        let store = format!("local?root={}", dst.display());
        let verify = nix(&["nix-store", "--store", &store, "--verify", "--check-contents"]);
        let said = String::from_utf8_lossy(&verify.stderr);
        assert!(!said.contains("modified") && !said.contains("error"), "{said}");
        for p in wanted {
            let theirs = nix(&["nix-store", "--store", &store, "--dump", p]).stdout;
            assert!(theirs == nix(&["nix-store", "--dump", p]).stdout, "{p} differs after the copy ({compression})");
        }
        // our signature is on what Nix registered
        let info: serde_json::Value =
            serde_json::from_str(&nix_stdout(&["nix", "path-info", "--store", &store, "--json", &paths[0]])).unwrap();
        let sigs = info[0]["signatures"].as_array().unwrap();
        assert!(sigs.iter().any(|s| s.as_str().unwrap().starts_with("bridge-test-1:")), "{info}");
    }
}

#[test]
#[ignore = "needs nix"]
fn nix_refuses_unsigned_and_wrongly_signed_paths() {
    require_nix();
    let tmp = tempfile::tempdir().unwrap();
    let (top, _) = build_closure(tmp.path());
    let d = StoreDaemon::start(&tmp.path().join("state"));
    d.snix_store(&["copy", &top]);
    let (_, trusted) = key_pair(tmp.path(), "trusted");
    let (other_sk, _) = key_pair(tmp.path(), "other");

    let unsigned = NarBridge::start(&d, &[]);
    let wrongly = NarBridge::start(&d, &["--signing-key", &other_sk]);
    for (bridge, what) in [(&unsigned, "unsigned"), (&wrongly, "signed by an untrusted key")] {
        let dst = tmp.path().join(format!("dst-{}", what.len()));
        let out = nix_copy_from(&bridge.url, &dst, &trusted, std::slice::from_ref(&top));
        assert!(!out.status.success(), "Nix took a path {what}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("lacks a valid signature"), "{what}: {err}");
        let store = format!("local?root={}", dst.display());
        // (its content-addressed dependency needs no signature)
        let out = nix_cmd("nix").args(["path-info", "--store", &store, &top]).output().unwrap();
        assert!(!out.status.success(), "{top} is in the store after a refused copy ({what})");
    }
}

#[test]
#[ignore = "needs nix"]
fn nix_store_realise_substitutes_from_the_bridge_alone() {
    require_nix();
    let tmp = tempfile::tempdir().unwrap();
    let (top, dep) = build_closure(tmp.path());
    let d = StoreDaemon::start(&tmp.path().join("state"));
    d.snix_store(&["copy", &top]);
    let (sk, pk) = key_pair(tmp.path(), "subst");
    let bridge = NarBridge::start(&d, &["--signing-key", &sk]);
    let store = format!("local?root={}", tmp.path().join("dst").display());
    let out = nix_cmd("nix-store")
        .args(["--store", &store, "--realise", &top])
        .args(["--option", "substituters", &bridge.url, "--option", "trusted-public-keys", &pk])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(ok(&out, "nix-store --realise").trim(), top);
    let stored = nix_stdout(&["nix-store", "--store", &store, "-qR", &top]);
    assert_eq!(
        integration_tests::judge::sorted_lines(&stored),
        integration_tests::judge::sorted_lines(&format!("{top}\n{dep}"))
    );
}

#[test]
#[ignore = "needs root, nix and the trixie chroot"]
fn nix_2_26_copies_from_the_bridge() {
    require_nix();
    let tmp = tempfile::tempdir().unwrap();
    let (top, _) = build_closure(tmp.path());
    let d = StoreDaemon::start(&tmp.path().join("state"));
    d.snix_store(&["copy", &top]);
    let (sk, pk) = key_pair(tmp.path(), "trixie");
    let root = chroots::chroot(Suite::Trixie);
    for compression in ["none", "zstd"] {
        let bridge = NarBridge::start(&d, &["--signing-key", &sk, "--compression", compression]);
        let (_, inside) = chroots::scratch(root, &format!("bridge-{compression}"));
        let store = format!("local?root={}", inside.display());
        let out = chroots::ok(
            root,
            &format!(
                "nix --extra-experimental-features nix-command copy --from {url} --to '{store}' \
                 --option trusted-public-keys '{pk}' {top}
                 nix-store --store '{store}' --verify --check-contents
                 nix --extra-experimental-features nix-command store dump-path --store '{store}' {top} > {nar}
                 sha256sum {nar}",
                url = bridge.url,
                nar = format!("{}.nar", inside.display()),
            ),
        );
        let ours = nix_compat::hash::sha256(&nix(&["nix-store", "--dump", &top]).stdout);
        let hex: String = ours.iter().map(|b| format!("{b:02x}")).collect();
        assert!(out.contains(&hex), "Nix 2.26's copy ({compression}) differs: {out} (expected {hex})");
    }
}

/// What we serve is what Nix itself writes to a binary cache: the listing,
/// the narinfo's fields and the NAR bytes; a range of the NAR at a file's
/// `narOffset` is that file.
#[test]
#[ignore = "needs nix"]
fn listings_narinfos_and_nars_match_a_cache_nix_wrote() {
    require_nix();
    let tmp = tempfile::tempdir().unwrap();
    let (d, paths) = store_with_paths(tmp.path());
    let cache = tmp.path().join("cache");
    let mut args = vec!["nix", "copy", "--to"];
    let to = format!("file://{}?compression=none&write-nar-listing=true", cache.display());
    args.push(&to);
    args.extend(paths.iter().map(String::as_str));
    nix(&args);
    let bridge = NarBridge::start(&d, &[]);

    for p in &paths {
        let h = hash_part(p);
        let theirs = std::fs::read_to_string(cache.join(format!("{h}.narinfo"))).unwrap();
        let (status, ours) = get(&format!("{}/{h}.narinfo", bridge.url));
        assert_eq!(status, 200);
        let ours = String::from_utf8(ours).unwrap();
        for key in ["StorePath", "NarHash", "NarSize", "References", "Deriver", "CA", "Compression", "FileSize"] {
            assert_eq!(narinfo_field(&ours, key), narinfo_field(&theirs, key), "{key} of {p}");
        }

        let their_ls = std::fs::read(cache.join(format!("{h}.ls"))).unwrap();
        let listing = deep_json(&their_ls);
        let (status, ours_ls) = get(&format!("{}/{h}.ls", bridge.url));
        assert_eq!(status, 200, "{h}.ls: {}", String::from_utf8_lossy(&ours_ls));
        assert_eq!(deep_json(&ours_ls), listing, "listing of {p}");
        // Nix 2.8 (the host's) writes keys in our order; later Nix sorts them
        if nix_version().starts_with("2.8.") {
            assert!(ours_ls == their_ls, "listing of {p} is not byte for byte Nix's");
        }

        let their_nar = std::fs::read(cache.join(narinfo_field(&theirs, "URL").unwrap())).unwrap();
        let url = format!("{}/{}", bridge.url, narinfo_field(&ours, "URL").unwrap());
        let (status, our_nar) = get(&url);
        assert_eq!(status, 200);
        assert!(our_nar == their_nar, "NAR of {p} differs");

        // the first regular file Nix's listing names, read by its offset
        if let Some((file, size, offset)) = first_file(&listing["root"], String::new()) {
            if size > 0 {
                let range = format!("bytes={offset}-{}", offset + size - 1);
                let (status, part, _) = curl(&url, &["-H", &format!("Range: {range}")]);
                assert_eq!(status, 206, "{range} of {p}");
                let on_disk = std::fs::read(format!("{p}{file}")).unwrap();
                assert!(part == on_disk, "{p}{file} read by range");
            }
        }
    }
}

/// (path under the root, size, narOffset) of the first regular file.
fn first_file(node: &serde_json::Value, at: String) -> Option<(String, u64, u64)> {
    match node["type"].as_str()? {
        "regular" => Some((at, node["size"].as_u64()?, node["narOffset"].as_u64()?)),
        "directory" => {
            node["entries"].as_object()?.iter().find_map(|(name, child)| first_file(child, format!("{at}/{name}")))
        }
        _ => None,
    }
}

#[test]
#[ignore = "needs nix"]
fn bad_requests_get_clear_errors_and_the_bridge_keeps_serving() {
    require_nix();
    let tmp = tempfile::tempdir().unwrap();
    let (top, _) = build_closure(tmp.path());
    let d = StoreDaemon::start(&tmp.path().join("state"));
    d.snix_store(&["copy", &top]);
    let bridge = NarBridge::start(&d, &[]);
    let u = &bridge.url;

    let (status, body) = get(&format!("{u}/nix-cache-info"));
    assert_eq!(
        (status, String::from_utf8(body).unwrap().as_str()),
        (200, "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n")
    );
    let (status, body) = get(&format!("{u}/not-a-hash.narinfo"));
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("not a store path hash"), "{}", String::from_utf8_lossy(&body));
    let absent = "00000000000000000000000000000000";
    assert_eq!(get(&format!("{u}/{absent}.narinfo")).0, 404);
    assert_eq!(get(&format!("{u}/{absent}.ls")).0, 404);
    assert_eq!(get(&format!("{u}/nar/garbage.nar")).0, 400);
    assert_eq!(get(&format!("{u}/nar/{absent}-{}.nar", "0".repeat(52))).0, 404);
    assert_eq!(get(&format!("{u}/some/other/file")).0, 404);
    // HEAD, as Nix asks whether a path is there
    let (status, _, _) = curl(&format!("{u}/{}.narinfo", hash_part(&top)), &["-I"]);
    assert_eq!(status, 200);

    // a NAR URL naming other content than the path has now is not served
    let (_, narinfo) = get(&format!("{u}/{}.narinfo", hash_part(&top)));
    let narinfo = String::from_utf8(narinfo).unwrap();
    let nar_url = format!("{u}/{}", narinfo_field(&narinfo, "URL").unwrap());
    let stale = nar_url.replace(&nar_url[nar_url.len() - 10..nar_url.len() - 4], "000000");
    assert_eq!(get(&stale).0, 404);
    let size: u64 = narinfo_field(&narinfo, "NarSize").unwrap().parse().unwrap();
    let (status, _, _) = curl(&nar_url, &["-H", &format!("Range: bytes={size}-")]);
    assert_eq!(status, 416);

    // garbage on the socket, then a request that is no HTTP at all
    let addr = u.strip_prefix("http://").unwrap();
    for garbage in [&b"\x00\x01\x02 garbage \xff\r\n\r\n"[..], b"GET / HTTP/9.9\r\n\r\n", b"GET"] {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        s.write_all(garbage).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
    }
    assert_eq!(get(&format!("{u}/nix-cache-info")).0, 200);

    // a blob gone from under a registered path: the NAR's transfer breaks
    // (never a short NAR that looks complete), and the bridge goes on
    std::fs::remove_dir_all(d.blob_dir()).unwrap();
    std::fs::create_dir_all(d.blob_dir()).unwrap();
    let (_, _, code) = curl(&nar_url, &[]);
    assert_ne!(code, 0, "curl took a NAR whose blob is missing as complete");
    assert_eq!(get(&format!("{u}/nix-cache-info")).0, 200);
    assert!(bridge.stop().success());
}

/// A listing as a JSON value: deeper than serde_json's default limit of
/// 128, and with names that are not UTF-8 (Nix writes their bytes as they
/// are) read lossily — the same way for both sides.
fn deep_json(bytes: &[u8]) -> serde_json::Value {
    use serde::Deserialize;
    let text = String::from_utf8_lossy(bytes);
    let mut de = serde_json::Deserializer::from_str(&text);
    de.disable_recursion_limit();
    serde_json::Value::deserialize(&mut de).expect("a JSON listing")
}

fn nix_version() -> String {
    let out = nix(&["nix-store", "--version"]).stdout;
    String::from_utf8_lossy(&out).split_whitespace().last().unwrap_or_default().to_owned()
}

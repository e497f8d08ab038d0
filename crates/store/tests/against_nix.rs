//! The store judged by the real Nix (2.8): `import` gives the path
//! `nix-store --add` gives, `dump` the bytes `nix-store --dump` gives, NARs
//! Nix made ingest and render back identically, and bad claims register
//! nothing.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::sync::Arc;

use integration_tests::corpus;
use integration_tests::judge::{build_closure, nix, nix_stdout, path_str, require_nix};
use integration_tests::stack::{bin, StoreDaemon};
use nix_compat::content_address::ContentAddress;
use nix_compat::hash::{sha256, NixHash};
use nix_compat::store_path::StorePath;
use snix_castore::blobservice::MemoryBlobService;
use snix_castore::directoryservice::MemoryDirectoryService;
use snix_store::pathinfoservice::{MemoryPathInfoService, PathInfoService};
use snix_store::register::{add_nar, AddError, Claimed};

/// `snix-store ARGS` against `d`.
fn store_cmd(d: &StoreDaemon, args: &[&str]) -> Command {
    let mut c = d.client(&bin("snix-store"));
    c.args(args);
    c
}

fn snix_store(d: &StoreDaemon, args: &[&str]) -> std::process::Output {
    store_cmd(d, args).output().unwrap()
}

fn sha256_of_cmd(out: &std::process::Output) -> [u8; 32] {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    sha256(&out.stdout)
}

#[test]
#[ignore = "needs nix"]
fn import_equals_nix_store_add_and_dump_equals_nix_store_dump() {
    require_nix();
    let tmp = tempfile::tempdir().unwrap();
    let d = StoreDaemon::start(tmp.path());
    for entry in corpus::shared() {
        let out = snix_store(&d, &["import", path_str(entry)]);
        assert!(out.status.success(), "import {}: {}", entry.display(), String::from_utf8_lossy(&out.stderr));
        let ours = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let theirs = nix_stdout(&["nix-store", "--add", path_str(entry)]);
        assert_eq!(ours, theirs, "{}", entry.display());

        let dumped = snix_store(&d, &["dump", &ours]);
        let nix_dump = nix(&["nix-store", "--dump", &theirs]);
        assert_eq!(sha256_of_cmd(&dumped), sha256(&nix_dump.stdout), "dump of {ours}");

        let ours_json: serde_json::Value =
            serde_json::from_slice(&snix_store(&d, &["path-info", "--json", &ours]).stdout).unwrap();
        let nix_json: serde_json::Value =
            serde_json::from_str(&nix_stdout(&["nix", "path-info", "--json", &theirs])).unwrap();
        for key in ["path", "narHash", "narSize", "references", "ca"] {
            assert_eq!(ours_json[0][key], nix_json[0][key], "{key} of {ours}");
        }
    }
    // an unknown path is a clear error
    let out = snix_store(&d, &["dump", "/nix/store/00000000000000000000000000000000-nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not valid"));
}

/// `nix path-info --json` of `p`, as our claim.
fn claim_of(p: &str) -> Claimed {
    let v: serde_json::Value = serde_json::from_str(&nix_stdout(&["nix", "path-info", "--json", p])).unwrap();
    let v = &v[0];
    Claimed {
        store_path: p.parse().unwrap(),
        nar_hash: NixHash::parse(v["narHash"].as_str().unwrap(), None).unwrap(),
        nar_size: v["narSize"].as_u64().unwrap(),
        references: v["references"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().parse().unwrap()).collect(),
        deriver: v.get("deriver").and_then(|d| d.as_str()).map(|d| d.parse().unwrap()),
        signatures: vec![],
        ca: v.get("ca").and_then(|c| c.as_str()).map(|c| c.parse::<ContentAddress>().unwrap()),
    }
}

struct Mem {
    blobs: MemoryBlobService,
    dirs: MemoryDirectoryService,
    infos: Arc<MemoryPathInfoService>,
}

fn mem() -> Mem {
    Mem { blobs: Default::default(), dirs: Default::default(), infos: Arc::new(Default::default()) }
}

async fn add(m: &Mem, nar: Vec<u8>, claim: Claimed) -> Result<snix_store::PathInfo, AddError> {
    add_nar(&nar[..], claim, &m.blobs, &m.dirs, &*m.infos).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nix"]
async fn nars_from_nix_ingest_and_render_back_identically() {
    require_nix();
    let tmp = tempfile::tempdir().unwrap();
    let (top, dep) = build_closure(tmp.path());
    let m = mem();
    for p in [&dep, &top] {
        let nar = nix(&["nix-store", "--dump", p]).stdout;
        let info = add(&m, nar.clone(), claim_of(p)).await.unwrap();
        let rendered = snix_store::nar::render_nar(Vec::new(), &info.node, &m.blobs, &m.dirs).await.unwrap();
        assert!(rendered == nar, "render of {p} differs from nix-store --dump");
        assert_eq!(info.references, claim_of(p).references);
    }
    // and the corpus, through the same path
    for entry in corpus::shared().iter().filter(|e| !e.ends_with("big-file")) {
        let p = nix_stdout(&["nix-store", "--add", path_str(entry)]);
        let nar = nix(&["nix-store", "--dump", &p]).stdout;
        let info = add(&m, nar.clone(), claim_of(&p)).await.unwrap();
        let rendered = snix_store::nar::render_nar(Vec::new(), &info.node, &m.blobs, &m.dirs).await.unwrap();
        assert!(rendered == nar, "render of {p} differs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nix"]
async fn bad_claims_register_nothing() {
    require_nix();
    let tmp = tempfile::tempdir().unwrap();
    let (top, dep) = build_closure(tmp.path());
    let dep_nar = nix(&["nix-store", "--dump", &dep]).stdout;
    let top_nar = nix(&["nix-store", "--dump", &top]).stdout;
    let m = mem();
    let registered = |m: &Mem, p: &str| {
        let p: StorePath = p.parse().unwrap();
        let infos = m.infos.clone();
        async move { infos.get(*p.digest()).await.unwrap().is_some() }
    };

    // a reference that is not there yet
    let e = add(&m, top_nar.clone(), claim_of(&top)).await.unwrap_err();
    assert!(matches!(e, AddError::MissingReference { .. }), "{e}");
    assert!(!registered(&m, &top).await);

    // wrong NAR hash
    let mut c = claim_of(&dep);
    c.nar_hash = NixHash::sha256([7; 32]);
    let e = add(&m, dep_nar.clone(), c).await.unwrap_err();
    assert!(matches!(e, AddError::NarHash { .. }), "{e}");
    assert!(e.to_string().contains("claimed") && e.to_string().contains("got"));
    assert!(!registered(&m, &dep).await);

    // wrong NAR size
    let mut c = claim_of(&dep);
    c.nar_size += 8;
    let e = add(&m, dep_nar.clone(), c).await.unwrap_err();
    assert!(matches!(e, AddError::NarSize { .. }), "{e}");
    assert!(!registered(&m, &dep).await);

    // a content address that does not give this path
    let mut c = claim_of(&dep);
    let Some(ContentAddress::Nar(_)) = c.ca else { panic!("dep is nix-store --add'ed: {:?}", c.ca) };
    c.store_path = StorePath::from_parts([1; 20], c.store_path.name()).unwrap();
    let e = add(&m, dep_nar.clone(), c.clone()).await.unwrap_err();
    assert!(matches!(e, AddError::ContentAddress { .. }), "{e}");
    assert!(!registered(&m, &c.store_path.to_string()).await);

    // a CA hash that does not match the content
    let mut c = claim_of(&dep);
    c.ca = Some(ContentAddress::Nar(NixHash::sha256([9; 32])));
    let e = add(&m, dep_nar.clone(), c).await.unwrap_err();
    assert!(matches!(e, AddError::ContentAddress { .. }), "{e}");

    // a malformed (truncated) NAR
    let e = add(&m, dep_nar[..dep_nar.len() - 9].to_vec(), claim_of(&dep)).await.unwrap_err();
    assert!(matches!(e, AddError::Ingest { .. }), "{e}");
    // data after the NAR
    let mut long = dep_nar.clone();
    long.extend_from_slice(&[0; 8]);
    let e = add(&m, long, claim_of(&dep)).await.unwrap_err();
    assert!(matches!(e, AddError::Ingest { .. }), "{e}");
    assert!(!registered(&m, &dep).await);

    // and the honest claims go through, dependency first
    add(&m, dep_nar, claim_of(&dep)).await.unwrap();
    add(&m, top_nar, claim_of(&top)).await.unwrap();
    assert!(registered(&m, &top).await);
}

#[test]
#[ignore = "needs nix"]
fn copy_of_a_real_closure_registers_dependencies_first_and_resumes() {
    require_nix();
    let tmp = tempfile::tempdir().unwrap();
    let (top, dep) = build_closure(tmp.path());
    let d = StoreDaemon::start(&tmp.path().join("state"));
    let out = store_cmd(&d, &["copy", &top]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for p in [&top, &dep] {
        let dumped = store_cmd(&d, &["dump", p]).output().unwrap();
        assert_eq!(sha256_of_cmd(&dumped), sha256(&nix(&["nix-store", "--dump", p]).stdout), "{p}");
        let ours: serde_json::Value =
            serde_json::from_slice(&store_cmd(&d, &["path-info", "--json", p]).output().unwrap().stdout).unwrap();
        let theirs: serde_json::Value = serde_json::from_str(&nix_stdout(&["nix", "path-info", "--json", p])).unwrap();
        for key in ["path", "narHash", "narSize", "references", "deriver", "ca"] {
            assert_eq!(ours[0][key], theirs[0][key], "{key} of {p}");
        }
    }
    // a second copy finds everything present
    let out = store_cmd(&d, &["copy", &top]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("copied 0 paths"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // the closure JSON form
    let json = nix_stdout(&["nix", "path-info", "--json", "-r", &top]);
    let file = tmp.path().join("closure.json");
    std::fs::write(&file, json).unwrap();
    let out = store_cmd(&d, &["copy", "--closure-json", path_str(&file)]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nix"]
async fn kill_9_during_a_large_copy_loses_nothing_registered_and_copy_resumes() {
    require_nix();
    use futures::TryStreamExt;
    let tmp = tempfile::tempdir().unwrap();
    // many paths, one of them large: add the corpus to the local Nix store
    let paths: Vec<String> =
        corpus::shared().iter().map(|e| nix_stdout(&["nix-store", "--add", path_str(e)])).collect();
    let mut args = vec!["copy"];
    args.extend(paths.iter().map(String::as_str));

    let mut d = StoreDaemon::start(&tmp.path().join("state"));
    let mut copy = store_cmd(&d, &args).stderr(Stdio::null()).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    d.kill9_and_restart(); // SIGKILL, mid-copy
    let _ = copy.wait();

    let addr = d.addr();
    let infos = snix_store::composition::path_info_service(&addr).unwrap();
    let blobs = snix_castore::composition::blob_service(&addr).unwrap();
    let dirs = snix_castore::composition::directory_service(&addr).unwrap();
    let registered: Vec<snix_store::PathInfo> = infos.list().try_collect().await.unwrap();
    eprintln!("{} of {} paths registered before the kill", registered.len(), paths.len());
    for info in &registered {
        let nar = snix_store::nar::render_nar(Vec::new(), &info.node, &*blobs, &*dirs).await.unwrap();
        assert_eq!(sha256(&nar), info.nar_sha256, "{} renders completely", info.store_path);
    }
    let out = store_cmd(&d, &args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("{} already present", registered.len())), "{stderr}");
    for p in &paths {
        let dumped = store_cmd(&d, &["dump", p]).output().unwrap();
        assert_eq!(sha256_of_cmd(&dumped), sha256(&nix(&["nix-store", "--dump", p]).stdout), "{p}");
    }
}

/// `snix-store sign` with a key `nix-store --generate-binary-cache-key`
/// made: the signature is the one Nix's own `nix store sign` makes for the
/// same path, and Nix trusts the path through our nix-daemon with that key
/// and not before; signing again adds nothing, another key adds its own;
/// bad input is refused and changes nothing.
#[test]
#[ignore = "needs nix"]
fn sign_adds_the_signature_nix_makes_and_nix_trusts_it() {
    require_nix();
    let tmp = tempfile::tempdir().unwrap();
    let (top, _dep) = build_closure(tmp.path());
    let d = StoreDaemon::start(&tmp.path().join("state"));
    let daemon = integration_tests::stack::NixDaemon::start(&d, &tmp.path().join("nd.sock"), &[]);
    let url = daemon.url(None);
    nix(&["nix", "copy", "--no-check-sigs", "--to", &url, &top]);
    let key = |name: &str| {
        let (sec, public) = (tmp.path().join(format!("{name}.sec")), tmp.path().join(format!("{name}.pub")));
        nix(&["nix-store", "--generate-binary-cache-key", name, path_str(&sec), path_str(&public)]);
        (sec, std::fs::read_to_string(&public).unwrap().trim().to_string())
    };
    let (sec, public) = key("snix-test-1");
    let verify = |keys: &str| {
        let mut c = integration_tests::judge::nix_cmd("nix");
        c.args(["store", "verify", "--no-contents", "--store", &url, "--trusted-public-keys", keys, &top]);
        c.output().unwrap()
    };
    let sigs = || {
        let out = nix_stdout(&["nix", "path-info", "--sigs", "--store", &url, &top]);
        let mut s: Vec<String> = out.split_whitespace().skip(1).map(str::to_string).collect();
        s.sort();
        s
    };
    let before = verify(&public);
    assert!(!before.status.success(), "Nix trusted an unsigned path");
    assert!(
        String::from_utf8_lossy(&before.stderr).contains("untrusted"),
        "{}",
        String::from_utf8_lossy(&before.stderr)
    );

    let out = snix_store(&d, &["sign", "--key-file", path_str(&sec), &top]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), top);
    let after = verify(&public);
    assert!(after.status.success(), "{}", String::from_utf8_lossy(&after.stderr));
    // byte for byte what Nix signs (ed25519 is deterministic)
    nix(&["nix", "store", "sign", "--key-file", path_str(&sec), &top]);
    let theirs = nix_stdout(&["nix", "path-info", "--sigs", &top]);
    let ours = sigs();
    assert_eq!(ours.len(), 1, "{ours:?}");
    assert!(theirs.split_whitespace().any(|s| s == ours[0]), "ours {ours:?}, Nix's {theirs}");

    // again: nothing added; with another key: a second signature
    assert!(snix_store(&d, &["sign", "-k", path_str(&sec), "--recursive", &top]).status.success());
    assert_eq!(sigs(), ours);
    let (sec2, public2) = key("snix-test-2");
    assert!(snix_store(&d, &["sign", "-k", path_str(&sec2), &top]).status.success());
    assert_eq!(sigs().len(), 2);
    assert!(verify(&public2).status.success());

    // a public key, a missing file, an unregistered path: refused, nothing changed
    let pubfile = tmp.path().join("snix-test-1.pub");
    let missing = tmp.path().join("nothing");
    let unknown = "/nix/store/00000000000000000000000000000000-unknown";
    for (args, says) in [
        (vec!["sign", "-k", path_str(&pubfile), top.as_str()], "--key-file"),
        (vec!["sign", "-k", path_str(&missing), top.as_str()], "No such file"),
        (vec!["sign", "-k", path_str(&sec), unknown], "is not valid"),
    ] {
        let out = snix_store(&d, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "{args:?}: {err}");
    }
    assert_eq!(sigs().len(), 2);
}

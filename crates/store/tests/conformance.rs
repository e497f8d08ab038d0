//! One PathInfoService conformance suite, run against every backend, and
//! against the gRPC client talking to a store daemon's server on each
//! backend. A new backend is a new row in `backends`.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::TryStreamExt;
use nix_compat::content_address::ContentAddress;
use nix_compat::hash::{HashAlgo, NixHash};
use nix_compat::signing::Signature;
use nix_compat::store_path::StorePath;
use snix_castore::blobservice::{self, BlobService};
use snix_castore::composition::CastoreServices;
use snix_castore::{B3Digest, Node};
use snix_store::composition::path_info_service;
use snix_store::pathinfoservice::{get_path, PathInfoService};
use snix_store::PathInfo;

/// A distinct store path for each `i` (digest from `i`, a name of its own).
fn store_path(i: u32, name: &str) -> StorePath {
    let mut digest = [0u8; 20];
    digest[..4].copy_from_slice(&i.to_be_bytes());
    digest[19] = 0x5a;
    StorePath::from_parts(digest, name).unwrap()
}

/// A path info whose content needs nothing in the castore (a symlink).
fn info(i: u32) -> PathInfo {
    PathInfo {
        store_path: store_path(i, &format!("p{i}")),
        node: Node::Symlink { target: format!("target-{i}").into() },
        references: vec![store_path(i + 1_000_000, "dep")],
        nar_size: 100 + u64::from(i),
        nar_sha256: [i as u8; 32],
        signatures: vec![],
        deriver: None,
        ca: None,
    }
}

/// Every field set, and a file whose blob `blobs` holds.
async fn full_info(blobs: &dyn BlobService) -> PathInfo {
    let contents = b"contents of a registered file";
    let digest = blobservice::put_bytes(blobs, contents).await.unwrap();
    assert_eq!(digest, B3Digest::of(contents));
    PathInfo {
        store_path: store_path(7, "full"),
        node: Node::File { digest, size: contents.len() as u64, executable: true },
        references: vec![store_path(7, "full"), store_path(8, "other")],
        nar_size: 232,
        nar_sha256: [0xab; 32],
        signatures: vec![
            Signature { name: "cache.example.org-1".into(), bytes: [1; 64] },
            Signature { name: "other-key".into(), bytes: [2; 64] },
        ],
        deriver: Some(store_path(9, "full.drv")),
        ca: Some(ContentAddress::Nar(NixHash::compute(HashAlgo::Sha256, b"x"))),
    }
}

async fn all(svc: &dyn PathInfoService) -> Vec<PathInfo> {
    svc.list().try_collect().await.unwrap()
}

async fn path_info_suite(svc: Arc<dyn PathInfoService>, blobs: &dyn BlobService) {
    // empty
    assert!(svc.get(*info(1).store_path.digest()).await.unwrap().is_none());
    assert!(all(&*svc).await.is_empty());

    // put returns what it stored; get gives back every field
    let full = full_info(blobs).await;
    assert_eq!(svc.put(full.clone()).await.unwrap(), full);
    assert_eq!(svc.get(*full.store_path.digest()).await.unwrap(), Some(full.clone()));

    // get_path needs the name to match too
    assert_eq!(get_path(&*svc, &full.store_path).await.unwrap(), Some(full.clone()));
    let same_digest_other_name = StorePath::from_parts(*full.store_path.digest(), "impostor").unwrap();
    assert_eq!(get_path(&*svc, &same_digest_other_name).await.unwrap(), None);

    // a later put for the same path replaces it (signatures added)
    let mut signed = full.clone();
    signed.signatures.push(Signature { name: "third".into(), bytes: [3; 64] });
    svc.put(signed.clone()).await.unwrap();
    assert_eq!(svc.get(*full.store_path.digest()).await.unwrap(), Some(signed.clone()));

    // many: each listed exactly once, and each found by its digest
    let many: Vec<PathInfo> = (100..400).map(info).collect();
    for i in &many {
        svc.put(i.clone()).await.unwrap();
    }
    let listed = all(&*svc).await;
    assert_eq!(listed.len(), many.len() + 1, "every path once");
    let listed_paths: BTreeSet<String> = listed.iter().map(|i| i.store_path.to_string()).collect();
    let expected: BTreeSet<String> = many.iter().chain([&signed]).map(|i| i.store_path.to_string()).collect();
    assert_eq!(listed_paths, expected);
    assert!(listed.contains(&signed));
    for i in many.iter().step_by(37) {
        assert_eq!(svc.get(*i.store_path.digest()).await.unwrap().as_ref(), Some(i));
    }
}

/// Deleting leaves a tombstone until it is purged; registering again
/// clears it.
async fn path_info_delete_suite(svc: Arc<dyn PathInfoService>) {
    use std::time::{Duration, SystemTime};
    let later = || SystemTime::now() + Duration::from_secs(3600);
    let a = info(1000);
    let b = info(1001);
    svc.put(a.clone()).await.unwrap();
    svc.put(b.clone()).await.unwrap();
    let before = SystemTime::now() - Duration::from_secs(1);
    assert_eq!(svc.delete(*a.store_path.digest()).await.unwrap(), Some(a.clone()));
    assert_eq!(svc.delete(*a.store_path.digest()).await.unwrap(), None, "already gone");
    assert!(svc.get(*a.store_path.digest()).await.unwrap().is_none());
    assert!(!all(&*svc).await.contains(&a));
    assert!(all(&*svc).await.contains(&b));
    let tombs: Vec<_> = svc.list_deleted().try_collect().await.unwrap();
    let t = tombs.iter().find(|t| t.info == a).expect("a tombstone");
    assert!(t.deleted >= before && t.deleted <= SystemTime::now() + Duration::from_secs(1));
    assert!(
        !svc.purge_deleted(*a.store_path.digest(), SystemTime::UNIX_EPOCH).await.unwrap(),
        "deleted after the bound"
    );
    assert!(svc.purge_deleted(*a.store_path.digest(), later()).await.unwrap());
    assert!(!svc.list_deleted().try_collect::<Vec<_>>().await.unwrap().iter().any(|t| t.info == a));
    // registered again after a delete: no tombstone
    svc.delete(*b.store_path.digest()).await.unwrap();
    svc.put(b.clone()).await.unwrap();
    assert!(!svc.list_deleted().try_collect::<Vec<_>>().await.unwrap().iter().any(|t| t.info == b));
    assert_eq!(svc.get(*b.store_path.digest()).await.unwrap(), Some(b));
}

/// A watcher sees every registration and unregistration from when its
/// watch returned, in order; a confirming watcher holds each put up until
/// it has confirmed the change, and nothing once it is gone.
async fn path_info_watch_suite(svc: Arc<dyn PathInfoService>) {
    use futures::StreamExt;
    use std::time::Duration;
    let before = info(2000);
    svc.put(before.clone()).await.unwrap();
    let mut w = svc.watch(false).await.unwrap();
    assert!(w.applied.is_none());
    let (a, b) = (info(2001), info(2002));
    svc.put(a.clone()).await.unwrap();
    svc.delete(*a.store_path.digest()).await.unwrap();
    svc.delete(*a.store_path.digest()).await.unwrap(); // not there: no change
    svc.put(b.clone()).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let c = tokio::time::timeout(Duration::from_secs(5), w.changes.next())
            .await
            .expect("a change within 5 s")
            .expect("the watch goes on")
            .unwrap();
        seen.push((c.store_path, c.deleted, c.sequence));
    }
    assert_eq!(
        seen.iter().map(|(p, d, _)| (p.clone(), *d)).collect::<Vec<_>>(),
        vec![(a.store_path.clone(), false), (a.store_path, true), (b.store_path, false)]
    );
    assert!(seen.windows(2).all(|s| s[0].2 < s[1].2), "sequence numbers do not increase: {seen:?}");

    let mut confirming = svc.watch(true).await.unwrap();
    let applied = confirming.applied.clone().expect("a confirming watch");
    let c = info(2003);
    let put = tokio::spawn({
        let (svc, c) = (svc.clone(), c.clone());
        async move { svc.put(c).await }
    });
    let change = tokio::time::timeout(Duration::from_secs(5), confirming.changes.next())
        .await
        .expect("a change within 5 s")
        .expect("the watch goes on")
        .unwrap();
    assert_eq!(change.store_path, c.store_path);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!put.is_finished(), "the put returned before the watcher confirmed its change");
    applied.confirm(change.sequence);
    tokio::time::timeout(Duration::from_secs(3), put).await.expect("the put returns once confirmed").unwrap().unwrap();
    // the watcher gone, nothing waits for it
    drop((confirming, applied));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    svc.put(info(2004)).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2), "a put waited {:?} for a watcher gone", started.elapsed());
}

// ---------- backends ----------

struct Served {
    _dir: tempfile::TempDir,
    addr: String,
    _task: tokio::task::JoinHandle<()>,
}

/// A store daemon's servers (castore and path infos) over `infos`, on a
/// fresh unix socket.
fn serve(infos: Arc<dyn PathInfoService>, castore: CastoreServices) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("store.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let task = tokio::spawn(async move {
        let (b, d) = (castore.blobs, castore.dirs);
        snix_castore::grpc_server::castore_router(b.clone(), d.clone())
            .add_service(snix_store::grpc_server::path_info_server(infos, b, d))
            .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener))
            .await
            .unwrap()
    });
    Served { _dir: dir, addr: format!("grpc+unix://{}", socket.display()), _task: task }
}

/// Every backend, by its address.
fn backends(tmp: &std::path::Path) -> Vec<(&'static str, String)> {
    vec![
        ("memory", "memory://".into()),
        ("sled (temporary)", "sled://".into()),
        ("sled", format!("sled://{}", tmp.join("pathinfo").display())),
    ]
}

fn castore() -> CastoreServices {
    CastoreServices::from_addrs("memory://", "memory://").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_info_conformance_local_backends() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, addr) in backends(tmp.path()) {
        eprintln!("path info suite: {name}");
        let svc = path_info_service(&addr).unwrap();
        path_info_suite(svc.clone(), &*castore().blobs).await;
        path_info_delete_suite(svc.clone()).await;
        path_info_watch_suite(svc).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_info_conformance_grpc_client_on_each_backend() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, addr) in backends(tmp.path()) {
        eprintln!("path info suite: grpc → {name}");
        let c = castore();
        let served = serve(path_info_service(&addr).unwrap(), c.clone());
        let client = path_info_service(&served.addr).unwrap();
        path_info_suite(client.clone(), &*c.blobs).await;
        path_info_delete_suite(client.clone()).await;
        path_info_watch_suite(client).await;
    }
}

/// What sled stored is there after it is opened again (put is durable
/// before it returns).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_keeps_path_infos_across_reopening() {
    let tmp = tempfile::tempdir().unwrap();
    let addr = format!("sled://{}", tmp.path().join("pathinfo").display());
    let full = full_info(&*castore().blobs).await;
    {
        let svc = path_info_service(&addr).unwrap();
        svc.put(full.clone()).await.unwrap();
        svc.put(info(5)).await.unwrap();
    }
    // sled lets go of its lock in a background thread after the drop
    let t = std::time::Instant::now();
    let svc = loop {
        match path_info_service(&addr) {
            Ok(s) => break s,
            Err(e) if t.elapsed() < std::time::Duration::from_secs(10) => {
                eprintln!("reopening: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(svc.get(*full.store_path.digest()).await.unwrap(), Some(full));
    assert_eq!(all(&*svc).await.len(), 2);
}

/// The server refuses a path info whose content is not in its castore, and
/// the client reports it as such; nothing is registered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_put_refuses_content_missing_from_the_castore() {
    let served = serve(path_info_service("memory://").unwrap(), castore());
    let client = path_info_service(&served.addr).unwrap();
    let elsewhere = castore();
    let full = full_info(&*elsewhere.blobs).await;
    let e = client.put(full.clone()).await.unwrap_err();
    let status = tonic::Status::from(e);
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("its content is not in the castore"), "{status:?}");
    assert!(client.get(*full.store_path.digest()).await.unwrap().is_none());
}

/// Addresses the composition does not know are refused, with the choices.
#[test]
fn unknown_addresses_are_refused_with_the_choices() {
    for addr in ["postgres://db/x", "not a url", "sled://relative-host/x"] {
        let e = path_info_service(addr).err().unwrap_or_else(|| panic!("{addr} accepted")).to_string();
        assert!(e.contains(addr) || e.contains("sled:///"), "{addr}: {e}");
    }
}

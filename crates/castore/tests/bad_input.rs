//! Bad input over gRPC: each gets a clear status, and the daemon keeps
//! serving other clients throughout.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use bytes::Bytes;
use snix_castore::blobservice::{self, BlobService, ObjectStoreFileBlobService};
use snix_castore::composition;
use snix_castore::directoryservice::{DirectoryService, SledDirectoryService};
use snix_castore::proto::blob_service_client::BlobServiceClient;
use snix_castore::proto::directory_service_client::DirectoryServiceClient;
use snix_castore::proto::{self, get_directory_request::ByWhat};
use snix_castore::{B3Digest, Directory, Node};
use tonic::Code;

struct Daemon {
    dir: tempfile::TempDir,
    socket: std::path::PathBuf,
    blobs: Arc<ObjectStoreFileBlobService>,
    dirs: Arc<SledDirectoryService>,
}

fn start() -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("castore.sock");
    let blobs = Arc::new(ObjectStoreFileBlobService::open(&dir.path().join("blobs")).unwrap());
    let dirs = Arc::new(SledDirectoryService::open(&dir.path().join("dirs")).unwrap());
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let (b, d): (Arc<dyn BlobService>, Arc<dyn DirectoryService>) = (blobs.clone(), dirs.clone());
    tokio::spawn(async move {
        snix_castore::grpc_server::castore_router(b, d)
            .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener))
            .await
            .unwrap()
    });
    Daemon { dir, socket, blobs, dirs }
}

impl Daemon {
    fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(format!("unix://{}", self.socket.display())).unwrap().connect_lazy()
    }
    fn addr(&self) -> String {
        format!("grpc+unix://{}", self.socket.display())
    }
    /// A healthy client still gets served.
    async fn still_serves(&self) {
        let client = composition::blob_service(&self.addr()).unwrap();
        let d = blobservice::put_bytes(&*client, b"still here").await.unwrap();
        assert_eq!(blobservice::read_to_vec(&*client, &d).await.unwrap().unwrap(), b"still here");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_digest_lengths_are_invalid_argument() {
    let d = start();
    let mut blobs = BlobServiceClient::new(d.channel());
    let mut dirs = DirectoryServiceClient::new(d.channel());
    for len in [0usize, 20, 31, 33, 64] {
        let digest = Bytes::from(vec![7u8; len]);
        let e = blobs
            .stat(proto::StatBlobRequest { digest: digest.clone(), send_chunks: true, send_bao: false })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e}");
        let e = blobs.read(proto::ReadBlobRequest { digest: digest.clone(), ..Default::default() }).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e}");
        let e = dirs
            .get(proto::GetDirectoryRequest { by_what: Some(ByWhat::Digest(digest)), recursive: true })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    }
    let e = dirs.get(proto::GetDirectoryRequest { by_what: None, recursive: false }).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    // a range longer than a server answers from memory
    let stored = blobservice::put_bytes(&*composition::blob_service(&d.addr()).unwrap(), b"ranged").await.unwrap();
    let req = proto::ReadBlobRequest { digest: stored.into(), offset: 0, length: u64::MAX };
    let e = blobs.read(req).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    // a well-formed but absent digest is NotFound
    let e = blobs
        .read(proto::ReadBlobRequest { digest: B3Digest::of(b"x").into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    d.still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_directories_are_invalid_argument_and_not_stored() {
    let d = start();
    let mut dirs = DirectoryServiceClient::new(d.channel());
    let file = |name: &'static [u8]| proto::FileEntry {
        name: Bytes::from_static(name),
        digest: B3Digest::of(b"f").into(),
        size: 1,
        executable: false,
    };
    let good = proto::Directory { files: vec![file(b"ok")], ..Default::default() };
    let cases: Vec<(&str, Vec<proto::Directory>)> = vec![
        ("unsorted", vec![proto::Directory { files: vec![file(b"b"), file(b"a")], ..Default::default() }]),
        ("duplicate", vec![proto::Directory { files: vec![file(b"a"), file(b"a")], ..Default::default() }]),
        ("dot name", vec![proto::Directory { files: vec![file(b"..")], ..Default::default() }]),
        ("slash name", vec![proto::Directory { files: vec![file(b"a/b")], ..Default::default() }]),
        (
            "short digest",
            vec![proto::Directory {
                files: vec![proto::FileEntry { digest: Bytes::from_static(&[1; 5]), ..file(b"x") }],
                ..Default::default()
            }],
        ),
        (
            "empty symlink target",
            vec![proto::Directory {
                symlinks: vec![proto::SymlinkEntry { name: "l".into(), target: Bytes::new() }],
                ..Default::default()
            }],
        ),
        (
            "unknown child",
            vec![
                good.clone(),
                proto::Directory {
                    directories: vec![proto::DirectoryEntry {
                        name: "c".into(),
                        digest: B3Digest::of(b"nope").into(),
                        size: 1,
                    }],
                    ..Default::default()
                },
            ],
        ),
        ("empty stream", vec![]),
    ];
    for (what, batch) in cases {
        let e = dirs.put(tokio_stream::iter(batch)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{what}: {e}");
    }
    let good_digest = Directory::try_from(good).unwrap().digest();
    assert!(d.dirs.get(&good_digest).await.unwrap().is_none(), "nothing of a rejected batch is stored");
    d.still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_put_cut_off_midway_stores_nothing() {
    let d = start();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let digest = B3Digest::of(&data);
    // a client on its own connection sends part of a blob and then vanishes
    let channel = tonic::transport::Endpoint::from_shared(format!("unix://{}", d.socket.display()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut client = BlobServiceClient::new(channel);
    let call = tokio::spawn(async move { client.put(tokio_stream::wrappers::ReceiverStream::new(rx)).await });
    for piece in data[..1_000_000].chunks(100_000) {
        tx.send(proto::BlobChunk { data: Bytes::copy_from_slice(piece) }).await.unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    call.abort(); // the connection goes with the client
    let _ = call.await;
    std::mem::forget(tx); // never end the stream cleanly
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!d.blobs.has(&digest).await.unwrap());
    // nothing visible under blobs/ either, and no chunk of the whole blob
    assert!(!d.blobs.has(&B3Digest::of(&data[..1_000_000])).await.unwrap());
    d.still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_chunk_is_detected_and_never_served() {
    let d = start();
    let client = composition::blob_service(&d.addr()).unwrap();
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let digest = blobservice::put_bytes(&*client, &data).await.unwrap();
    let chunks = client.chunks(&digest).await.unwrap().unwrap();
    assert!(chunks.len() > 1);
    let victim = &chunks[1];
    let hex = victim.digest.to_hex();
    let path = d.dir.path().join("blobs/chunks").join(&hex[..2]).join(&hex);
    let mut plain = blobservice::read_to_vec(&*client, &victim.digest).await.unwrap().unwrap();
    let stored = std::fs::read(&path).unwrap();

    // A chunk of several segments (`S`, lengths, chaining values, then the
    // segments): a flipped byte in segment 1 is caught by a read of a range
    // in it, and by a whole read; a range in segment 0 is still served, and
    // checked on its own against the chunk's digest.
    assert_eq!(stored[0], b'S', "a chunk longer than 64 KiB is stored in segments");
    let n = (victim.size as usize).div_ceil(65_536);
    let seg0 = u32::from_le_bytes(stored[5..9].try_into().unwrap()) & !(1 << 31);
    let mut bad = stored.clone();
    bad[5 + 36 * n + seg0 as usize + 10] ^= 0xff;
    std::fs::write(&path, &bad).unwrap();
    let e = client.read_range(&victim.digest, 65_536 + 5, 100).await.unwrap_err();
    assert!(e.to_string().contains("corrupt"), "{e}");
    assert!(blobservice::read_to_vec(&*client, &victim.digest).await.unwrap_err().to_string().contains("corrupt"));
    assert_eq!(&client.read_range(&victim.digest, 5, 100).await.unwrap().unwrap()[..], &plain[5..105]);
    // a flipped chaining value: no range of the chunk is served
    let mut bad = stored.clone();
    bad[5 + 4 * n + 3] ^= 0xff;
    std::fs::write(&path, &bad).unwrap();
    let e = client.read_range(&victim.digest, 5, 100).await.unwrap_err();
    assert!(e.to_string().contains("corrupt"), "{e}");

    // the same chunk rewritten in the one-piece form with a byte flipped
    // (`R` + raw bytes: well-formed, wrong contents)
    plain[10] ^= 0xff;
    let mut rewritten = vec![b'R'];
    rewritten.extend_from_slice(&plain);
    std::fs::write(&path, rewritten).unwrap();

    let e = blobservice::read_to_vec(&*client, &digest).await.unwrap_err();
    assert!(e.to_string().contains("corrupt"), "{e}");
    let e = blobservice::read_to_vec(&*client, &victim.digest).await.unwrap_err();
    assert!(e.to_string().contains("corrupt"), "{e}");
    // over the raw API the status is DataLoss
    let mut raw = BlobServiceClient::new(d.channel());
    let mut s = raw
        .read(proto::ReadBlobRequest { digest: victim.digest.into(), ..Default::default() })
        .await
        .map(|r| r.into_inner());
    let status = match &mut s {
        Err(e) => e.clone(),
        Ok(stream) => loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("corrupted chunk was served"),
                Err(e) => break e,
            }
        },
    };
    assert_eq!(status.code(), Code::DataLoss, "{status}");
    // garbage instead of a zstd frame is caught too
    std::fs::write(&path, b"Znot zstd at all").unwrap();
    assert!(blobservice::read_to_vec(&*client, &victim.digest).await.is_err());
    // other blobs are unaffected
    d.still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_directory_corruption_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("dirs");
    let mut dir = Directory::new();
    dir.add(Bytes::from_static(b"f"), Node::File { digest: B3Digest::of(b"f"), size: 1, executable: false }).unwrap();
    let digest = {
        let svc = SledDirectoryService::open(&path).unwrap();
        svc.put_batch(vec![dir]).await.unwrap()
    };
    {
        // change the stored bytes underneath
        let db = sled::open(&path).unwrap();
        let mut raw = db.get(digest.as_bytes()).unwrap().unwrap().to_vec();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        db.insert(digest.as_bytes(), raw).unwrap();
        db.flush().unwrap();
    }
    let svc = composition::directory_service(&format!("sled://{}", path.display())).unwrap();
    let e = svc.get(&digest).await.unwrap_err();
    assert!(matches!(e, snix_castore::Error::Corrupt(_)), "{e}");
}

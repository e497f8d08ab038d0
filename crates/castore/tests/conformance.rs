//! One conformance suite, run against every backend, and against the gRPC
//! client talking to a server on each backend.
#![allow(clippy::unwrap_used)]

use std::io::SeekFrom;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use snix_castore::blobservice::{self, BlobService};
use snix_castore::composition;
use snix_castore::directoryservice::{self, DirectoryService};
use snix_castore::{B3Digest, Directory, Error, Node};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

// ---------- blobs ----------

async fn blob_suite(svc: Arc<dyn BlobService>) {
    // missing
    let missing = B3Digest::of(b"never stored");
    assert!(!svc.has(&missing).await.unwrap());
    assert!(svc.chunks(&missing).await.unwrap().is_none());
    assert!(svc.open_read(&missing).await.unwrap().is_none());
    assert!(svc.read_unchunked(&missing).await.unwrap().is_none());

    // small and empty blobs
    for data in [&b"hello castore"[..], b""] {
        let d = blobservice::put_bytes(&*svc, data).await.unwrap();
        assert_eq!(d, B3Digest::of(data));
        assert!(svc.has(&d).await.unwrap());
        assert!(svc.chunks(&d).await.unwrap().is_some());
        assert_eq!(blobservice::read_to_vec(&*svc, &d).await.unwrap().unwrap(), data);
        // when a backend hands out a blob in one piece, it is the blob
        if let Some(whole) = svc.read_unchunked(&d).await.unwrap() {
            assert_eq!(&whole[..], data);
        }
    }

    // a large blob, written in odd-sized pieces
    let big = pseudo_random(3, 5 * 1024 * 1024 + 17);
    let mut w = svc.open_write().await;
    for piece in big.chunks(100_003) {
        w.write_all(piece).await.unwrap();
    }
    let d = w.close().await.unwrap();
    assert_eq!(d, B3Digest::of(&big));
    assert_eq!(blobservice::read_to_vec(&*svc, &d).await.unwrap().unwrap(), big);
    if let Some(whole) = svc.read_unchunked(&d).await.unwrap() {
        assert_eq!(&whole[..], &big[..]);
    }

    // chunk list: sizes add up, every chunk is itself a readable blob
    let chunks = svc.chunks(&d).await.unwrap().unwrap();
    if !chunks.is_empty() {
        assert_eq!(chunks.iter().map(|c| c.size).sum::<u64>(), big.len() as u64);
        let mut off = 0usize;
        for c in &chunks {
            let data = blobservice::read_to_vec(&*svc, &c.digest).await.unwrap().expect("chunk readable as a blob");
            assert_eq!(data, &big[off..off + c.size as usize]);
            off += c.size as usize;
        }
    }

    // seeking
    let mut r = svc.open_read(&d).await.unwrap().unwrap();
    for pos in [3_000_000u64, 17, 5 * 1024 * 1024 - 983, 0, 1_048_575] {
        r.seek(SeekFrom::Start(pos)).await.unwrap();
        let mut buf = vec![0u8; 1000];
        r.read_exact(&mut buf).await.unwrap();
        assert_eq!(buf, &big[pos as usize..pos as usize + 1000], "at {pos}");
    }
    let end = r.seek(SeekFrom::End(-10)).await.unwrap();
    assert_eq!(end, big.len() as u64 - 10);
    let mut tail = Vec::new();
    r.read_to_end(&mut tail).await.unwrap();
    assert_eq!(tail, &big[big.len() - 10..]);
    assert!(r.seek(SeekFrom::Current(-(big.len() as i64) - 1)).await.is_err());

    // ranges, of the blob and of each of its chunks, on compressible and
    // incompressible bytes, across segment (64 KiB) and chunk bounds
    let mut mixed: Vec<u8> =
        (0..2_500_000u32).flat_map(|i| format!("line {i} of some text\n").into_bytes()).take(2_500_000).collect();
    mixed.extend(pseudo_random(13, 1_500_000));
    let m = blobservice::put_bytes(&*svc, &mixed).await.unwrap();
    let slice = |data: &[u8], off: u64, len: u64| {
        let (s, e) = ((off as usize).min(data.len()), (off.saturating_add(len) as usize).min(data.len()));
        data[s..e].to_vec()
    };
    let seg = 65_536u64;
    for (off, len) in
        [(0, 1), (0, 4096), (seg - 1, 2), (seg, seg), (3 * seg + 5, 2 * seg), (2_499_990, 20), (3_999_000, 5000)]
    {
        let got = svc.read_range(&m, off, len).await.unwrap().unwrap();
        assert_eq!(&got[..], &slice(&mixed, off, len)[..], "blob range {off}+{len}");
    }
    assert!(svc.read_range(&m, 4_000_001, 10).await.unwrap().unwrap().is_empty(), "past the end");
    assert!(svc.read_range(&missing, 0, 10).await.unwrap().is_none());
    let mut start = 0usize;
    for c in svc.chunks(&m).await.unwrap().unwrap() {
        let chunk = &mixed[start..start + c.size as usize];
        for (off, len) in [(0, 4096), (seg - 100, 200), (c.size / 2, 70_000), (c.size - 1, 4096), (0, c.size)] {
            let got = svc.read_range(&c.digest, off, len).await.unwrap().unwrap();
            assert_eq!(&got[..], &slice(chunk, off, len)[..], "chunk at {start}, range {off}+{len}");
        }
        start += c.size as usize;
    }

    // a writer dropped before close leaves nothing behind
    let unfinished = pseudo_random(9, 300_000);
    let mut w = svc.open_write().await;
    w.write_all(&unfinished).await.unwrap();
    drop(w);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(!svc.has(&B3Digest::of(&unfinished)).await.unwrap());

    // concurrent puts of the same blob
    let same = Arc::new(pseudo_random(11, 700_000));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let svc = svc.clone();
            let same = same.clone();
            tokio::spawn(async move { blobservice::put_bytes(&*svc, &same).await.unwrap() })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), B3Digest::of(&same));
    }
    assert_eq!(blobservice::read_to_vec(&*svc, &B3Digest::of(&same)).await.unwrap().unwrap(), *same);
}

/// Listing and deleting, as garbage collection uses them: a delete spares
/// what was written at or after its time bound, and writing again counts.
async fn blob_gc_suite(svc: Arc<dyn BlobService>) {
    use std::time::{Duration, SystemTime};
    let later = || SystemTime::now() + Duration::from_secs(3600);
    let small = blobservice::put_bytes(&*svc, b"gc: a small blob").await.unwrap();
    let big_data = pseudo_random(21, 3 * 1024 * 1024);
    let big = blobservice::put_bytes(&*svc, &big_data).await.unwrap();
    let listed: Vec<_> = svc.list().try_collect().await.unwrap();
    let find = |d: &B3Digest| listed.iter().find(|b| b.digest == *d).cloned();
    let s = find(&small).expect("the small blob is listed");
    assert!(s.is_chunk, "a one-chunk blob is its chunk");
    assert!(s.written <= SystemTime::now() && s.written > SystemTime::now() - Duration::from_secs(600));
    let big_chunks = svc.chunks(&big).await.unwrap().unwrap();
    if big_chunks.is_empty() {
        assert!(find(&big).is_some(), "a blob stored whole is listed");
    } else {
        assert!(!find(&big).expect("its chunk list is listed").is_chunk);
        for c in &big_chunks {
            assert!(find(&c.digest).expect("each chunk is listed").is_chunk);
        }
    }
    let mut digests: Vec<_> = listed.iter().map(|b| b.digest).collect();
    digests.sort();
    digests.dedup();
    assert_eq!(digests.len(), listed.len(), "each object once");

    // spared: written after the bound
    assert_eq!(svc.delete(&small, SystemTime::UNIX_EPOCH).await.unwrap(), None);
    assert!(svc.has(&small).await.unwrap());
    // written again after a cutoff: spared by it
    let cutoff = SystemTime::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(blobservice::put_bytes(&*svc, b"gc: a small blob").await.unwrap(), small);
    assert_eq!(svc.delete(&small, cutoff).await.unwrap(), None, "a rewrite refreshes");
    // gone
    assert!(svc.delete(&small, later()).await.unwrap().is_some());
    assert!(!svc.has(&small).await.unwrap());
    assert_eq!(svc.delete(&small, later()).await.unwrap(), None, "nothing left to delete");
    // a chunked blob: its list goes, its chunks are separate objects
    assert!(svc.delete(&big, later()).await.unwrap().is_some());
    assert!(!svc.has(&big).await.unwrap());
    for c in &big_chunks {
        assert!(svc.has(&c.digest).await.unwrap(), "chunks stay until deleted themselves");
        assert!(svc.delete(&c.digest, later()).await.unwrap().is_some());
    }
    // and it can be stored again
    assert_eq!(blobservice::put_bytes(&*svc, &big_data).await.unwrap(), big);
    assert_eq!(blobservice::read_to_vec(&*svc, &big).await.unwrap().unwrap(), big_data);
}

// ---------- directories ----------

fn file(data: &[u8]) -> Node {
    Node::File { digest: B3Digest::of(data), size: data.len() as u64, executable: false }
}

fn dir_with(entries: Vec<(&str, Node)>) -> Directory {
    let mut d = Directory::new();
    for (n, node) in entries {
        d.add(Bytes::copy_from_slice(n.as_bytes()), node).unwrap();
    }
    d
}

fn dir_node(d: &Directory) -> Node {
    Node::Directory { digest: d.digest(), size: d.size() }
}

async fn directory_suite(svc: Arc<dyn DirectoryService>) {
    let leaf = dir_with(vec![("a", file(b"a")), ("l", Node::Symlink { target: Bytes::from_static(b"a") })]);
    assert!(svc.get(&leaf.digest()).await.unwrap().is_none());
    assert_eq!(svc.put_batch(vec![leaf.clone()]).await.unwrap(), leaf.digest());
    assert_eq!(svc.get(&leaf.digest()).await.unwrap().unwrap(), leaf);

    // a diamond: root → {x, y}, x → c, y → c; c must come once, after its parents
    let c = dir_with(vec![("deep", file(b"deep"))]);
    let x = dir_with(vec![("c", dir_node(&c)), ("xf", file(b"x"))]);
    let y = dir_with(vec![("c", dir_node(&c))]);
    let root = dir_with(vec![("x", dir_node(&x)), ("y", dir_node(&y)), ("z", file(b"z"))]);
    let got = svc.put_batch(vec![c.clone(), x.clone(), y.clone(), root.clone()]).await.unwrap();
    assert_eq!(got, root.digest());
    let all: Vec<Directory> = svc.get_recursive(&root.digest()).try_collect().await.unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(all[0], root);
    assert_eq!(all.iter().filter(|d| **d == c).count(), 1);
    let pos = |d: &Directory| all.iter().position(|e| e == d).unwrap();
    assert!(pos(&c) > pos(&x) && pos(&c) > pos(&y));

    // a batch may build on what is already stored
    let above = dir_with(vec![("old", dir_node(&leaf))]);
    assert_eq!(svc.put_batch(vec![above.clone()]).await.unwrap(), above.digest());

    // a directory reachable at two depths must still come after everything that refers to it
    let p = dir_with(vec![("d", dir_node(&c))]);
    let a = dir_with(vec![("p", dir_node(&p))]);
    let top = dir_with(vec![("a", dir_node(&a)), ("d", dir_node(&c))]);
    svc.put_batch(vec![c.clone(), p, a, top.clone()]).await.unwrap();
    let tree: Vec<Directory> = svc.get_recursive(&top.digest()).try_collect().await.unwrap();
    let reordered = directoryservice::leaves_first(tree);
    assert_eq!(reordered.last().unwrap(), &top);
    let fresh = directoryservice::MemoryDirectoryService::default();
    fresh.put_batch(reordered).await.expect("leaves_first gives a valid batch");

    // missing root
    let missing = B3Digest::of(b"no such directory");
    let e = svc.get_recursive(&missing).try_collect::<Vec<_>>().await.unwrap_err();
    assert!(matches!(e, Error::NotFound(_)), "{e}");

    // invalid batches are rejected whole
    let orphan_leaf = dir_with(vec![("o", file(b"orphan"))]);
    let unknown = dir_with(vec![("u", Node::Directory { digest: B3Digest::of(b"unknown"), size: 1 })]);
    let e = svc.put_batch(vec![orphan_leaf.clone(), unknown.clone()]).await.unwrap_err();
    assert!(matches!(e, Error::InvalidRequest(_)), "{e}");
    assert!(svc.get(&orphan_leaf.digest()).await.unwrap().is_none(), "nothing of a rejected batch is stored");

    // out of order: parent before child
    let child = dir_with(vec![("k", file(b"k"))]);
    let parent = dir_with(vec![("child", dir_node(&child))]);
    let e = svc.put_batch(vec![parent.clone(), child.clone()]).await.unwrap_err();
    assert!(matches!(e, Error::InvalidRequest(_)), "{e}");
    assert!(svc.get(&child.digest()).await.unwrap().is_none());

    // understated size rejected, overstated tolerated
    let small = dir_with(vec![("child", Node::Directory { digest: child.digest(), size: 0 })]);
    let e = svc.put_batch(vec![child.clone(), small]).await.unwrap_err();
    assert!(matches!(e, Error::InvalidRequest(_)), "{e}");
    let big = dir_with(vec![("child", Node::Directory { digest: child.digest(), size: 99 })]);
    svc.put_batch(vec![child.clone(), big]).await.unwrap();

    // disconnected: a directory the root does not reach
    let stray = dir_with(vec![("s", file(b"stray"))]);
    let lone_root = dir_with(vec![("f", file(b"f"))]);
    let e = svc.put_batch(vec![stray.clone(), lone_root]).await.unwrap_err();
    assert!(matches!(e, Error::InvalidRequest(_)), "{e}");
    assert!(svc.get(&stray.digest()).await.unwrap().is_none());
}

/// Listing and deleting directories, as garbage collection uses them.
async fn directory_gc_suite(svc: Arc<dyn DirectoryService>) {
    use std::time::{Duration, SystemTime};
    let later = || SystemTime::now() + Duration::from_secs(3600);
    let leaf = dir_with(vec![("gc-file", file(b"gc leaf"))]);
    let root = dir_with(vec![("leaf", dir_node(&leaf)), ("x", file(b"x"))]);
    svc.put_batch(vec![leaf.clone(), root.clone()]).await.unwrap();
    let listed: Vec<_> = svc.list().try_collect().await.unwrap();
    for d in [&leaf, &root] {
        let stored = listed.iter().find(|s| s.digest == d.digest()).expect("listed");
        assert!(stored.written > SystemTime::now() - Duration::from_secs(600));
    }
    assert!(!svc.delete(&root.digest(), SystemTime::UNIX_EPOCH).await.unwrap(), "written after the bound");
    // a put that builds on a stored directory refreshes it
    let cutoff = SystemTime::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let parent = dir_with(vec![("again", dir_node(&leaf))]);
    svc.put_batch(vec![parent.clone()]).await.unwrap();
    assert!(!svc.delete(&leaf.digest(), cutoff).await.unwrap(), "referred to by a put after the cutoff");
    // gone, and only that one
    assert!(svc.delete(&root.digest(), later()).await.unwrap());
    assert!(svc.get(&root.digest()).await.unwrap().is_none());
    assert!(svc.get(&leaf.digest()).await.unwrap().is_some());
    assert!(!svc.delete(&root.digest(), later()).await.unwrap(), "nothing left to delete");
    assert!(!svc.list().try_collect::<Vec<_>>().await.unwrap().iter().any(|s| s.digest == root.digest()));
}

// ---------- backends ----------

struct Served {
    _dir: tempfile::TempDir,
    socket: std::path::PathBuf,
    _task: tokio::task::JoinHandle<()>,
}

/// Serves `blob` and `dirs` on a fresh unix socket.
fn serve(blob: Arc<dyn BlobService>, dirs: Arc<dyn DirectoryService>) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("castore.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let task = tokio::spawn(async move {
        snix_castore::grpc_server::castore_router(blob, dirs)
            .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener))
            .await
            .unwrap()
    });
    Served { _dir: dir, socket, _task: task }
}

/// A backend pair, by name.
type Backends = Vec<(&'static str, Arc<dyn BlobService>, Arc<dyn DirectoryService>)>;

fn backends(tmp: &std::path::Path) -> Backends {
    let obj = format!("objectstore+file://{}", tmp.join("blobs").display());
    let sled = format!("sled://{}", tmp.join("dirs").display());
    vec![
        (
            "memory",
            composition::blob_service("memory://").unwrap(),
            composition::directory_service("memory://").unwrap(),
        ),
        ("file+sled", composition::blob_service(&obj).unwrap(), composition::directory_service(&sled).unwrap()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_conformance_local_backends() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, blob, _) in backends(tmp.path()) {
        eprintln!("blob suite: {name}");
        blob_suite(blob.clone()).await;
        blob_gc_suite(blob).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_conformance_grpc_client_on_each_backend() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, blob, dirs) in backends(tmp.path()) {
        eprintln!("blob suite: grpc → {name}");
        let served = serve(blob, dirs);
        let client = composition::blob_service(&format!("grpc+unix://{}", served.socket.display())).unwrap();
        blob_suite(client.clone()).await;
        blob_gc_suite(client).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_conformance_local_backends() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, _, dirs) in backends(tmp.path()) {
        eprintln!("directory suite: {name}");
        directory_suite(dirs.clone()).await;
        directory_gc_suite(dirs).await;
    }
    directory_suite(composition::directory_service("sled://").unwrap()).await;
    directory_gc_suite(composition::directory_service("sled://").unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_conformance_grpc_client_on_each_backend() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, blob, dirs) in backends(tmp.path()) {
        eprintln!("directory suite: grpc → {name}");
        let served = serve(blob, dirs);
        let client = composition::directory_service(&format!("grpc+unix://{}", served.socket.display())).unwrap();
        directory_suite(client.clone()).await;
        directory_gc_suite(client).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn combinators_fill_near_on_miss() {
    let far_b = blobservice::MemoryBlobService::default();
    let near_b = blobservice::MemoryBlobService::default();
    let data = pseudo_random(5, 100_000);
    let d = blobservice::put_bytes(&far_b, &data).await.unwrap();
    let comb = blobservice::CombinedBlobService::new(near_b.clone(), far_b.clone());
    assert!(!near_b.has(&d).await.unwrap());
    assert_eq!(blobservice::read_to_vec(&comb, &d).await.unwrap().unwrap(), data);
    assert!(near_b.has(&d).await.unwrap(), "a read miss fills the near side");
    blob_suite(Arc::new(comb)).await;

    let far_d = directoryservice::MemoryDirectoryService::default();
    let near_d = directoryservice::MemoryDirectoryService::default();
    let leaf = dir_with(vec![("f", file(b"f"))]);
    let root = dir_with(vec![("leaf", dir_node(&leaf))]);
    far_d.put_batch(vec![leaf.clone(), root.clone()]).await.unwrap();
    let comb = directoryservice::CombinedDirectoryService::new(near_d.clone(), far_d.clone());
    assert_eq!(comb.get(&root.digest()).await.unwrap().unwrap(), root);
    assert!(near_d.get(&leaf.digest()).await.unwrap().is_some(), "the whole tree was fetched near");
    directory_suite(Arc::new(comb)).await;
}

/// The file store hands a chunk (and a blob that is one chunk) out whole,
/// so the gRPC server sends it without copying; a chunked blob is read
/// through `open_read`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_store_hands_out_single_chunks_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let svc = composition::blob_service(&format!("objectstore+file://{}", tmp.path().display())).unwrap();
    let small = blobservice::put_bytes(&*svc, b"one chunk").await.unwrap();
    assert_eq!(&svc.read_unchunked(&small).await.unwrap().unwrap()[..], b"one chunk");
    let big = pseudo_random(5, 3 * 1024 * 1024);
    let d = blobservice::put_bytes(&*svc, &big).await.unwrap();
    assert!(svc.read_unchunked(&d).await.unwrap().is_none(), "a chunked blob is not one piece");
    let chunks = svc.chunks(&d).await.unwrap().unwrap();
    assert!(chunks.len() > 1);
    let first = svc.read_unchunked(&chunks[0].digest).await.unwrap().unwrap();
    assert_eq!(&first[..], &big[..chunks[0].size as usize]);
}

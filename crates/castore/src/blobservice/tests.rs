//! ChunkedReader: what it fetches for sequential, random and slightly
//! out-of-order access.

use std::collections::HashMap;
use std::io::SeekFrom;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::FutureExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{ChunkFetcher, ChunkMeta, ChunkedReader, RangeFetcher};
use crate::digest::B3Digest;

struct Fixture {
    data: Vec<u8>,
    chunks: Vec<ChunkMeta>,
    fetched: Arc<Mutex<Vec<B3Digest>>>,
    fetcher: ChunkFetcher,
}

fn fixture(n: usize, size: usize) -> Fixture {
    let data: Vec<u8> = (0..n * size).map(|i| (i * 7 % 251) as u8).collect();
    let mut store = HashMap::new();
    let mut chunks = Vec::new();
    for c in data.chunks(size) {
        let d = B3Digest::of(c);
        store.insert(d, Bytes::copy_from_slice(c));
        chunks.push(ChunkMeta { digest: d, size: c.len() as u64 });
    }
    let fetched = Arc::new(Mutex::new(Vec::new()));
    let (store, log) = (Arc::new(store), fetched.clone());
    let fetcher: ChunkFetcher = Arc::new(move |d| {
        log.lock().unwrap().push(d);
        let b = store.get(&d).cloned();
        async move { b.ok_or_else(|| std::io::Error::other("missing")) }.boxed()
    });
    Fixture { data, chunks, fetched, fetcher }
}

#[tokio::test]
async fn sequential_read_reads_ahead_and_fetches_each_chunk_once() {
    let f = fixture(20, 1000);
    let mut r = ChunkedReader::new(f.chunks.clone(), f.fetcher.clone(), 4);
    let mut out = Vec::new();
    r.read_to_end(&mut out).await.unwrap();
    assert_eq!(out, f.data);
    let fetched = f.fetched.lock().unwrap().clone();
    assert_eq!(fetched.len(), 20, "each chunk fetched once");
}

#[tokio::test]
async fn random_reads_fetch_only_their_chunk() {
    let f = fixture(50, 1000);
    let mut r = ChunkedReader::new(f.chunks.clone(), f.fetcher.clone(), 8);
    let mut buf = [0u8; 100];
    for &pos in &[30_500u64, 7_200, 44_000, 12_900] {
        r.seek(SeekFrom::Start(pos)).await.unwrap();
        r.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf[..], &f.data[pos as usize..pos as usize + 100]);
    }
    // give aborted or stray fetch tasks a moment to show up
    tokio::task::yield_now().await;
    let fetched = f.fetched.lock().unwrap().len();
    assert_eq!(fetched, 4, "no readahead on random access");
}

#[tokio::test]
async fn going_slightly_back_does_not_refetch() {
    let f = fixture(10, 1000);
    let counter = Arc::new(AtomicUsize::new(0));
    let c2 = counter.clone();
    let inner = f.fetcher.clone();
    let counting: ChunkFetcher = Arc::new(move |d| {
        c2.fetch_add(1, Ordering::SeqCst);
        inner(d)
    });
    let mut r = ChunkedReader::new(f.chunks.clone(), counting, 2);
    let mut buf = vec![0u8; 2500];
    r.read_exact(&mut buf).await.unwrap(); // chunks 0..=2
    r.seek(SeekFrom::Start(1500)).await.unwrap(); // back into chunk 1
    let mut small = [0u8; 10];
    r.read_exact(&mut small).await.unwrap();
    assert_eq!(&small[..], &f.data[1500..1510]);
    let before = counter.load(Ordering::SeqCst);
    r.seek(SeekFrom::Start(2000)).await.unwrap();
    r.read_exact(&mut small).await.unwrap();
    assert_eq!(counter.load(Ordering::SeqCst), before, "recent chunks are kept");
}

#[tokio::test]
async fn a_random_read_across_a_boundary_fetches_two_chunks_and_reading_on_reads_ahead() {
    let f = fixture(50, 1000);
    let mut r = ChunkedReader::new(f.chunks.clone(), f.fetcher.clone(), 8);
    // 4 KiB-like read straddling chunks 20 and 21, in one read call
    let mut buf = [0u8; 300];
    r.seek(SeekFrom::Start(20_850)).await.unwrap();
    r.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf[..], &f.data[20_850..21_150]);
    tokio::task::yield_now().await;
    assert_eq!(f.fetched.lock().unwrap().len(), 2, "only the two chunks the read touched");
    // reading on from there: after another boundary, the window ahead fills
    let mut more = vec![0u8; 1000];
    r.read_exact(&mut more).await.unwrap();
    assert_eq!(&more[..], &f.data[21_150..22_150]);
    tokio::task::yield_now().await;
    assert!(f.fetched.lock().unwrap().len() > 3, "no readahead once reading on");
}

#[tokio::test]
async fn random_reads_with_ranges_fetch_only_the_pieces_they_touch() {
    const SEG: usize = 65_536;
    let f = fixture(4, 10 * SEG + 123);
    let store: Arc<HashMap<B3Digest, Bytes>> = Arc::new(
        f.chunks
            .iter()
            .zip(f.data.chunks(10 * SEG + 123))
            .map(|(c, d)| (c.digest, Bytes::copy_from_slice(d)))
            .collect(),
    );
    let ranges = Arc::new(Mutex::new(Vec::new()));
    let log = ranges.clone();
    let fetch_range: RangeFetcher = Arc::new(move |d, off, len| {
        log.lock().unwrap().push((d, off, len));
        let b = store.get(&d).map(|b| b.slice(off as usize..(off + len) as usize));
        async move { b.ok_or_else(|| std::io::Error::other("missing")) }.boxed()
    });
    let mut r = ChunkedReader::new(f.chunks.clone(), f.fetcher.clone(), 2).with_range_fetch(fetch_range);
    let mut buf = [0u8; 4096];
    let chunk = (10 * SEG + 123) as u64;
    // inside segment 3 of chunk 1; again in the same piece; across the
    // bound of segments 5 and 6 of chunk 2; across the end of chunk 0
    for pos in
        [chunk + 3 * SEG as u64 + 100, chunk + 3 * SEG as u64 + 9000, 2 * chunk + 6 * SEG as u64 - 10, chunk - 200]
    {
        r.seek(SeekFrom::Start(pos)).await.unwrap();
        r.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf[..], &f.data[pos as usize..pos as usize + 4096], "at {pos}");
    }
    tokio::task::yield_now().await;
    assert!(f.fetched.lock().unwrap().is_empty(), "no whole chunk fetched for random reads");
    let seg = SEG as u64;
    let (c0, c1, c2) = (f.chunks[0].digest, f.chunks[1].digest, f.chunks[2].digest);
    assert_eq!(
        *ranges.lock().unwrap(),
        // (the last read ends in chunk 1, entered by reading on: still random)
        vec![(c1, 3 * seg, seg), (c2, 5 * seg, 2 * seg), (c0, 9 * seg, seg + 123), (c1, 0, seg)],
        "each read fetches the aligned piece it touches, once"
    );
}

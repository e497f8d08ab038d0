//! NAR unit tests on hand-written byte strings (the real-Nix comparisons live
//! in `integration-tests`).

use super::reader::{restore, validate, NarReader};
use super::writer::{write_path, NarWriter};
use super::*;

/// One NAR string token, written out by hand: u64 LE length, bytes, zero pad.
fn tok(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s);
    while !out.len().is_multiple_of(8) {
        out.push(0);
    }
}

fn nar(tokens: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for t in tokens {
        tok(&mut out, t);
    }
    out
}

/// `nix-store --dump` of a file containing "hi\n", as Nix writes it.
fn file_nar() -> Vec<u8> {
    nar(&[b"nix-archive-1", b"(", b"type", b"regular", b"contents", b"hi\n", b")"])
}

/// A directory NAR with the given entries, each a symlink to "t".
fn dir_nar(names: &[&[u8]]) -> Vec<u8> {
    let mut t: Vec<&[u8]> = vec![b"nix-archive-1", b"(", b"type", b"directory"];
    for n in names {
        t.extend_from_slice(&[
            b"entry", b"(", b"name", n, b"node", b"(", b"type", b"symlink", b"target", b"t", b")", b")",
        ]);
    }
    t.push(b")");
    nar(&t)
}

/// Decodes all of `input`, feeding it `chunk` bytes at a time.
fn decode_all(input: &[u8], chunk: usize) -> Result<Vec<NarEvent<'static>>, NarError> {
    let mut dec = NarDecoder::new();
    let mut events = Vec::new();
    let mut contents = Vec::new();
    for piece in input.chunks(chunk.max(1)) {
        let mut rest = piece;
        loop {
            let (n, ev) = dec.decode(rest)?;
            let produced = ev.is_some();
            rest = &rest[n..];
            match ev {
                Some(NarEvent::Contents(d)) => contents.extend_from_slice(d),
                Some(ev) => {
                    if !contents.is_empty() {
                        events.push(NarEvent::Contents(Box::leak(std::mem::take(&mut contents).into_boxed_slice())));
                    }
                    events.push(match ev {
                        NarEvent::File { executable, size } => NarEvent::File { executable, size },
                        NarEvent::Symlink { target } => NarEvent::Symlink { target },
                        NarEvent::Entry { name } => NarEvent::Entry { name },
                        NarEvent::DirectoryStart => NarEvent::DirectoryStart,
                        NarEvent::DirectoryEnd => NarEvent::DirectoryEnd,
                        NarEvent::End => NarEvent::End,
                        NarEvent::Contents(_) => unreachable!(),
                    })
                }
                None => {}
            }
            if rest.is_empty() && n == 0 && !produced {
                break;
            }
        }
    }
    if !contents.is_empty() {
        events.push(NarEvent::Contents(Box::leak(contents.into_boxed_slice())));
    }
    dec.finish()?;
    Ok(events)
}

fn encode_all(events: &[NarEvent<'_>]) -> Vec<u8> {
    let mut enc = NarEncoder::new();
    let mut out = Vec::new();
    for ev in events {
        enc.encode(ev, &mut out).unwrap();
    }
    enc.finish().unwrap();
    out
}

#[test]
fn decodes_a_file_in_any_chunking() {
    let input = file_nar();
    let expected = vec![NarEvent::File { executable: false, size: 3 }, NarEvent::Contents(b"hi\n"), NarEvent::End];
    for chunk in 1..=input.len() {
        assert_eq!(decode_all(&input, chunk).unwrap(), expected, "chunk {chunk}");
    }
}

#[test]
fn decode_then_encode_is_identity() {
    let mut exec = nar(&[b"nix-archive-1", b"(", b"type", b"regular", b"executable", b"", b"contents"]);
    tok(&mut exec, b"#!/bin/sh\n");
    tok(&mut exec, b")");
    let empty_file = nar(&[b"nix-archive-1", b"(", b"type", b"regular", b"contents", b"", b")"]);
    let empty_dir = nar(&[b"nix-archive-1", b"(", b"type", b"directory", b")"]);
    let sym = nar(&[b"nix-archive-1", b"(", b"type", b"symlink", b"target", b"/abs/x", b")"]);
    for input in [file_nar(), exec, empty_file, empty_dir, sym, dir_nar(&[b"a", b"b", b"\xff\xfe"])] {
        for chunk in [1, 3, 8, 1000] {
            let events = decode_all(&input, chunk).unwrap();
            assert_eq!(encode_all(&events), input);
        }
    }
}

#[test]
fn nested_directories() {
    let mut t: Vec<&[u8]> = vec![b"nix-archive-1", b"(", b"type", b"directory"];
    t.extend_from_slice(&[b"entry", b"(", b"name", b"d", b"node", b"(", b"type", b"directory"]);
    t.extend_from_slice(&[
        b"entry",
        b"(",
        b"name",
        b"f",
        b"node",
        b"(",
        b"type",
        b"regular",
        b"contents",
        b"x",
        b")",
        b")",
    ]);
    t.extend_from_slice(&[b")", b")"]);
    t.extend_from_slice(&[
        b"entry", b"(", b"name", b"z", b"node", b"(", b"type", b"symlink", b"target", b"d/f", b")", b")",
    ]);
    t.push(b")");
    let input = nar(&t);
    let events = decode_all(&input, 5).unwrap();
    assert_eq!(
        events,
        vec![
            NarEvent::DirectoryStart,
            NarEvent::Entry { name: b"d".to_vec() },
            NarEvent::DirectoryStart,
            NarEvent::Entry { name: b"f".to_vec() },
            NarEvent::File { executable: false, size: 1 },
            NarEvent::Contents(b"x"),
            NarEvent::DirectoryEnd,
            NarEvent::Entry { name: b"z".to_vec() },
            NarEvent::Symlink { target: b"d/f".to_vec() },
            NarEvent::DirectoryEnd,
            NarEvent::End,
        ]
    );
    assert_eq!(encode_all(&events), input);
}

fn err(input: &[u8]) -> NarError {
    for chunk in [1, 7, input.len().max(1)] {
        let e = decode_all(input, chunk).unwrap_err();
        let e2 = decode_all(input, input.len().max(1)).unwrap_err();
        assert_eq!(std::mem::discriminant(&e), std::mem::discriminant(&e2));
        if chunk == input.len().max(1) {
            return e;
        }
    }
    unreachable!()
}

#[test]
fn malformed_bad_magic() {
    assert_eq!(err(&nar(&[b"nix-archive-2", b"("])), NarError::BadMagic);
    assert_eq!(err(&nar(&[b"a-very-long-not-magic-token"])), NarError::BadMagic);
}

#[test]
fn malformed_unsorted_names() {
    assert!(matches!(err(&dir_nar(&[b"b", b"a"])), NarError::NotSorted { .. }));
}

#[test]
fn malformed_duplicate_names() {
    assert!(matches!(err(&dir_nar(&[b"a", b"a"])), NarError::DuplicateName { .. }));
}

#[test]
fn malformed_dot_and_dotdot_names() {
    assert!(matches!(err(&dir_nar(&[b"."])), NarError::InvalidName { .. }));
    assert!(matches!(err(&dir_nar(&[b".."])), NarError::InvalidName { .. }));
}

#[test]
fn malformed_slash_in_name() {
    assert!(matches!(err(&dir_nar(&[b"a/b"])), NarError::InvalidName { .. }));
}

#[test]
fn malformed_nul_in_name() {
    assert!(matches!(err(&dir_nar(&[b"a\0b"])), NarError::InvalidName { .. }));
}

#[test]
fn malformed_empty_name() {
    assert!(matches!(err(&dir_nar(&[b""])), NarError::InvalidName { .. }));
}

#[test]
fn malformed_name_too_long() {
    let long = vec![b'a'; 256];
    assert!(matches!(err(&dir_nar(&[&long])), NarError::TokenTooLong { max: 255, .. }));
    assert!(decode_all(&dir_nar(&[&vec![b'a'; 255]]), 64).is_ok());
}

#[test]
fn malformed_bad_padding() {
    let mut input = file_nar();
    // the byte after "hi\n" is padding
    let pos = input.windows(3).position(|w| w == b"hi\n").unwrap() + 3;
    input[pos] = 1;
    assert!(matches!(err(&input), NarError::NonZeroPadding { .. }));
    let mut input = file_nar();
    // padding after the "(" token
    input[8 * 3 + 8 + 1] = 0x20;
    assert!(matches!(err(&input), NarError::NonZeroPadding { .. }));
}

#[test]
fn malformed_unknown_tokens() {
    assert!(matches!(err(&nar(&[b"nix-archive-1", b"(", b"type", b"fifo", b")"])), NarError::UnexpectedToken { .. }));
    assert!(matches!(err(&nar(&[b"nix-archive-1", b"[", b"type"])), NarError::UnexpectedToken { .. }));
    assert!(matches!(
        err(&nar(&[b"nix-archive-1", b"(", b"type", b"regular", b"executable", b"yes"])),
        NarError::UnexpectedToken { .. }
    ));
    // `executable` twice
    assert!(matches!(
        err(&nar(&[b"nix-archive-1", b"(", b"type", b"regular", b"executable", b"", b"executable"])),
        NarError::UnexpectedToken { .. }
    ));
    assert!(matches!(
        err(&nar(&[b"nix-archive-1", b"(", b"type", b"directory", b"entry", b"(", b"nom"])),
        NarError::UnexpectedToken { .. }
    ));
}

#[test]
fn malformed_symlink_targets() {
    assert!(matches!(
        err(&nar(&[b"nix-archive-1", b"(", b"type", b"symlink", b"target", b"", b")"])),
        NarError::InvalidTarget { .. }
    ));
    assert!(matches!(
        err(&nar(&[b"nix-archive-1", b"(", b"type", b"symlink", b"target", b"a\0", b")"])),
        NarError::InvalidTarget { .. }
    ));
}

#[test]
fn malformed_truncated_at_every_offset() {
    for input in [file_nar(), dir_nar(&[b"a", b"b"])] {
        for cut in 0..input.len() {
            let e = decode_all(&input[..cut], 3).unwrap_err();
            assert!(matches!(e, NarError::Truncated { .. }), "cut {cut}: {e}");
        }
    }
}

#[test]
fn malformed_trailing_data() {
    let mut input = file_nar();
    input.extend_from_slice(&[0; 8]);
    assert!(matches!(err(&input), NarError::TrailingData { .. }));
    assert!(matches!(validate(&input[..]), Err(reader::NarReadError::Nar(NarError::TrailingData { .. }))));
}

#[test]
fn malformed_huge_contents_length_is_truncation_not_allocation() {
    let mut input = nar(&[b"nix-archive-1", b"(", b"type", b"regular", b"contents"]);
    input.extend_from_slice(&u64::MAX.to_le_bytes());
    input.extend_from_slice(b"short");
    assert!(matches!(err(&input), NarError::Truncated { .. }));
}

#[test]
fn malformed_too_deep() {
    let mut t: Vec<&[u8]> = vec![b"nix-archive-1"];
    for _ in 0..=MAX_DEPTH {
        t.extend_from_slice(&[b"(", b"type", b"directory", b"entry", b"(", b"name", b"d", b"node"]);
    }
    assert!(matches!(err(&nar(&t)), NarError::TooDeep { .. }));
}

#[test]
fn errors_poison_the_decoder() {
    let mut dec = NarDecoder::new();
    assert!(dec.decode(&nar(&[b"nope"])).is_err());
    assert!(matches!(dec.decode(&file_nar()), Err(NarError::Poisoned(_))));
}

#[test]
fn reader_stops_exactly_at_the_end() {
    let mut input = file_nar();
    input.extend_from_slice(b"NEXT MESSAGE");
    let mut cursor = std::io::Cursor::new(&input[..]);
    let n = reader::skip(&mut std::io::BufReader::with_capacity(5, &mut cursor)).unwrap();
    assert_eq!(n as usize, file_nar().len());
    // BufReader may have read ahead, so use a reader that reports its position
    let mut buffered = std::io::BufReader::new(&input[..]);
    reader::skip(&mut buffered).unwrap();
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut buffered, &mut rest).unwrap();
    assert_eq!(rest, b"NEXT MESSAGE");
}

#[tokio::test]
async fn async_copy_takes_exactly_one_nar_off_a_stream() {
    let mut input = file_nar();
    input.extend_from_slice(b"NEXT MESSAGE");
    let mut src = tokio::io::BufReader::with_capacity(7, &input[..]);
    let mut copied = Vec::new();
    let n = reader::async_copy_nar(&mut src, &mut copied).await.unwrap();
    assert_eq!((n as usize, &copied[..]), (file_nar().len(), &file_nar()[..]));
    let mut rest = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut src, &mut rest).await.unwrap();
    assert_eq!(rest, b"NEXT MESSAGE");
    // cut short: an error, not a hang
    let cut = &file_nar()[..file_nar().len() - 3];
    let mut src = tokio::io::BufReader::new(cut);
    assert!(reader::async_copy_nar(&mut src, &mut Vec::new()).await.is_err());
}

/// On a connection nothing follows the NAR until the reply: a directory
/// root's end must be found without waiting for another byte.
#[tokio::test]
async fn readers_on_a_live_stream_end_at_a_root_directory_without_more_input() {
    use tokio::io::AsyncWriteExt;
    async fn within<F: std::future::Future>(f: F) -> F::Output {
        tokio::time::timeout(std::time::Duration::from_secs(5), f).await.expect("no hang")
    }
    let nar = dir_nar(&[b"a", b"b"]);
    let (mut client, server) = tokio::io::duplex(64);
    let sent = nar.clone();
    let _writer = tokio::spawn(async move {
        client.write_all(&sent).await.unwrap();
        std::future::pending::<()>().await; // keeps the stream open
        drop(client);
    });
    let mut src = tokio::io::BufReader::new(server);
    let mut copied = Vec::new();
    let n = within(reader::async_copy_nar(&mut src, &mut copied)).await.unwrap();
    assert_eq!((n as usize, copied), (nar.len(), nar.clone()));

    let (mut client, server) = tokio::io::duplex(64);
    let sent = nar.clone();
    let _writer = tokio::spawn(async move {
        client.write_all(&sent).await.unwrap();
        std::future::pending::<()>().await;
        drop(client);
    });
    let mut r = reader::AsyncNarReader::new(tokio::io::BufReader::new(server));
    let events = within(async {
        let mut n = 0;
        while r.next().await.unwrap().is_some() {
            n += 1;
        }
        n
    })
    .await;
    assert!(events > 4, "{events} events");

    // the blocking reader and copier, on a pipe kept open the same way
    let (rx, mut tx) = std::io::pipe().unwrap();
    std::io::Write::write_all(&mut tx, &nar).unwrap();
    let n = reader::copy_nar(&mut std::io::BufReader::new(rx), &mut Vec::new()).unwrap();
    assert_eq!(n as usize, nar.len());
    drop(tx);
}

#[test]
fn reader_streams_large_files_in_bounded_pieces() {
    let size = 5 * 1024 * 1024 + 3;
    let mut input = nar(&[b"nix-archive-1", b"(", b"type", b"regular", b"contents"]);
    input.extend_from_slice(&(size as u64).to_le_bytes());
    input.extend((0..size).map(|i| (i % 251) as u8));
    input.extend_from_slice(&[0; 5]);
    tok(&mut input, b")");
    let mut r = NarReader::new(std::io::BufReader::with_capacity(64 * 1024, &input[..]));
    let mut total = 0;
    while let Some(ev) = r.next().unwrap() {
        if let NarEvent::Contents(d) = ev {
            assert!(d.len() <= 64 * 1024);
            total += d.len();
        }
    }
    assert_eq!(total, size);
}

#[test]
fn encoder_refuses_invalid_sequences() {
    let mut out = Vec::new();
    let mut enc = NarEncoder::new();
    assert!(enc.encode(&NarEvent::Entry { name: b"a".to_vec() }, &mut out).is_err());
    let mut enc = NarEncoder::new();
    enc.encode(&NarEvent::DirectoryStart, &mut out).unwrap();
    enc.encode(&NarEvent::Entry { name: b"b".to_vec() }, &mut out).unwrap();
    enc.encode(&NarEvent::Symlink { target: b"x".to_vec() }, &mut out).unwrap();
    assert!(matches!(
        enc.encode(&NarEvent::Entry { name: b"a".to_vec() }, &mut out),
        Err(NarWriteError::NotSorted { .. })
    ));
    assert!(matches!(
        enc.encode(&NarEvent::Entry { name: b"b".to_vec() }, &mut out),
        Err(NarWriteError::NotSorted { .. })
    ));
    let mut enc = NarEncoder::new();
    enc.encode(&NarEvent::File { executable: false, size: 2 }, &mut out).unwrap();
    assert!(matches!(enc.encode(&NarEvent::Contents(b"abc"), &mut out), Err(NarWriteError::ContentsTooLong { .. })));
    enc.encode(&NarEvent::Contents(b"a"), &mut out).unwrap();
    assert!(matches!(enc.finish(), Err(NarWriteError::ContentsTooShort { .. })));
}

#[test]
fn writer_restore_roundtrip_on_a_tree() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
    std::fs::write(src.join("a"), b"aaa").unwrap();
    std::fs::write(src.join("sub/x.sh"), b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(src.join("sub/x.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(src.join("sub/deeper/empty"), b"").unwrap();
    std::os::unix::fs::symlink("../a", src.join("sub/link")).unwrap();
    let bytes = write_path(&src, Vec::new()).unwrap();
    assert_eq!(validate(&bytes[..]).unwrap() as usize, bytes.len());
    let dst = dir.path().join("dst");
    restore(&bytes[..], &dst).unwrap();
    assert_eq!(write_path(&dst, Vec::new()).unwrap(), bytes);
    // a single file and a symlink as the root
    for root in ["a", "sub/link"] {
        let b = write_path(&src.join(root), Vec::new()).unwrap();
        let d = dir.path().join(format!("r{}", root.len()));
        restore(&b[..], &d).unwrap();
        assert_eq!(write_path(&d, Vec::new()).unwrap(), b);
    }
    // NarWriter with a reader that comes up short
    let mut w = NarWriter::new(Vec::new());
    let e = w.file_from_reader(false, 10, &mut &b"abc"[..]).unwrap_err();
    assert!(matches!(e, NarWriteError::ContentsTooShort { size: 10, got: 3 }));
}

#[cfg(feature = "async")]
#[tokio::test]
async fn async_reader_and_writer_agree_with_sync() {
    use super::reader::AsyncNarReader;
    use super::writer::AsyncNarWriter;
    let input = dir_nar(&[b"a", b"b"]);
    let mut r = AsyncNarReader::new(tokio::io::BufReader::with_capacity(3, &input[..]));
    let mut w = AsyncNarWriter::new(Vec::new());
    while let Some(ev) = r.next().await.unwrap() {
        w.event(&ev).await.unwrap();
    }
    assert_eq!(w.finish().await.unwrap(), input);
}

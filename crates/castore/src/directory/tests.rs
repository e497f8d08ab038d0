use bytes::Bytes;
use prost::Message;

use super::*;

fn d(b: u8) -> B3Digest {
    B3Digest::from([b; 32])
}

/// Protobuf bytes written out by hand, field by field, not by our encoder.
fn handwritten_mixed() -> Vec<u8> {
    let mut v = Vec::new();
    // field 1 (directories), length-delimited: DirectoryEntry { name "b", digest 0x02*32, size 7 }
    v.extend_from_slice(&[0x0a, 3 + 34 + 2]);
    v.extend_from_slice(&[0x0a, 0x01, b'b']);
    v.extend_from_slice(&[0x12, 0x20]);
    v.extend_from_slice(&[0x02; 32]);
    v.extend_from_slice(&[0x18, 0x07]);
    // field 2 (files): FileEntry { name "a", digest 0x01*32, size 3, executable true }
    v.extend_from_slice(&[0x12, 3 + 34 + 2 + 2]);
    v.extend_from_slice(&[0x0a, 0x01, b'a']);
    v.extend_from_slice(&[0x12, 0x20]);
    v.extend_from_slice(&[0x01; 32]);
    v.extend_from_slice(&[0x18, 0x03]);
    v.extend_from_slice(&[0x20, 0x01]);
    // field 2 (files): FileEntry { name "c", digest 0x03*32, size 0 (omitted), executable false (omitted) }
    v.extend_from_slice(&[0x12, 3 + 34]);
    v.extend_from_slice(&[0x0a, 0x01, b'c']);
    v.extend_from_slice(&[0x12, 0x20]);
    v.extend_from_slice(&[0x03; 32]);
    // field 3 (symlinks): SymlinkEntry { name "d", target "a" }
    v.extend_from_slice(&[0x1a, 6]);
    v.extend_from_slice(&[0x0a, 0x01, b'd']);
    v.extend_from_slice(&[0x12, 0x01, b'a']);
    v
}

fn mixed() -> Directory {
    let mut dir = Directory::new();
    // inserted out of order on purpose: the encoding sorts
    dir.add(Bytes::from_static(b"d"), Node::Symlink { target: Bytes::from_static(b"a") }).unwrap();
    dir.add(Bytes::from_static(b"c"), Node::File { digest: d(3), size: 0, executable: false }).unwrap();
    dir.add(Bytes::from_static(b"b"), Node::Directory { digest: d(2), size: 7 }).unwrap();
    dir.add(Bytes::from_static(b"a"), Node::File { digest: d(1), size: 3, executable: true }).unwrap();
    dir
}

#[test]
fn canonical_encoding_and_digest_match_handwritten_bytes() {
    assert_eq!(Directory::new().to_proto().encode_to_vec(), Vec::<u8>::new());
    assert_eq!(Directory::new().digest(), B3Digest::of(b""));
    let dir = mixed();
    assert_eq!(dir.to_proto().encode_to_vec(), handwritten_mixed());
    assert_eq!(dir.digest(), B3Digest::from(*blake3::hash(&handwritten_mixed()).as_bytes()));
    // and decoding the handwritten bytes gives the same directory
    let decoded = proto::Directory::decode(&handwritten_mixed()[..]).unwrap();
    assert_eq!(Directory::try_from(decoded).unwrap(), dir);
}

#[test]
fn size_counts_entries_plus_child_sizes() {
    // 4 entries + child "b" of size 7
    assert_eq!(mixed().size(), 11);
    assert_eq!(Directory::new().size(), 0);
}

fn file(name: &[u8]) -> proto::FileEntry {
    proto::FileEntry { name: Bytes::copy_from_slice(name), digest: d(1).into(), size: 1, executable: false }
}

#[test]
fn rejects_invalid_directories() {
    let bad = |p: proto::Directory| Directory::try_from(p).unwrap_err();
    // unsorted
    let e = bad(proto::Directory { files: vec![file(b"b"), file(b"a")], ..Default::default() });
    assert!(matches!(e, DirectoryError::NotSorted { .. }), "{e}");
    // duplicate within a list and across lists
    let e = bad(proto::Directory { files: vec![file(b"a"), file(b"a")], ..Default::default() });
    assert!(matches!(e, DirectoryError::DuplicateName(_)), "{e}");
    let e = bad(proto::Directory {
        files: vec![file(b"a")],
        symlinks: vec![proto::SymlinkEntry { name: "a".into(), target: "t".into() }],
        ..Default::default()
    });
    assert!(matches!(e, DirectoryError::DuplicateName(_)), "{e}");
    // names
    for name in [&b""[..], b".", b"..", b"a/b", b"a\0", &[b'x'; 256]] {
        let e = bad(proto::Directory { files: vec![file(name)], ..Default::default() });
        assert!(matches!(e, DirectoryError::InvalidName { .. }), "{name:?}: {e}");
    }
    assert!(Directory::try_from(proto::Directory { files: vec![file(&[b'x'; 255])], ..Default::default() }).is_ok());
    // digests
    let mut f = file(b"a");
    f.digest = Bytes::from_static(&[1; 31]);
    let e = bad(proto::Directory { files: vec![f], ..Default::default() });
    assert!(matches!(e, DirectoryError::InvalidDigest { .. }), "{e}");
    let e = bad(proto::Directory {
        directories: vec![proto::DirectoryEntry { name: "x".into(), digest: Bytes::new(), size: 0 }],
        ..Default::default()
    });
    assert!(matches!(e, DirectoryError::InvalidDigest { .. }), "{e}");
    // symlink targets
    for target in [&b""[..], b"a\0b", &[b'x'; 4096]] {
        let e = bad(proto::Directory {
            symlinks: vec![proto::SymlinkEntry { name: "l".into(), target: Bytes::copy_from_slice(target) }],
            ..Default::default()
        });
        assert!(matches!(e, DirectoryError::InvalidTarget { .. }), "{e}");
    }
}

#[test]
fn entries_roundtrip() {
    for node in [
        Node::Directory { digest: d(9), size: 3 },
        Node::File { digest: d(8), size: 10, executable: true },
        Node::Symlink { target: Bytes::from_static(b"/x") },
    ] {
        let e = node.to_entry(Bytes::from_static(b"root"));
        assert_eq!(Node::from_entry(&e).unwrap(), (Bytes::from_static(b"root"), node));
    }
    assert_eq!(Node::from_entry(&proto::Entry { entry: None }), Err(DirectoryError::EmptyEntry));
}

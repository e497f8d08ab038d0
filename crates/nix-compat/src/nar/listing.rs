//! NAR listings: the `.ls` JSON a binary cache serves beside a NAR (Nix
//! writes them with `?write-nar-listing=true`): the tree's shape, each
//! regular file's size and the offset of its contents in the NAR, so a
//! client can read one file with a range request.
//!
//! [`ListingBuilder`] is fed the events of a NAR (file contents not needed:
//! a `File` event's size is enough) and computes the offsets from the
//! format's token sizes alone.

use std::collections::BTreeMap;

use super::{padding_len, NarEvent, NarWriteError, MAGIC};

/// One file system object of a listing. Names and targets are bytes, as in
/// the NAR: a name need not be UTF-8.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListingEntry {
    Regular { size: u64, executable: bool, nar_offset: u64 },
    Symlink { target: Vec<u8> },
    Directory { entries: Entries },
}

/// A directory's entries by name.
pub type Entries = BTreeMap<Vec<u8>, ListingEntry>;

/// A whole `.ls` document: `{"version":1,"root":…}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    pub version: u32,
    pub root: ListingEntry,
}

impl Listing {
    /// The JSON Nix writes. Strings are escaped as JSON requires, and bytes
    /// that are not UTF-8 are written as they are, as Nix does (such a
    /// document is not strictly JSON, but it names the file exactly).
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = format!("{{\"version\":{},\"root\":", self.version).into_bytes();
        // an explicit stack: trees may be deeper than the call stack allows
        enum Step<'a> {
            Entry(&'a ListingEntry),
            Named(&'a [u8], &'a ListingEntry, bool),
            Close,
        }
        let mut todo = vec![Step::Entry(&self.root)];
        while let Some(step) = todo.pop() {
            let entry = match step {
                Step::Close => {
                    out.extend_from_slice(b"}}");
                    continue;
                }
                Step::Named(name, entry, first) => {
                    if !first {
                        out.push(b',');
                    }
                    json_string(&mut out, name);
                    out.push(b':');
                    entry
                }
                Step::Entry(entry) => entry,
            };
            match entry {
                ListingEntry::Regular { size, executable, nar_offset } => {
                    out.extend_from_slice(format!("{{\"type\":\"regular\",\"size\":{size}").as_bytes());
                    if *executable {
                        out.extend_from_slice(b",\"executable\":true");
                    }
                    out.extend_from_slice(format!(",\"narOffset\":{nar_offset}}}").as_bytes());
                }
                ListingEntry::Symlink { target } => {
                    out.extend_from_slice(b"{\"type\":\"symlink\",\"target\":");
                    json_string(&mut out, target);
                    out.push(b'}');
                }
                ListingEntry::Directory { entries } => {
                    out.extend_from_slice(b"{\"type\":\"directory\",\"entries\":{");
                    todo.push(Step::Close);
                    let at = todo.len();
                    for (i, (name, e)) in entries.iter().enumerate() {
                        todo.push(Step::Named(name, e, i == 0));
                    }
                    todo[at..].reverse();
                }
            }
        }
        out.push(b'}');
        out
    }
}

/// `s` as a JSON string: quote, backslash and control characters escaped,
/// every other byte as it is.
fn json_string(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for &b in s {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// Bytes of one NAR string token of `len` bytes: length, bytes, padding.
fn token(len: u64) -> u64 {
    8 + len + padding_len(len) as u64
}

/// A keyword of at most 8 bytes ("(", "type", "regular", "contents", ...).
const fn small_token() -> u64 {
    16
}

/// Builds a [`Listing`] from NAR events, checking their order as it goes.
#[derive(Debug)]
pub struct ListingBuilder {
    offset: u64,
    /// open directories: (their name in the parent, entries so far)
    stack: Vec<(Option<Vec<u8>>, Entries)>,
    /// the name of the entry whose node comes next
    pending_name: Option<Vec<u8>>,
    root: Option<ListingEntry>,
}

impl Default for ListingBuilder {
    fn default() -> Self {
        Self::new()
    }
}

fn unexpected(event: &'static str, expected: &'static str) -> NarWriteError {
    NarWriteError::UnexpectedEvent { event, expected }
}

impl ListingBuilder {
    pub fn new() -> Self {
        ListingBuilder { offset: token(MAGIC.len() as u64), stack: Vec::new(), pending_name: None, root: None }
    }

    /// Bytes of NAR the events so far stand for.
    pub fn nar_size(&self) -> u64 {
        self.offset
    }

    fn expect_node(&self, event: &'static str) -> Result<(), NarWriteError> {
        let at_node = if self.stack.is_empty() { self.root.is_none() } else { self.pending_name.is_some() };
        if !at_node {
            return Err(unexpected(event, "the next event of the NAR in order"));
        }
        Ok(())
    }

    /// Places a finished node: as the root, or as the pending entry of the
    /// innermost directory (closing that entry).
    fn place(&mut self, name: Option<Vec<u8>>, node: ListingEntry) {
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some((_, entries)) => {
                entries.insert(name.unwrap_or_default(), node);
                self.offset += small_token(); // the entry's ")"
            }
        }
    }

    /// Feeds one event. `Contents` are ignored: a `File`'s size is enough.
    pub fn push(&mut self, ev: &NarEvent<'_>) -> Result<(), NarWriteError> {
        match ev {
            NarEvent::File { executable, size } => {
                self.expect_node("File")?;
                // "(" "type" "regular" ["executable" ""] "contents" <size>
                self.offset += 3 * small_token()
                    + if *executable { token(b"executable".len() as u64) + token(0) } else { 0 }
                    + small_token()
                    + 8;
                let entry = ListingEntry::Regular { size: *size, executable: *executable, nar_offset: self.offset };
                // the contents, their padding and ")"
                self.offset += size + padding_len(*size) as u64 + small_token();
                let name = self.pending_name.take();
                self.place(name, entry);
            }
            // the File event already counted them
            NarEvent::Contents(_) => {}
            NarEvent::Symlink { target } => {
                self.expect_node("Symlink")?;
                // "(" "type" "symlink" "target" <target> ")"
                self.offset += 4 * small_token() + token(target.len() as u64) + small_token();
                let name = self.pending_name.take();
                self.place(name, ListingEntry::Symlink { target: target.clone() });
            }
            NarEvent::DirectoryStart => {
                self.expect_node("DirectoryStart")?;
                // "(" "type" "directory"
                self.offset += 2 * small_token() + token(b"directory".len() as u64);
                let name = self.pending_name.take();
                self.stack.push((name, BTreeMap::new()));
            }
            NarEvent::Entry { name } => {
                if self.stack.is_empty() || self.pending_name.is_some() {
                    return Err(unexpected("Entry", "the next event of the NAR in order"));
                }
                // "entry" "(" "name" <name> "node"
                self.offset += 3 * small_token() + token(name.len() as u64) + small_token();
                self.pending_name = Some(name.clone());
            }
            NarEvent::DirectoryEnd => {
                if self.pending_name.is_some() {
                    return Err(unexpected("DirectoryEnd", "the next event of the NAR in order"));
                }
                let (name, entries) = self.stack.pop().ok_or_else(|| unexpected("DirectoryEnd", "End"))?;
                self.offset += small_token(); // the directory's ")"
                self.place(name, ListingEntry::Directory { entries });
            }
            NarEvent::End => {}
        }
        Ok(())
    }

    /// The listing, once the root node is complete.
    pub fn finish(self) -> Result<Listing, NarWriteError> {
        match self.root {
            Some(root) if self.stack.is_empty() => Ok(Listing { version: 1, root }),
            _ => Err(unexpected("End", "the rest of the NAR")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nar::NarEncoder;

    fn events() -> Vec<NarEvent<'static>> {
        vec![
            NarEvent::DirectoryStart,
            NarEvent::Entry { name: b"a".to_vec() },
            NarEvent::File { executable: true, size: 3 },
            NarEvent::Contents(b"abc"),
            NarEvent::Entry { name: b"dir".to_vec() },
            NarEvent::DirectoryStart,
            NarEvent::Entry { name: b"empty".to_vec() },
            NarEvent::File { executable: false, size: 0 },
            NarEvent::Entry { name: b"long-name-of-a-file".to_vec() },
            NarEvent::File { executable: false, size: 9 },
            NarEvent::Contents(b"123456789"),
            NarEvent::DirectoryEnd,
            NarEvent::Entry { name: b"link".to_vec() },
            NarEvent::Symlink { target: b"dir/empty".to_vec() },
            NarEvent::DirectoryEnd,
            NarEvent::End,
        ]
    }

    /// Every offset points at the file's contents in the encoded NAR, and
    /// the total is the NAR's size.
    #[test]
    fn offsets_match_the_encoded_nar() {
        let mut nar = Vec::new();
        let mut enc = NarEncoder::new();
        let mut b = ListingBuilder::new();
        for ev in events() {
            enc.encode(&ev, &mut nar).unwrap();
            b.push(&ev).unwrap();
        }
        assert_eq!(b.nar_size(), nar.len() as u64);
        let listing = b.finish().unwrap();
        let ListingEntry::Directory { entries } = &listing.root else { panic!() };
        let ListingEntry::Regular { nar_offset, size: 3, executable: true } = entries[&b"a"[..]] else { panic!() };
        assert_eq!(&nar[nar_offset as usize..][..3], b"abc");
        let ListingEntry::Directory { entries: sub } = &entries[&b"dir"[..]] else { panic!() };
        let ListingEntry::Regular { nar_offset, .. } = sub[&b"long-name-of-a-file"[..]] else { panic!() };
        assert_eq!(&nar[nar_offset as usize..][..9], b"123456789");
        assert_eq!(entries[&b"link"[..]], ListingEntry::Symlink { target: b"dir/empty".to_vec() });
    }

    #[test]
    fn a_single_file() {
        let mut b = ListingBuilder::new();
        b.push(&NarEvent::File { executable: false, size: 5 }).unwrap();
        b.push(&NarEvent::Contents(b"hello")).unwrap();
        let json = b.finish().unwrap().to_json();
        assert_eq!(json, br#"{"version":1,"root":{"type":"regular","size":5,"narOffset":96}}"#);
    }

    #[test]
    fn events_out_of_order_are_refused() {
        let mut b = ListingBuilder::new();
        assert!(b.push(&NarEvent::Entry { name: b"x".to_vec() }).is_err());
        let mut b = ListingBuilder::new();
        b.push(&NarEvent::DirectoryStart).unwrap();
        assert!(b.push(&NarEvent::File { executable: false, size: 1 }).is_err());
        let mut b = ListingBuilder::new();
        b.push(&NarEvent::DirectoryStart).unwrap();
        assert!(b.finish().is_err());
        let mut b = ListingBuilder::new();
        b.push(&NarEvent::File { executable: false, size: 1 }).unwrap();
        assert!(b.push(&NarEvent::Symlink { target: b"x".to_vec() }).is_err());
    }

    #[test]
    fn json_escapes_what_json_requires_and_keeps_other_bytes() {
        let mut entries = BTreeMap::new();
        entries.insert(b"q\"b\\n\n\x01".to_vec(), ListingEntry::Symlink { target: "é".as_bytes().to_vec() });
        entries.insert(b"raw\xff".to_vec(), ListingEntry::Directory { entries: BTreeMap::new() });
        let l = Listing { version: 1, root: ListingEntry::Directory { entries } };
        let json = l.to_json();
        assert_eq!(
            json,
            b"{\"version\":1,\"root\":{\"type\":\"directory\",\"entries\":{\"q\\\"b\\\\n\\n\\u0001\":\
              {\"type\":\"symlink\",\"target\":\"\xc3\xa9\"},\"raw\xff\":{\"type\":\"directory\",\"entries\":{}}}}}"
        );
    }

    #[test]
    fn is_json_a_parser_reads() {
        let mut b = ListingBuilder::new();
        for ev in events() {
            b.push(&ev).unwrap();
        }
        let v: serde_json::Value = serde_json::from_slice(&b.finish().unwrap().to_json()).unwrap();
        assert_eq!(v["root"]["entries"]["a"]["executable"], serde_json::Value::Bool(true));
        assert_eq!(v["root"]["entries"]["link"]["target"], "dir/empty");
        assert_eq!(v["root"]["entries"]["dir"]["entries"]["empty"]["size"], 0);
    }
}

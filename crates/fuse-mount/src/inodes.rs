//! Inode numbers and the table of inodes the kernel currently knows.
//!
//! An inode number is a hash of the path to the node (parent inode, name) and
//! of the node itself, so it is the same every time that path is looked up —
//! stable for the life of the mount without remembering every inode ever
//! handed out. The table holds only inodes with a kernel lookup count above
//! zero; `forget` drops them, which keeps memory bounded on huge walks.
//! Every path gets its own inode (no sharing between equal directories: the
//! kernel allows a directory inode only one name).

use std::collections::HashMap;
use std::sync::Mutex;

use snix_castore::Node;

pub const ROOT: u64 = 1;

/// What an inode is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inode {
    /// The mount's root: one entry per store path.
    Root,
    /// A node of a store path's tree (its root node included).
    Node(Node),
}

/// The inode number of `node`, reached as `name` in directory `parent`.
pub fn ino_for(parent: u64, name: &[u8], node: &Node) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(&parent.to_le_bytes());
    h.update(&(name.len() as u64).to_le_bytes());
    h.update(name);
    match node {
        Node::Directory { digest, size } => {
            h.update(b"d");
            h.update(digest.as_bytes());
            h.update(&size.to_le_bytes());
        }
        Node::File { digest, size, executable } => {
            h.update(if *executable { b"x" } else { b"f" });
            h.update(digest.as_bytes());
            h.update(&size.to_le_bytes());
        }
        Node::Symlink { target } => {
            h.update(b"l");
            h.update(target);
        }
    }
    let n = u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8 bytes"));
    // keep clear of 0 (invalid) and 1 (the root)
    n | (1 << 63)
}

struct Entry {
    inode: Inode,
    parent: u64,
    lookups: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("inode number collision on {0:#x}")]
pub struct Collision(pub u64);

/// Inodes the kernel holds references to.
pub struct InodeTable {
    entries: Mutex<HashMap<u64, Entry>>,
}

impl Default for InodeTable {
    fn default() -> Self {
        Self::new()
    }
}

impl InodeTable {
    pub fn new() -> Self {
        let mut m = HashMap::new();
        m.insert(ROOT, Entry { inode: Inode::Root, parent: ROOT, lookups: 1 });
        InodeTable { entries: Mutex::new(m) }
    }

    /// Records one more kernel reference to `ino` (a lookup reply, or an
    /// entry of a readdirplus reply).
    pub fn remember(&self, ino: u64, parent: u64, node: &Node) -> Result<(), Collision> {
        let mut m = self.entries.lock().expect("inode table lock");
        let e = m.entry(ino).or_insert_with(|| Entry { inode: Inode::Node(node.clone()), parent, lookups: 0 });
        if e.inode != Inode::Node(node.clone()) || e.parent != parent {
            return Err(Collision(ino));
        }
        e.lookups += 1;
        Ok(())
    }

    /// The kernel dropped `n` references to `ino`.
    pub fn forget(&self, ino: u64, n: u64) {
        if ino == ROOT {
            return;
        }
        let mut m = self.entries.lock().expect("inode table lock");
        if let Some(e) = m.get_mut(&ino) {
            e.lookups = e.lookups.saturating_sub(n);
            if e.lookups == 0 {
                m.remove(&ino);
            }
        }
    }

    pub fn get(&self, ino: u64) -> Option<(Inode, u64)> {
        self.entries.lock().expect("inode table lock").get(&ino).map(|e| (e.inode.clone(), e.parent))
    }

    /// How many inodes are held (for tests and the memory bound).
    pub fn len(&self) -> usize {
        self.entries.lock().expect("inode table lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use snix_castore::B3Digest;

    fn file(b: &[u8]) -> Node {
        Node::File { digest: B3Digest::of(b), size: b.len() as u64, executable: false }
    }

    #[test]
    fn inode_numbers_depend_on_path_and_node() {
        let a = ino_for(ROOT, b"a", &file(b"x"));
        assert_eq!(a, ino_for(ROOT, b"a", &file(b"x")));
        assert_ne!(a, ino_for(ROOT, b"b", &file(b"x")));
        assert_ne!(a, ino_for(a, b"a", &file(b"x")));
        assert_ne!(a, ino_for(ROOT, b"a", &file(b"y")));
        let exe = Node::File { digest: B3Digest::of(b"x"), size: 1, executable: true };
        assert_ne!(a, ino_for(ROOT, b"a", &exe));
        assert!(a > ROOT);
    }

    #[test]
    fn forget_drops_entries_at_zero() {
        let t = InodeTable::new();
        let n = file(b"x");
        let ino = ino_for(ROOT, b"a", &n);
        t.remember(ino, ROOT, &n).unwrap();
        t.remember(ino, ROOT, &n).unwrap();
        assert_eq!(t.len(), 2);
        t.forget(ino, 1);
        assert!(t.get(ino).is_some());
        t.forget(ino, 1);
        assert!(t.get(ino).is_none());
        // the root is never forgotten
        t.forget(ROOT, 10);
        assert_eq!(t.get(ROOT).unwrap().0, Inode::Root);
        // looked up again: same number
        t.remember(ino_for(ROOT, b"a", &n), ROOT, &n).unwrap();
        assert!(t.get(ino).is_some());
    }

    #[test]
    fn a_different_node_under_a_held_number_is_refused() {
        let t = InodeTable::new();
        t.remember(42 | (1 << 63), ROOT, &file(b"x")).unwrap();
        assert!(t.remember(42 | (1 << 63), ROOT, &file(b"y")).is_err());
    }
}

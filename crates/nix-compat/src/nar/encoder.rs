//! Sans-I/O NAR encoder: feed it [`NarEvent`]s, it appends NAR bytes to a buffer
//! and refuses any sequence that would not be a valid NAR.

use super::{check_name, check_target, lossy, padding_len, NarEvent, NarWriteError, MAGIC};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// nothing written yet; the root node comes next
    Start,
    /// an `Entry` was written; its node comes next
    Node,
    /// inside a file's contents
    Contents {
        size: u64,
        remaining: u64,
    },
    /// inside a directory: `Entry` or `DirectoryEnd` next
    Directory,
    Done,
}

impl State {
    fn expected(self) -> &'static str {
        match self {
            State::Start | State::Node => "File, Symlink or DirectoryStart",
            State::Contents { .. } => "Contents",
            State::Directory => "Entry or DirectoryEnd",
            State::Done => "End",
        }
    }
}

fn event_name(ev: &NarEvent<'_>) -> &'static str {
    match ev {
        NarEvent::File { .. } => "File",
        NarEvent::Contents(_) => "Contents",
        NarEvent::Symlink { .. } => "Symlink",
        NarEvent::DirectoryStart => "DirectoryStart",
        NarEvent::Entry { .. } => "Entry",
        NarEvent::DirectoryEnd => "DirectoryEnd",
        NarEvent::End => "End",
    }
}

/// Appends one NAR string token: length, bytes, zero padding.
pub(crate) fn put_token(out: &mut Vec<u8>, tok: &[u8]) {
    out.extend_from_slice(&(tok.len() as u64).to_le_bytes());
    out.extend_from_slice(tok);
    out.extend_from_slice(&[0u8; 8][..padding_len(tok.len() as u64)]);
}

#[derive(Debug)]
pub struct NarEncoder {
    state: State,
    /// last entry name of each open directory
    stack: Vec<Option<Vec<u8>>>,
}

impl Default for NarEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl NarEncoder {
    pub fn new() -> Self {
        NarEncoder { state: State::Start, stack: Vec::new() }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Bytes of file contents still owed, if inside a file.
    pub fn contents_remaining(&self) -> Option<u64> {
        match self.state {
            State::Contents { remaining, .. } => Some(remaining),
            _ => None,
        }
    }

    /// An error unless a whole NAR has been encoded.
    pub fn finish(&self) -> Result<(), NarWriteError> {
        match self.state {
            State::Done => Ok(()),
            State::Contents { size, remaining } => Err(NarWriteError::ContentsTooShort { size, got: size - remaining }),
            s => Err(NarWriteError::UnexpectedEvent { event: "end of input", expected: s.expected() }),
        }
    }

    fn begin_node(&mut self, out: &mut Vec<u8>, ev: &NarEvent<'_>) -> Result<(), NarWriteError> {
        match self.state {
            State::Start => put_token(out, MAGIC),
            State::Node => {}
            s => return Err(NarWriteError::UnexpectedEvent { event: event_name(ev), expected: s.expected() }),
        }
        put_token(out, b"(");
        put_token(out, b"type");
        Ok(())
    }

    fn end_node(&mut self, out: &mut Vec<u8>) {
        if self.stack.is_empty() {
            self.state = State::Done;
        } else {
            // closes the `entry (` of the enclosing directory
            put_token(out, b")");
            self.state = State::Directory;
        }
    }

    /// Appends the bytes for `ev` to `out`. Contents are copied through.
    pub fn encode(&mut self, ev: &NarEvent<'_>, out: &mut Vec<u8>) -> Result<(), NarWriteError> {
        match ev {
            NarEvent::File { executable, size } => {
                self.begin_node(out, ev)?;
                put_token(out, b"regular");
                if *executable {
                    put_token(out, b"executable");
                    put_token(out, b"");
                }
                put_token(out, b"contents");
                out.extend_from_slice(&size.to_le_bytes());
                if *size == 0 {
                    put_token(out, b")");
                    self.end_node(out);
                } else {
                    self.state = State::Contents { size: *size, remaining: *size };
                }
            }
            NarEvent::Contents(data) => {
                let State::Contents { size, remaining } = self.state else {
                    return Err(NarWriteError::UnexpectedEvent { event: "Contents", expected: self.state.expected() });
                };
                let len = data.len() as u64;
                if len > remaining {
                    return Err(NarWriteError::ContentsTooLong { size, got: size - remaining + len });
                }
                out.extend_from_slice(data);
                if len == remaining {
                    out.extend_from_slice(&[0u8; 8][..padding_len(size)]);
                    put_token(out, b")");
                    self.end_node(out);
                } else {
                    self.state = State::Contents { size, remaining: remaining - len };
                }
            }
            NarEvent::Symlink { target } => {
                if let Err(reason) = check_target(target) {
                    return Err(NarWriteError::InvalidTarget { target: lossy(target), reason });
                }
                self.begin_node(out, ev)?;
                put_token(out, b"symlink");
                put_token(out, b"target");
                put_token(out, target);
                put_token(out, b")");
                self.end_node(out);
            }
            NarEvent::DirectoryStart => {
                self.begin_node(out, ev)?;
                put_token(out, b"directory");
                self.stack.push(None);
                self.state = State::Directory;
            }
            NarEvent::Entry { name } => {
                if self.state != State::Directory {
                    return Err(NarWriteError::UnexpectedEvent { event: "Entry", expected: self.state.expected() });
                }
                if let Err(reason) = check_name(name) {
                    return Err(NarWriteError::InvalidName { name: lossy(name), reason });
                }
                let last = self.stack.last_mut().expect("in a directory");
                if let Some(prev) = last {
                    if name.as_slice() <= prev.as_slice() {
                        return Err(NarWriteError::NotSorted { prev: lossy(prev), name: lossy(name) });
                    }
                }
                *last = Some(name.clone());
                put_token(out, b"entry");
                put_token(out, b"(");
                put_token(out, b"name");
                put_token(out, name);
                put_token(out, b"node");
                self.state = State::Node;
            }
            NarEvent::DirectoryEnd => {
                if self.state != State::Directory {
                    return Err(NarWriteError::UnexpectedEvent {
                        event: "DirectoryEnd",
                        expected: self.state.expected(),
                    });
                }
                put_token(out, b")");
                self.stack.pop();
                self.end_node(out);
            }
            NarEvent::End => {
                if self.state != State::Done {
                    return Err(NarWriteError::UnexpectedEvent { event: "End", expected: self.state.expected() });
                }
            }
        }
        Ok(())
    }
}

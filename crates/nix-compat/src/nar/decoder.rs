//! Sans-I/O NAR decoder: feed it bytes, get [`NarEvent`]s back.

use super::{
    check_name, check_target, lossy, padding_len, NarError, NarEvent, MAGIC, MAX_DEPTH, MAX_NAME_LEN, MAX_TARGET_LEN,
};

/// The grammar position: what the next token (or length) must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Magic,
    NodeOpen,
    TypeKeyword,
    TypeValue,
    /// `executable` or `contents`; `executable_seen` after an `executable ""` pair
    RegularField {
        executable_seen: bool,
    },
    ExecutableValue,
    /// the u64 length of a file's contents
    ContentsLength {
        executable: bool,
    },
    /// streaming a file's contents
    ContentsData,
    TargetKeyword,
    TargetValue,
    /// `)` closing a regular file or symlink node
    NodeClose,
    /// `entry` or `)` inside a directory
    DirectoryItem,
    EntryOpen,
    NameKeyword,
    NameValue,
    NodeKeyword,
    EntryClose,
    Done,
}

impl Expect {
    fn describe(self) -> &'static str {
        match self {
            Expect::Magic => "\"nix-archive-1\"",
            Expect::NodeOpen | Expect::EntryOpen => "\"(\"",
            Expect::TypeKeyword => "\"type\"",
            Expect::TypeValue => "\"regular\", \"symlink\" or \"directory\"",
            Expect::RegularField { executable_seen: false } => "\"executable\" or \"contents\"",
            Expect::RegularField { executable_seen: true } => "\"contents\"",
            Expect::ExecutableValue => "\"\" after \"executable\"",
            Expect::ContentsLength { .. } => "the contents length",
            Expect::ContentsData => "file contents",
            Expect::TargetKeyword => "\"target\"",
            Expect::TargetValue => "a symlink target",
            Expect::NodeClose | Expect::EntryClose => "\")\"",
            Expect::DirectoryItem => "\"entry\" or \")\"",
            Expect::NameKeyword => "\"name\"",
            Expect::NameValue => "an entry name",
            Expect::NodeKeyword => "\"node\"",
            Expect::Done => "the end of the NAR",
        }
    }

    /// Longest token this position can take; longer ones are rejected
    /// before any of their bytes are buffered.
    fn max_token_len(self) -> usize {
        match self {
            Expect::NameValue => MAX_NAME_LEN,
            Expect::TargetValue => MAX_TARGET_LEN,
            _ => MAGIC.len(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Lex {
    /// reading a u64 length prefix
    Length { buf: [u8; 8], have: u8 },
    /// reading a token of `len` bytes into `tok`
    Token { len: usize },
    /// streaming file contents
    Contents { remaining: u64 },
    /// checking `remaining` zero padding bytes
    Padding { remaining: u8 },
}

/// A directory being decoded: the last entry name seen, to check ordering.
#[derive(Debug, Default)]
struct Frame {
    last_name: Option<Vec<u8>>,
}

/// Decodes a NAR incrementally and strictly.
///
/// Call [`decode`](Self::decode) with the unconsumed input until it returns
/// `NarEvent::End`; it returns how many bytes it consumed and at most one
/// event. A file's contents are returned as slices of the input, so the
/// decoder itself never holds more than one short token (≤ 4095 bytes).
/// After an error every further call fails.
#[derive(Debug)]
pub struct NarDecoder {
    lex: Lex,
    expect: Expect,
    stack: Vec<Frame>,
    tok: Vec<u8>,
    offset: u64,
    /// padding after the current file's contents
    contents_padding: u8,
    /// the root was a directory whose `DirectoryEnd` was just returned; `End` is owed
    pending_end: bool,
    failed: Option<NarError>,
}

impl Default for NarDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl NarDecoder {
    pub fn new() -> Self {
        NarDecoder {
            lex: Lex::Length { buf: [0; 8], have: 0 },
            expect: Expect::Magic,
            stack: Vec::new(),
            tok: Vec::with_capacity(64),
            offset: 0,
            contents_padding: 0,
            pending_end: false,
            failed: None,
        }
    }

    /// Whether the whole NAR has been decoded.
    pub fn is_done(&self) -> bool {
        self.expect == Expect::Done && !self.pending_end
    }

    /// Whether the next event needs more input. `false` once the root is
    /// complete: a root directory's `End` is owed without another byte, so
    /// a reader on a stream that goes on (a connection) must not wait for
    /// one.
    pub fn needs_input(&self) -> bool {
        self.expect != Expect::Done
    }

    /// Bytes of the current file's contents not yet returned, when inside a
    /// file (`Some(0)` once they all were).
    pub fn contents_remaining(&self) -> Option<u64> {
        match (self.expect, self.lex) {
            (Expect::ContentsData, Lex::Contents { remaining }) => Some(remaining),
            (Expect::ContentsData, _) => Some(0),
            _ => None,
        }
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Call at end of input: an error unless the NAR is complete.
    pub fn finish(&self) -> Result<(), NarError> {
        if let Some(e) = &self.failed {
            return Err(NarError::Poisoned(Box::new(e.clone())));
        }
        if self.expect == Expect::Done {
            Ok(())
        } else {
            Err(NarError::Truncated { offset: self.offset, expected: self.expect.describe() })
        }
    }

    /// Consumes a prefix of `input`; returns the number of bytes consumed and
    /// the event completed by them, if any. `(input.len(), None)` means more
    /// input is needed. After `End`, any further input is `TrailingData`.
    pub fn decode<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Option<NarEvent<'a>>), NarError> {
        if let Some(e) = &self.failed {
            return Err(NarError::Poisoned(Box::new(e.clone())));
        }
        match self.decode_inner(input) {
            Ok((n, ev)) => {
                self.offset += n as u64;
                Ok((n, ev))
            }
            Err(e) => {
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }

    fn decode_inner<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Option<NarEvent<'a>>), NarError> {
        let mut pos = 0;
        loop {
            if self.expect == Expect::Done {
                if self.pending_end {
                    self.pending_end = false;
                    return Ok((pos, Some(NarEvent::End)));
                }
                if pos < input.len() {
                    return Err(NarError::TrailingData { offset: self.offset + pos as u64 });
                }
                return Ok((pos, None));
            }
            if pos == input.len() {
                // zero-length tokens and their (empty) padding complete without input
                let completes_without_input = matches!(self.lex, Lex::Token { len: 0 } | Lex::Padding { remaining: 0 });
                if !completes_without_input {
                    return Ok((pos, None));
                }
            }
            let at = self.offset + pos as u64;
            match &mut self.lex {
                Lex::Length { buf, have } => {
                    let take = (8 - *have as usize).min(input.len() - pos);
                    buf[*have as usize..*have as usize + take].copy_from_slice(&input[pos..pos + take]);
                    *have += take as u8;
                    pos += take;
                    if *have == 8 {
                        let len = u64::from_le_bytes(*buf);
                        if let Some(ev) = self.on_length(len, at)? {
                            return Ok((pos, Some(ev)));
                        }
                    }
                }
                Lex::Token { len } => {
                    let len = *len;
                    let take = (len - self.tok.len()).min(input.len() - pos);
                    self.tok.extend_from_slice(&input[pos..pos + take]);
                    pos += take;
                    if self.tok.len() == len {
                        self.lex = Lex::Padding { remaining: padding_len(len as u64) as u8 };
                    }
                }
                Lex::Contents { remaining } => {
                    let take = (*remaining).min((input.len() - pos) as u64) as usize;
                    *remaining -= take as u64;
                    if *remaining == 0 {
                        // padding length is already known from the file size
                        self.lex = Lex::Padding { remaining: self.contents_padding };
                    }
                    let data = &input[pos..pos + take];
                    pos += take;
                    return Ok((pos, Some(NarEvent::Contents(data))));
                }
                Lex::Padding { remaining } => {
                    while *remaining > 0 && pos < input.len() {
                        if input[pos] != 0 {
                            return Err(NarError::NonZeroPadding { offset: self.offset + pos as u64 });
                        }
                        *remaining -= 1;
                        pos += 1;
                    }
                    if *remaining == 0 {
                        self.lex = Lex::Length { buf: [0; 8], have: 0 };
                        let ev = if self.expect == Expect::ContentsData {
                            self.expect = Expect::NodeClose;
                            None
                        } else {
                            let tok = std::mem::take(&mut self.tok);
                            let ev = self.on_token(&tok, at)?;
                            self.tok = tok;
                            self.tok.clear();
                            ev
                        };
                        if let Some(ev) = ev {
                            return Ok((pos, Some(ev)));
                        }
                    }
                }
            }
        }
    }

    /// A length prefix is complete: start a token, or a file's contents.
    fn on_length(&mut self, len: u64, at: u64) -> Result<Option<NarEvent<'static>>, NarError> {
        if let Expect::ContentsLength { executable } = self.expect {
            self.expect = Expect::ContentsData;
            self.contents_padding = padding_len(len) as u8;
            self.lex = if len == 0 { Lex::Padding { remaining: 0 } } else { Lex::Contents { remaining: len } };
            return Ok(Some(NarEvent::File { executable, size: len }));
        }
        let max = self.expect.max_token_len();
        if len > max as u64 {
            if self.expect == Expect::Magic {
                return Err(NarError::BadMagic);
            }
            return Err(NarError::TokenTooLong { offset: at, len, max, expected: self.expect.describe() });
        }
        self.lex = Lex::Token { len: len as usize };
        Ok(None)
    }

    fn unexpected(&self, tok: &[u8], at: u64) -> NarError {
        if self.expect == Expect::Magic {
            return NarError::BadMagic;
        }
        NarError::UnexpectedToken { offset: at, expected: self.expect.describe(), found: lossy(tok) }
    }

    /// A whole token (with its padding) has been read.
    fn on_token(&mut self, tok: &[u8], at: u64) -> Result<Option<NarEvent<'static>>, NarError> {
        let (next, event) = match (self.expect, tok) {
            (Expect::Magic, MAGIC) => (Expect::NodeOpen, None),
            (Expect::NodeOpen, b"(") => (Expect::TypeKeyword, None),
            (Expect::TypeKeyword, b"type") => (Expect::TypeValue, None),
            (Expect::TypeValue, b"regular") => (Expect::RegularField { executable_seen: false }, None),
            (Expect::TypeValue, b"symlink") => (Expect::TargetKeyword, None),
            (Expect::TypeValue, b"directory") => {
                if self.stack.len() >= MAX_DEPTH {
                    return Err(NarError::TooDeep { offset: at });
                }
                self.stack.push(Frame::default());
                (Expect::DirectoryItem, Some(NarEvent::DirectoryStart))
            }
            (Expect::RegularField { executable_seen: false }, b"executable") => (Expect::ExecutableValue, None),
            (Expect::ExecutableValue, b"") => (Expect::RegularField { executable_seen: true }, None),
            (Expect::RegularField { executable_seen }, b"contents") => {
                (Expect::ContentsLength { executable: executable_seen }, None)
            }
            (Expect::TargetKeyword, b"target") => (Expect::TargetValue, None),
            (Expect::TargetValue, target) => {
                if let Err(reason) = check_target(target) {
                    return Err(NarError::InvalidTarget { offset: at, target: lossy(target), reason });
                }
                (Expect::NodeClose, Some(NarEvent::Symlink { target: target.to_vec() }))
            }
            (Expect::NodeClose, b")") => (self.node_finished(), None),
            (Expect::DirectoryItem, b"entry") => (Expect::EntryOpen, None),
            (Expect::DirectoryItem, b")") => {
                self.stack.pop();
                (self.node_finished(), Some(NarEvent::DirectoryEnd))
            }
            (Expect::EntryOpen, b"(") => (Expect::NameKeyword, None),
            (Expect::NameKeyword, b"name") => (Expect::NameValue, None),
            (Expect::NameValue, name) => {
                if let Err(reason) = check_name(name) {
                    return Err(NarError::InvalidName { offset: at, name: lossy(name), reason });
                }
                let frame = self.stack.last_mut().expect("inside a directory");
                if let Some(prev) = &frame.last_name {
                    if name == prev.as_slice() {
                        return Err(NarError::DuplicateName { offset: at, name: lossy(name) });
                    }
                    if name < prev.as_slice() {
                        return Err(NarError::NotSorted { offset: at, prev: lossy(prev), name: lossy(name) });
                    }
                }
                frame.last_name = Some(name.to_vec());
                (Expect::NodeKeyword, Some(NarEvent::Entry { name: name.to_vec() }))
            }
            (Expect::NodeKeyword, b"node") => (Expect::NodeOpen, None),
            (Expect::EntryClose, b")") => (Expect::DirectoryItem, None),
            _ => return Err(self.unexpected(tok, at)),
        };
        self.expect = next;
        if next == Expect::Done {
            // The root node's events precede End; report End on the next call
            // if this token produced an event of its own.
            if let Some(ev) = event {
                self.pending_end = true;
                return Ok(Some(ev));
            }
            return Ok(Some(NarEvent::End));
        }
        Ok(event)
    }

    /// A node ended: back to the enclosing entry, or the NAR is complete.
    fn node_finished(&self) -> Expect {
        if self.stack.is_empty() {
            Expect::Done
        } else {
            Expect::EntryClose
        }
    }
}

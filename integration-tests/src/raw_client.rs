//! A worker-protocol client written byte by byte from the protocol's
//! description (`shared/spec/worker-protocol.md`), not with our encoder: for
//! what no Nix sends (garbage, unknown ops, lies), and to see every field of
//! the handshake at any version.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

pub const WORKER_MAGIC_1: u64 = 0x6e697863;
pub const WORKER_MAGIC_2: u64 = 0x6478696f;
pub const STDERR_LAST: u64 = 0x616c7473;
pub const STDERR_ERROR: u64 = 0x63787470;

pub fn u64le(v: u64) -> [u8; 8] {
    v.to_le_bytes()
}

/// A byte string as the protocol carries it: length, bytes, zero padding to 8.
pub fn string(s: &[u8]) -> Vec<u8> {
    let mut v = u64le(s.len() as u64).to_vec();
    v.extend_from_slice(s);
    v.resize(v.len() + (8 - s.len() % 8) % 8, 0);
    v
}

pub fn strings(list: &[&str]) -> Vec<u8> {
    let mut v = u64le(list.len() as u64).to_vec();
    for s in list {
        v.extend(string(s.as_bytes()));
    }
    v
}

/// What the client saw of the handshake.
#[derive(Debug, PartialEq, Eq)]
pub struct Handshake {
    pub server_version: u64,
    /// ≥1.38
    pub server_features: Option<Vec<String>>,
    /// ≥1.33
    pub daemon_version: Option<String>,
    /// ≥1.35: 1 trusted, 2 not trusted
    pub trust: Option<u64>,
    /// The STDERR_ERROR message of a refused connection.
    pub refused: Option<String>,
}

/// A connection after its handshake; `minor` is the client's protocol minor.
pub struct RawClient {
    pub stream: UnixStream,
    pub minor: u64,
}

impl RawClient {
    /// Connects to `socket` and shakes hands at 1.34 as Nix 2.8 does;
    /// panics unless the daemon accepts.
    pub fn connect(socket: &Path) -> RawClient {
        let s = UnixStream::connect(socket).expect("connecting to the daemon");
        let (h, c) = RawClient::handshake(s, 0x122, &[], false);
        assert_eq!(h.server_version, 0x126);
        assert_eq!(h.refused, None, "refused");
        c
    }

    /// Shakes hands at `version` on `stream`. `eager`: magic and version in
    /// one go, as Nix ≥ 2.24 sends them; else the version only after the
    /// server's magic, as Nix 2.8 does.
    pub fn handshake(stream: UnixStream, version: u64, features: &[&str], eager: bool) -> (Handshake, RawClient) {
        stream.set_read_timeout(Some(Duration::from_secs(20))).expect("setting a read timeout");
        let minor = version & 0xff;
        let mut c = RawClient { stream, minor };
        c.send(&u64le(WORKER_MAGIC_1));
        if eager {
            c.send(&u64le(version));
        }
        assert_eq!(c.u64(), WORKER_MAGIC_2);
        let server_version = c.u64();
        if !eager {
            c.send(&u64le(version));
        }
        let server_features = (minor >= 38).then(|| {
            c.send(&strings(features));
            let n = c.u64();
            (0..n).map(|_| c.string()).collect()
        });
        if minor >= 14 {
            c.send(&u64le(0)); // no CPU affinity
        }
        if minor >= 11 {
            c.send(&u64le(0)); // reserveSpace
        }
        let daemon_version = (minor >= 33).then(|| c.string());
        let trust = (minor >= 35).then(|| c.u64());
        let refused = match c.u64() {
            STDERR_LAST => None,
            STDERR_ERROR => Some(c.error_body()),
            other => panic!("expected STDERR_LAST or STDERR_ERROR after the handshake, got {other:#x}"),
        };
        (Handshake { server_version, server_features, daemon_version, trust, refused }, c)
    }

    pub fn send(&mut self, b: &[u8]) {
        self.stream.write_all(b).expect("writing to the daemon");
    }

    pub fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.stream.read_exact(&mut b).expect("reading a u64");
        u64::from_le_bytes(b)
    }

    pub fn string(&mut self) -> String {
        let n = self.u64() as usize;
        let mut b = vec![0u8; n + (8 - n % 8) % 8];
        self.stream.read_exact(&mut b).expect("reading a string");
        b.truncate(n);
        String::from_utf8(b).expect("a UTF-8 string")
    }

    /// Reads a STDERR_ERROR and returns its message.
    pub fn error(&mut self) -> String {
        assert_eq!(self.u64(), STDERR_ERROR, "expected STDERR_ERROR");
        self.error_body()
    }

    /// An error after its STDERR_ERROR tag, in the layout of our version.
    fn error_body(&mut self) -> String {
        if self.minor < 26 {
            let msg = self.string();
            assert_eq!(self.u64(), 1, "exit status");
            return msg;
        }
        assert_eq!(self.string(), "Error");
        self.u64(); // level
        self.string(); // name
        let msg = self.string();
        assert_eq!(self.u64(), 0, "no position");
        let traces = self.u64();
        for _ in 0..traces {
            self.u64();
            self.string();
        }
        msg
    }

    /// IsValidPath on a path that is not there: the connection works.
    pub fn works(&mut self) {
        self.send(&u64le(1));
        self.send(&string(b"/nix/store/00000000000000000000000000000000-nothing"));
        assert_eq!(self.u64(), STDERR_LAST);
        assert_eq!(self.u64(), 0);
    }

    /// Whether the daemon closed the connection.
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        loop {
            match self.stream.read(&mut b) {
                Ok(0) => return true,
                Ok(_) => continue, // an error message first is fine
                Err(_) => return false,
            }
        }
    }
}

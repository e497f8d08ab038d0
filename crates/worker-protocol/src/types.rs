//! Composite values of the protocol, version-aware: path infos, content
//! addresses, derived paths, build results, errors, stderr messages.

use nix_compat::content_address::ContentAddress;
use nix_compat::hash::{HashAlgo, NixHash};
use nix_compat::store_path::StorePath;
use tokio::io::AsyncRead;

use crate::wire::{self, WireError, WireWriter};

pub const WORKER_MAGIC_1: u64 = 0x6e697863;
pub const WORKER_MAGIC_2: u64 = 0x6478696f;
/// 1.38: what Nix 2.24 – 2.35 speak.
pub const PROTOCOL_VERSION: u64 = 0x126;
/// The oldest client we talk to (Nix's own floor).
pub const MIN_CLIENT_VERSION: u64 = 0x10a;

pub const STDERR_NEXT: u64 = 0x6f6c6d67;
pub const STDERR_READ: u64 = 0x64617461;
pub const STDERR_WRITE: u64 = 0x64617416;
pub const STDERR_LAST: u64 = 0x616c7473;
pub const STDERR_ERROR: u64 = 0x63787470;

pub fn minor(version: u64) -> u64 {
    version & 0xff
}

pub fn version_string(version: u64) -> String {
    format!("{}.{}", version >> 8, minor(version))
}

/// Trust as told to clients at ≥1.35.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trust {
    Unknown = 0,
    Trusted = 1,
    NotTrusted = 2,
}

/// What a daemon tells a client after the version exchange: ≥1.33 its
/// version string, ≥1.35 the client's trust.
pub fn encode_client_handshake_info(w: &mut WireWriter, version: u64, daemon_version: &str, trust: Trust) {
    if minor(version) >= 33 {
        w.string(daemon_version);
    }
    if minor(version) >= 35 {
        w.u64(trust as u64);
    }
}

/// An error reply (after STDERR_ERROR).
pub fn encode_error(w: &mut WireWriter, version: u64, message: &str) {
    if minor(version) >= 26 {
        w.string("Error").u64(0).string("Error").string(message).u64(0).u64(0);
    } else {
        w.string(message).u64(1);
    }
}

/// A narHash as Nix sends it: lowercase base16, no algorithm prefix.
pub fn encode_nar_hash(h: &NixHash) -> String {
    h.to_base16()
}

/// A narHash as clients send it: base16, nix32 or base64, maybe prefixed.
pub fn parse_nar_hash(s: &str) -> Result<NixHash, WireError> {
    NixHash::parse(s, Some(HashAlgo::Sha256)).map_err(|e| WireError::Invalid(format!("invalid narHash {s:?}: {e}")))
}

pub fn parse_opt_ca(s: &str) -> Result<Option<ContentAddress>, WireError> {
    if s.is_empty() {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|e| WireError::Invalid(format!("invalid content address {s:?}: {e}")))
}

/// A path info as the protocol carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WirePathInfo {
    pub deriver: Option<StorePath>,
    pub nar_hash: NixHash,
    pub references: Vec<StorePath>,
    pub registration_time: u64,
    pub nar_size: u64,
    pub ultimate: bool,
    pub sigs: Vec<String>,
    pub ca: Option<ContentAddress>,
}

pub fn encode_unkeyed_path_info(w: &mut WireWriter, version: u64, i: &WirePathInfo) {
    w.opt_path(i.deriver.as_ref())
        .string(&encode_nar_hash(&i.nar_hash))
        .paths(&i.references)
        .u64(i.registration_time)
        .u64(i.nar_size);
    if minor(version) >= 16 {
        let mut sigs = i.sigs.clone();
        sigs.sort();
        w.bool(i.ultimate).strings(sigs).string(&i.ca.as_ref().map(|c| c.to_string()).unwrap_or_default());
    }
}

pub fn encode_path_info(w: &mut WireWriter, version: u64, path: &StorePath, i: &WirePathInfo) {
    w.path(path);
    encode_unkeyed_path_info(w, version, i);
}

pub async fn read_unkeyed_path_info<R: AsyncRead + Unpin>(r: &mut R, version: u64) -> wire::Result<WirePathInfo> {
    let deriver = wire::read_opt_path(r).await?;
    let nar_hash = parse_nar_hash(&wire::read_string(r).await?)?;
    let references = wire::read_paths(r).await?;
    let registration_time = wire::read_u64(r).await?;
    let nar_size = wire::read_u64(r).await?;
    let (mut ultimate, mut sigs, mut ca) = (false, vec![], None);
    if minor(version) >= 16 {
        ultimate = wire::read_bool(r).await?;
        sigs = wire::read_strings(r).await?;
        ca = parse_opt_ca(&wire::read_string(r).await?)?;
    }
    Ok(WirePathInfo { deriver, nar_hash, references, registration_time, nar_size, ultimate, sigs, ca })
}

pub async fn read_path_info<R: AsyncRead + Unpin>(r: &mut R, version: u64) -> wire::Result<(StorePath, WirePathInfo)> {
    let path = wire::read_path(r).await?;
    Ok((path, read_unkeyed_path_info(r, version).await?))
}

/// A DerivedPath: an opaque store path, or `drv!out1,out2` / `drv!*`. The
/// original text is kept: results must echo it exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DerivedPath {
    Opaque(StorePath),
    Built { drv: StorePath, outputs: Vec<String> },
}

impl DerivedPath {
    pub fn parse(s: &str) -> Result<DerivedPath, WireError> {
        match s.split_once('!') {
            None => Ok(DerivedPath::Opaque(wire::parse_path(s)?)),
            Some((drv, outs)) => Ok(DerivedPath::Built {
                drv: wire::parse_path(drv)?,
                outputs: outs.split(',').map(str::to_string).collect(),
            }),
        }
    }

    pub fn to_wire(&self) -> String {
        match self {
            DerivedPath::Opaque(p) => p.to_absolute_path(),
            DerivedPath::Built { drv, outputs } => format!("{}!{}", drv.to_absolute_path(), outputs.join(",")),
        }
    }
}

/// BuildResult.status values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildStatus {
    Built = 0,
    Substituted = 1,
    AlreadyValid = 2,
    PermanentFailure = 3,
    InputRejected = 4,
    OutputRejected = 5,
    TransientFailure = 6,
    CachedFailure = 7,
    TimedOut = 8,
    MiscFailure = 9,
    DependencyFailed = 10,
    LogLimitExceeded = 11,
    NotDeterministic = 12,
    ResolvesToAlreadyValid = 13,
    NoSubstituters = 14,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildResult {
    pub status: u64,
    pub error_msg: String,
    pub times_built: u64,
    pub is_non_deterministic: bool,
    pub start_time: u64,
    pub stop_time: u64,
    pub cpu_user: Option<u64>,
    pub cpu_system: Option<u64>,
    /// DrvOutput id → realisation JSON
    pub built_outputs: Vec<(String, String)>,
}

impl BuildResult {
    pub fn status(status: BuildStatus, msg: &str) -> Self {
        BuildResult {
            status: status as u64,
            error_msg: msg.into(),
            times_built: 0,
            is_non_deterministic: false,
            start_time: 0,
            stop_time: 0,
            cpu_user: None,
            cpu_system: None,
            built_outputs: vec![],
        }
    }
}

pub fn encode_build_result(w: &mut WireWriter, version: u64, b: &BuildResult) {
    w.u64(b.status).string(&b.error_msg);
    if minor(version) >= 29 {
        w.u64(b.times_built).bool(b.is_non_deterministic).u64(b.start_time).u64(b.stop_time);
    }
    if minor(version) >= 37 {
        for v in [b.cpu_user, b.cpu_system] {
            match v {
                None => w.u64(0),
                Some(us) => w.u64(1).u64(us),
            };
        }
    }
    if minor(version) >= 28 {
        w.u64(b.built_outputs.len() as u64);
        for (k, v) in &b.built_outputs {
            w.string(k).string(v);
        }
    }
}

pub async fn read_build_result<R: AsyncRead + Unpin>(r: &mut R, version: u64) -> wire::Result<BuildResult> {
    let mut b = BuildResult::status(BuildStatus::Built, "");
    b.status = wire::read_u64(r).await?;
    b.error_msg = wire::read_string(r).await?;
    if minor(version) >= 29 {
        b.times_built = wire::read_u64(r).await?;
        b.is_non_deterministic = wire::read_bool(r).await?;
        b.start_time = wire::read_u64(r).await?;
        b.stop_time = wire::read_u64(r).await?;
    }
    if minor(version) >= 37 {
        b.cpu_user = if wire::read_bool(r).await? { Some(wire::read_u64(r).await?) } else { None };
        b.cpu_system = if wire::read_bool(r).await? { Some(wire::read_u64(r).await?) } else { None };
    }
    if minor(version) >= 28 {
        b.built_outputs = wire::read_string_pairs(r).await?;
    }
    Ok(b)
}

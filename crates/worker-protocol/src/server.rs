//! The daemon side of a connection: handshake, then one operation after
//! another, each answered from the store and castore services. Generic over
//! the stream, so tests drive it through an in-memory pipe.
//!
//! Failures while reading an operation's arguments end the connection (the
//! stream is out of step); failures after that are reported with
//! STDERR_ERROR and the connection goes on.

use std::sync::Arc;

use nix_compat::signing::{any_valid, fingerprint, Signature, VerifyingKey};
use nix_compat::store_path::StorePath;
use snix_castore::blobservice::BlobService;
use snix_castore::directoryservice::DirectoryService;
use snix_store::pathinfoservice::{get_path, PathInfoService};
use snix_store::register::{add_content_addressed, add_nar, flat_file_nar, CaMethod, Claimed};
use snix_store::PathInfo;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};

use crate::ops::{op_name, read_multiple_entry, read_request, AddToStoreNar, Request, RequestError};
use crate::trust::Access;
use crate::types::*;
use crate::wire::{self, FramedReader, WireError, WireWriter};

/// How the daemon decides what clients may do.
#[derive(Clone, Debug)]
pub struct Policy {
    pub require_sigs: bool,
    pub trusted_public_keys: Vec<VerifyingKey>,
    pub daemon_version: String,
}

/// The services behind the daemon.
#[derive(Clone)]
pub struct Backend {
    pub blobs: Arc<dyn BlobService>,
    pub dirs: Arc<dyn DirectoryService>,
    pub infos: Arc<dyn PathInfoService>,
    /// Path infos seen, shared by all connections. A registered path's info
    /// does not change (but for signatures added here), so hits need no
    /// round trip; misses are never cached — a path may appear any time.
    cache: Arc<std::sync::Mutex<lru::LruCache<[u8; 20], PathInfo>>>,
}

const PATH_INFO_CACHE: usize = 65_536;

impl Backend {
    pub fn new(blobs: Arc<dyn BlobService>, dirs: Arc<dyn DirectoryService>, infos: Arc<dyn PathInfoService>) -> Self {
        let cache = lru::LruCache::new(std::num::NonZeroUsize::new(PATH_INFO_CACHE).expect("non-zero"));
        Backend { blobs, dirs, infos, cache: Arc::new(std::sync::Mutex::new(cache)) }
    }

    pub async fn path_info(&self, p: &StorePath) -> Result<Option<PathInfo>, snix_castore::Error> {
        if let Some(i) = self.cache.lock().expect("cache lock").get(p.digest()) {
            if i.store_path == *p {
                return Ok(Some(i.clone()));
            }
        }
        let info = get_path(&*self.infos, p).await?;
        if let Some(i) = &info {
            self.remember(i);
        }
        Ok(info)
    }

    fn remember(&self, i: &PathInfo) {
        self.cache.lock().expect("cache lock").put(*i.store_path.digest(), i.clone());
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("handshake: {0}")]
    Handshake(String),
    #[error("client protocol {} is older than 1.10", version_string(*.0))]
    TooOld(u64),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Fatal(String),
}

/// An operation's failure, reported to the client.
type OpResult<T> = Result<T, String>;

fn to_wire_info(i: &PathInfo) -> WirePathInfo {
    WirePathInfo {
        deriver: i.deriver.clone(),
        nar_hash: i.nar_hash(),
        references: i.references.clone(),
        registration_time: 0,
        nar_size: i.nar_size,
        ultimate: false,
        sigs: i.signatures.iter().map(|s| s.to_string()).collect(),
        ca: i.ca.clone(),
    }
}

pub struct Connection<R, W> {
    r: BufReader<R>,
    w: BufWriter<W>,
    version: u64,
    access: Access,
    backend: Backend,
    policy: Arc<Policy>,
    user: String,
}

impl<R: AsyncRead + Unpin + Send, W: AsyncWrite + Unpin + Send> Connection<R, W> {
    /// Runs the handshake; a refused user gets an error and the connection ends.
    pub async fn handshake(
        r: R,
        w: W,
        access: Access,
        user: String,
        backend: Backend,
        policy: Arc<Policy>,
    ) -> Result<Option<Self>, ConnError> {
        let mut c = Connection {
            r: BufReader::with_capacity(256 * 1024, r),
            w: BufWriter::with_capacity(256 * 1024, w),
            version: PROTOCOL_VERSION,
            access,
            backend,
            policy,
            user,
        };
        let magic = wire::read_u64(&mut c.r).await?;
        if magic != WORKER_MAGIC_1 {
            return Err(ConnError::Handshake(format!("protocol mismatch (magic {magic:#x})")));
        }
        c.send(WireWriter::new().u64(WORKER_MAGIC_2).u64(PROTOCOL_VERSION)).await?;
        let client = wire::read_u64(&mut c.r).await?;
        if client < MIN_CLIENT_VERSION || client >> 8 != 1 {
            return Err(ConnError::TooOld(client));
        }
        c.version = client.min(PROTOCOL_VERSION);
        let m = minor(c.version);
        if m >= 38 {
            // ours first: works whichever side a client reads first
            c.send(WireWriter::new().strings(Vec::<String>::new())).await?;
            let _client_features = wire::read_strings(&mut c.r).await?;
        }
        if m >= 14 && wire::read_u64(&mut c.r).await? != 0 {
            let _affinity = wire::read_u64(&mut c.r).await?;
        }
        if m >= 11 {
            let _reserve_space = wire::read_bool(&mut c.r).await?;
        }
        let trust = if access == Access::Trusted { Trust::Trusted } else { Trust::NotTrusted };
        let mut w = WireWriter::new();
        encode_client_handshake_info(&mut w, c.version, &c.policy.daemon_version, trust);
        if access == Access::Refused {
            let msg = format!("user '{}' is not allowed to connect to the Nix daemon", c.user);
            w.u64(STDERR_ERROR);
            encode_error(&mut w, c.version, &msg);
            c.send(&w).await?;
            return Ok(None);
        }
        w.u64(STDERR_LAST);
        c.send(&w).await?;
        tracing::debug!(user = %c.user, protocol = %version_string(c.version), trusted = access == Access::Trusted, "client connected");
        Ok(Some(c))
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    async fn send(&mut self, w: &WireWriter) -> std::io::Result<()> {
        self.w.write_all(&w.buf).await?;
        self.w.flush().await
    }

    async fn reply(&mut self, body: WireWriter) -> std::io::Result<()> {
        let mut w = WireWriter::new();
        w.u64(STDERR_LAST);
        w.buf.extend_from_slice(&body.buf);
        self.send(&w).await
    }

    async fn reply_error(&mut self, msg: &str) -> std::io::Result<()> {
        let mut w = WireWriter::new();
        w.u64(STDERR_ERROR);
        encode_error(&mut w, self.version, msg);
        self.send(&w).await
    }

    /// Serves operations until the client hangs up.
    pub async fn serve(mut self) -> Result<(), ConnError> {
        loop {
            // a clean end is EOF exactly between operations
            if self.r.fill_buf().await?.is_empty() {
                return Ok(());
            }
            let op = wire::read_u64(&mut self.r).await?;
            let req = match read_request(op, self.version, &mut self.r).await {
                Ok(r) => r,
                Err(e @ RequestError::Unsupported(_)) => {
                    tracing::warn!(user = %self.user, "{e}");
                    self.reply_error(&e.to_string()).await?;
                    continue;
                }
                Err(e) => {
                    let _ = self.reply_error(&e.to_string()).await;
                    return Err(e.into());
                }
            };
            tracing::debug!(user = %self.user, op, name = op_name(op), "operation");
            self.handle(req).await?;
        }
    }

    async fn path_info(&self, p: &StorePath) -> OpResult<Option<PathInfo>> {
        self.backend.path_info(p).await.map_err(|e| e.to_string())
    }

    async fn is_valid(&self, p: &StorePath) -> OpResult<bool> {
        Ok(self.path_info(p).await?.is_some())
    }

    async fn all_infos(&self) -> OpResult<Vec<PathInfo>> {
        use futures::TryStreamExt;
        self.backend.infos.list().try_collect().await.map_err(|e| e.to_string())
    }

    fn trusted(&self) -> bool {
        self.access == Access::Trusted
    }

    fn claimed(path: StorePath, info: WirePathInfo) -> OpResult<Claimed> {
        let signatures = info
            .sigs
            .iter()
            .map(|s| s.parse::<Signature>().map_err(|e| format!("invalid signature {s:?}: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Claimed {
            store_path: path,
            nar_hash: info.nar_hash,
            nar_size: info.nar_size,
            references: info.references,
            deriver: info.deriver,
            signatures,
            ca: info.ca,
        })
    }

    async fn add_one<N: AsyncRead + Unpin + Send>(
        backend: &Backend,
        nar: N,
        path: StorePath,
        info: WirePathInfo,
    ) -> OpResult<()> {
        if backend.path_info(&path).await.map_err(|e| e.to_string())?.is_some() {
            // already valid: read and discard the NAR, as Nix does
            let mut nar = nar;
            tokio::io::copy(&mut nar, &mut tokio::io::sink()).await.map_err(|e| e.to_string())?;
            return Ok(());
        }
        let claim = Self::claimed(path, info)?;
        let info =
            add_nar(nar, claim, &*backend.blobs, &*backend.dirs, &*backend.infos).await.map_err(|e| e.to_string())?;
        backend.remember(&info);
        Ok(())
    }

    /// One operation, arguments already read.
    /// One operation, arguments already read. Operations that read a
    /// stream from the connection (or write one) are handled here, since
    /// failing to finish that stream ends the connection; the rest are
    /// answered by [`answer`](Self::answer).
    async fn handle(&mut self, req: Request) -> Result<(), ConnError> {
        let mut w = WireWriter::new();
        let result: OpResult<()> = match req {
            Request::NarFromPath(p) => return self.nar_from_path(&p).await,
            Request::AddToStore { name, method, references, .. } => {
                let r = self.add_to_store(&name, &method, references).await?;
                r.map(|i| encode_path_info(&mut w, self.version, &i.store_path, &to_wire_info(&i)))
            }
            Request::AddToStoreNar(req) => self.add_to_store_nar(*req).await?,
            Request::AddMultipleToStore { dont_check_sigs, .. } => self.add_multiple(dont_check_sigs).await?,
            Request::AddBuildLog(_) => {
                let mut framed = FramedReader::new(&mut self.r);
                framed.drain().await?;
                w.u64(1);
                Ok(())
            }
            other => self.answer(other, &mut w).await,
        };
        match result {
            Ok(()) => self.reply(w).await?,
            Err(msg) => {
                tracing::info!(user = %self.user, "operation failed: {msg}");
                self.reply_error(&msg).await?
            }
        }
        Ok(())
    }

    /// An operation answered from its arguments alone: the reply goes to `w`.
    async fn answer(&self, req: Request, w: &mut WireWriter) -> OpResult<()> {
        match req {
            Request::SetOptions(_) => {}
            Request::IsValidPath(p) => {
                w.bool(self.is_valid(&p).await?);
            }
            Request::QueryPathInfo(p) => {
                let m = minor(self.version);
                match self.path_info(&p).await? {
                    Some(i) => {
                        if m >= 17 {
                            w.bool(true);
                        }
                        encode_unkeyed_path_info(w, self.version, &to_wire_info(&i));
                    }
                    None if m >= 17 => {
                        w.bool(false);
                    }
                    None => return Err(format!("path '{p}' is not valid")),
                }
            }
            Request::QueryValidPaths { paths, .. } => {
                let mut valid = Vec::new();
                for p in paths {
                    if self.is_valid(&p).await? {
                        valid.push(p);
                    }
                }
                w.paths(&valid);
            }
            Request::QueryAllValidPaths => {
                let all = self.all_infos().await?;
                w.paths(all.iter().map(|i| &i.store_path));
            }
            Request::QueryReferrers(p) => {
                let all = self.all_infos().await?;
                w.paths(all.iter().filter(|i| i.references.contains(&p)).map(|i| &i.store_path));
            }
            Request::QueryValidDerivers(p) => {
                let mut valid = Vec::new();
                if let Some(d) = self.path_info(&p).await?.and_then(|i| i.deriver) {
                    if self.is_valid(&d).await? {
                        valid.push(d);
                    }
                }
                w.paths(&valid);
            }
            Request::QueryDeriver(p) => {
                let deriver = self.path_info(&p).await?.and_then(|i| i.deriver);
                w.opt_path(deriver.as_ref());
            }
            Request::QueryPathFromHashPart(h) => {
                w.opt_path(self.path_from_hash_part(&h).await?.as_ref());
            }
            Request::EnsurePath(p) | Request::AddTempRoot(p) => {
                if !self.is_valid(&p).await? {
                    return Err(format!("path '{p}' is not valid"));
                }
                w.u64(1);
            }
            Request::AddIndirectRoot(_) | Request::SyncWithGc | Request::OptimiseStore => {
                w.u64(1);
            }
            // nothing to report: no GC roots, substitutes, derivation outputs or realisations here
            Request::FindRoots
            | Request::QuerySubstitutablePathInfo(_)
            | Request::QuerySubstitutablePathInfos(_)
            | Request::QuerySubstitutablePaths(_)
            | Request::QueryDerivationOutputs(_)
            | Request::QueryDerivationOutputNames(_)
            | Request::QueryDerivationOutputMap(_)
            | Request::QueryRealisation(_) => {
                w.u64(0);
            }
            Request::QueryMissing(paths) => {
                let mut unknown = Vec::new();
                for s in &paths {
                    match DerivedPath::parse(s).map_err(|e| e.to_string())? {
                        DerivedPath::Opaque(p) => {
                            if !self.is_valid(&p).await? {
                                unknown.push(p);
                            }
                        }
                        DerivedPath::Built { drv, .. } => unknown.push(drv),
                    }
                }
                w.u64(0).u64(0).paths(&unknown).u64(0).u64(0);
            }
            Request::BuildPaths { paths, .. } => {
                self.check_buildable(&paths).await?;
                w.u64(1);
            }
            Request::BuildPathsWithResults { paths, .. } => {
                self.check_buildable(&paths).await?;
                w.u64(paths.len() as u64);
                for p in &paths {
                    w.string(p);
                    encode_build_result(w, self.version, &BuildResult::status(BuildStatus::AlreadyValid, ""));
                }
            }
            Request::CollectGarbage => return Err("garbage collection is not supported by this store".into()),
            Request::VerifyStore { .. } => return Err("verifying the store is not supported by this store".into()),
            Request::RegisterDrvOutput(_) => return Err("this store does not record realisations".into()),
            Request::AddPermRoot { .. } => return Err("this store does not keep GC roots".into()),
            Request::AddSignatures { path, sigs } => {
                self.add_signatures(&path, &sigs).await?;
                w.u64(1);
            }
            Request::AddTextToStore { name, text, references } => {
                let size = text.len() as u64;
                let nar = flat_file_nar(std::io::Cursor::new(text), size);
                let b = &self.backend;
                let info =
                    add_content_addressed(nar, &name, CaMethod::Text, references, &*b.blobs, &*b.dirs, &*b.infos)
                        .await
                        .map_err(|e| e.to_string())?;
                w.path(&info.store_path);
            }
            Request::NarFromPath(_)
            | Request::AddToStore { .. }
            | Request::AddToStoreNar(_)
            | Request::AddMultipleToStore { .. }
            | Request::AddBuildLog(_) => unreachable!("streaming operations are handled by `handle`"),
        }
        Ok(())
    }

    async fn path_from_hash_part(&self, h: &str) -> OpResult<Option<StorePath>> {
        let Ok(digest) = nix_compat::nixbase32::decode_fixed::<20>(h.as_bytes()) else {
            return Err(format!("invalid store path hash part {h:?}"));
        };
        let info = self.backend.infos.get(digest).await.map_err(|e| e.to_string())?;
        Ok(info.map(|i| i.store_path))
    }

    /// Only already-valid opaque paths "build" here.
    async fn check_buildable(&self, paths: &[String]) -> OpResult<()> {
        for s in paths {
            match DerivedPath::parse(s).map_err(|e| e.to_string())? {
                DerivedPath::Opaque(p) => {
                    if !self.is_valid(&p).await? {
                        return Err(format!("path '{p}' is not valid, and this store cannot build or substitute it"));
                    }
                }
                DerivedPath::Built { drv, .. } => {
                    return Err(format!("this store cannot build: '{drv}' would have to be built"));
                }
            }
        }
        Ok(())
    }

    async fn add_signatures(&self, path: &StorePath, sigs: &[String]) -> OpResult<()> {
        if !self.trusted() {
            return Err("you are not privileged to add signatures".into());
        }
        let mut info = self.path_info(path).await?.ok_or_else(|| format!("path '{path}' is not valid"))?;
        for s in sigs {
            let sig: Signature = s.parse().map_err(|e| format!("invalid signature {s:?}: {e}"))?;
            if !info.signatures.contains(&sig) {
                info.signatures.push(sig);
            }
        }
        let info = self.backend.infos.put(info).await.map_err(|e| e.to_string())?;
        self.backend.remember(&info);
        Ok(())
    }

    async fn nar_from_path(&mut self, p: &StorePath) -> Result<(), ConnError> {
        let info = match self.path_info(p).await {
            Ok(Some(i)) => i,
            Ok(None) => return Ok(self.reply_error(&format!("path '{p}' is not valid")).await?),
            Err(e) => return Ok(self.reply_error(&e).await?),
        };
        self.send(WireWriter::new().u64(STDERR_LAST)).await?;
        // the NAR follows raw; a failure now cannot be reported in-band
        let b = self.backend.clone();
        snix_store::nar::render_nar(&mut self.w, &info.node, &*b.blobs, &*b.dirs)
            .await
            .map_err(|e| ConnError::Fatal(format!("sending the NAR of {p}: {e}")))?;
        self.w.flush().await?;
        Ok(())
    }

    /// AddToStore (≥1.25): the content comes framed; a NAR for `fixed:r:`,
    /// else the file's bytes.
    async fn add_to_store(
        &mut self,
        name: &str,
        method: &str,
        references: Vec<StorePath>,
    ) -> Result<OpResult<PathInfo>, ConnError> {
        let b = self.backend.clone();
        let mut framed = FramedReader::new(&mut self.r);
        let result = match CaMethod::parse(method) {
            Err(e) => Err(e),
            Ok(method) if method.takes_nar() => {
                add_content_addressed(&mut framed, name, method, references, &*b.blobs, &*b.dirs, &*b.infos)
                    .await
                    .map_err(|e| e.to_string())
            }
            Ok(method) => match spool(&mut framed).await {
                Err(e) => Err(format!("receiving contents: {e}")),
                Ok((file, size)) => {
                    let nar = flat_file_nar(file, size);
                    add_content_addressed(nar, name, method, references, &*b.blobs, &*b.dirs, &*b.infos)
                        .await
                        .map_err(|e| e.to_string())
                }
            },
        };
        framed.drain().await?;
        Ok(result)
    }

    async fn add_to_store_nar(&mut self, req: AddToStoreNar) -> Result<OpResult<()>, ConnError> {
        let AddToStoreNar { path, info, dont_check_sigs, .. } = req;
        let check = check_signatures(&self.policy, self.trusted(), &path, &info, dont_check_sigs);
        let b = self.backend.clone();
        let m = minor(self.version);
        if m >= 23 {
            let mut framed = FramedReader::new(&mut self.r);
            let result = match check {
                Ok(()) => Self::add_one(&b, &mut framed, path, info).await,
                Err(e) => Err(e),
            };
            framed.drain().await?;
            Ok(result)
        } else if m >= 21 {
            // the NAR is pulled with STDERR_READ requests
            let nar_size = info.nar_size;
            let (mut pipe_w, pipe_r) = tokio::io::duplex(256 * 1024);
            let (r, w) = (&mut self.r, &mut self.w);
            let pump = async move {
                let mut left = nar_size;
                while left > 0 {
                    let want = left.min(64 * 1024);
                    let mut req = WireWriter::new();
                    req.u64(STDERR_READ).u64(want);
                    w.write_all(&req.buf).await?;
                    w.flush().await?;
                    let data = wire::read_bytes_max(r, want).await?;
                    if data.is_empty() {
                        break;
                    }
                    left -= data.len() as u64;
                    if pipe_w.write_all(&data).await.is_err() {
                        break; // the consumer stopped early; its result says why
                    }
                }
                drop(pipe_w);
                Ok::<(), ConnError>(())
            };
            let consume = async move {
                match check {
                    Ok(()) => Self::add_one(&b, pipe_r, path, info).await,
                    Err(e) => Err(e),
                }
            };
            let (pumped, result) = tokio::join!(pump, consume);
            pumped?;
            Ok(result)
        } else {
            Err(ConnError::Fatal(format!(
                "AddToStoreNar at protocol {} (unframed NAR) is not supported",
                version_string(self.version)
            )))
        }
    }

    async fn add_multiple(&mut self, dont_check_sigs: bool) -> Result<OpResult<()>, ConnError> {
        let b = self.backend.clone();
        let (policy, trusted) = (self.policy.clone(), self.trusted());
        let mut framed = FramedReader::new(&mut self.r);
        let result: OpResult<()> = async {
            let count = wire::read_u64(&mut framed).await.map_err(|e| e.to_string())?;
            for _ in 0..count {
                let (path, info) = read_multiple_entry(&mut framed).await.map_err(|e| e.to_string())?;
                let nar_size = info.nar_size;
                let mut nar = (&mut framed).take(nar_size);
                check_signatures(&policy, trusted, &path, &info, dont_check_sigs)?;
                Self::add_one(&b, &mut nar, path, info).await?;
                // a NAR shorter than its narSize was caught by add_nar; skip any rest
                tokio::io::copy(&mut nar, &mut tokio::io::sink()).await.map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        .await;
        framed.drain().await?;
        Ok(result)
    }
}

/// Nix's require-sigs: input-addressed paths need a trusted signature,
/// unless a trusted client asked to skip the check. Content-addressed ones
/// are checked by recomputing their address instead.
fn check_signatures(
    policy: &Policy,
    trusted: bool,
    path: &StorePath,
    info: &WirePathInfo,
    dont_check_sigs: bool,
) -> OpResult<()> {
    if info.ca.is_some() || !policy.require_sigs || (trusted && dont_check_sigs) {
        return Ok(());
    }
    let fp = fingerprint(path, &info.nar_hash, info.nar_size, &info.references);
    let sigs: Vec<Signature> = info.sigs.iter().filter_map(|s| s.parse().ok()).collect();
    if any_valid(&policy.trusted_public_keys, &fp, &sigs) {
        Ok(())
    } else {
        Err(format!("cannot add path '{path}' because it lacks a signature by a trusted key"))
    }
}

/// Receives flat contents into an anonymous temporary file.
async fn spool<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<(tokio::fs::File, u64)> {
    let file = tokio::task::spawn_blocking(tempfile::tempfile).await.map_err(std::io::Error::other)??;
    let mut file = tokio::fs::File::from_std(file);
    let size = tokio::io::copy(r, &mut file).await?;
    file.flush().await?;
    use tokio::io::AsyncSeekExt;
    file.seek(std::io::SeekFrom::Start(0)).await?;
    Ok((file, size))
}

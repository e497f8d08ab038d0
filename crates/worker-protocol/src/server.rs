//! The daemon side of a connection: handshake, then one operation after
//! another, each answered from the store and castore services. Generic over
//! the stream, so tests drive it through an in-memory pipe
//! (`tests/handshake.rs`).
//!
//! Failures while reading an operation's arguments end the connection (the
//! stream is out of step); failures after that are reported with
//! STDERR_ERROR and the connection goes on.

use std::sync::Arc;

use futures::StreamExt;
use nix_compat::derivation::Derivation;
use nix_compat::hash::HashAlgo;
use nix_compat::signing::{any_valid, fingerprint, Signature, VerifyingKey};
use nix_compat::store_path::StorePath;
use snix_castore::blobservice::read_to_vec;
use snix_castore::Node;
use snix_store::composition::StoreServices;
use snix_store::nar::{calculate_nar, ensure_complete};
use snix_store::pathinfoservice::get_path;
use snix_store::register::{add_content_addressed, add_nar, flat_file_nar, CaMethod, CaMethodError, Claimed};
use snix_store::PathInfo;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};

use crate::errors::OpError;
use crate::info_cache::InfoCache;
use crate::ops::{
    op_name, read_multiple_entry, read_request, AddToStoreNar, GcAction, Incoming, Query, Request, RequestError,
};
use crate::trust::Access;
use crate::types::*;
use crate::wire::{self, FramedReader, WireError, WireWriter};
use snix_store::gc;

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
    pub store: StoreServices,
    /// Path infos seen, shared by all connections ([`InfoCache`]).
    cache: InfoCache,
}

/// The largest `.drv` file read to answer a derivation query.
const MAX_DERIVATION: u64 = 16 * 1024 * 1024;
/// Paths whose NARs VerifyStore renders at once.
const VERIFY_CONCURRENCY: usize = 4;

impl Backend {
    pub fn new(store: StoreServices) -> Self {
        Backend { store, cache: InfoCache::default() }
    }

    /// Follows the store's registrations, so cached path infos never
    /// outlive a change (spawned; needs a Tokio runtime).
    pub fn watch_registrations(&self) {
        self.cache.watch(self.store.infos.clone());
    }

    pub async fn path_info(&self, p: &StorePath) -> Result<Option<PathInfo>, snix_store::Error> {
        let ticket = match self.cache.get(p) {
            Ok(i) => return Ok(Some(i)),
            Err(t) => t,
        };
        let info = get_path(&*self.store.infos, p).await?;
        if let Some(i) = &info {
            self.cache.keep(i, ticket);
        }
        Ok(info)
    }

    fn remember(&self, i: &PathInfo) {
        self.cache.remember(i);
    }

    fn forget(&self, p: &StorePath) {
        self.cache.forget(p);
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

/// An operation's outcome; a failure is reported to the client.
type OpResult<T> = Result<T, OpError>;

fn to_wire_info(i: &PathInfo) -> WirePathInfo {
    WirePathInfo {
        deriver: i.deriver.clone(),
        nar_hash: i.nar_hash(),
        references: i.references.clone(),
        registration_time: 0,
        nar_size: i.nar_size,
        ultimate: false,
        sigs: i.well_formed_signatures().iter().map(|s| s.to_string()).collect(),
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

    /// The one place a failure becomes a STDERR_ERROR reply.
    async fn reply_error(&mut self, e: &(dyn std::error::Error + Send + Sync)) -> std::io::Result<()> {
        let mut w = WireWriter::new();
        w.u64(STDERR_ERROR);
        encode_error(&mut w, self.version, &e.to_string());
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
                    self.reply_error(&e).await?;
                    continue;
                }
                Err(e) => {
                    let _ = self.reply_error(&e).await;
                    return Err(e.into());
                }
            };
            tracing::debug!(user = %self.user, op, name = op_name(op), "operation");
            self.handle(req).await?;
        }
    }

    async fn path_info(&self, p: &StorePath) -> OpResult<Option<PathInfo>> {
        Ok(self.backend.path_info(p).await?)
    }

    async fn is_valid(&self, p: &StorePath) -> OpResult<bool> {
        Ok(self.path_info(p).await?.is_some())
    }

    async fn all_infos(&self) -> OpResult<Vec<PathInfo>> {
        use futures::TryStreamExt;
        Ok(self.backend.store.infos.list().try_collect().await?)
    }

    fn trusted(&self) -> bool {
        self.access == Access::Trusted
    }

    fn claimed(path: StorePath, info: WirePathInfo) -> OpResult<Claimed> {
        let signatures = info
            .sigs
            .iter()
            .map(|s| s.parse::<Signature>().map_err(|source| OpError::InvalidSignature { sig: s.clone(), source }))
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
        if backend.path_info(&path).await?.is_some() {
            // already valid: read and discard the NAR, as Nix does
            let mut nar = nar;
            tokio::io::copy(&mut nar, &mut tokio::io::sink()).await.map_err(OpError::Receive)?;
            return Ok(());
        }
        let claim = Self::claimed(path, info)?;
        let s = &backend.store;
        let info = add_nar(nar, claim, &*s.blobs, &*s.dirs, &*s.infos).await?;
        backend.remember(&info);
        Ok(())
    }

    /// One operation, arguments already read. Operations followed by a
    /// stream are handled by [`incoming`](Self::incoming), since failing to
    /// finish that stream ends the connection; NarFromPath and VerifyStore
    /// send their own replies; the rest are answered by
    /// [`answer`](Self::answer).
    async fn handle(&mut self, req: Request) -> Result<(), ConnError> {
        let mut w = WireWriter::new();
        let result = match req {
            Request::NarFromPath(p) => return self.nar_from_path(&p).await,
            Request::VerifyStore { check_contents, repair } => return self.verify_store(check_contents, repair).await,
            Request::Incoming(op) => self.incoming(op, &mut w).await?,
            Request::Query(q) => self.answer(q, &mut w).await,
        };
        match result {
            Ok(()) => self.reply(w).await?,
            Err(e) => {
                tracing::info!(user = %self.user, "operation failed: {e}");
                self.reply_error(&e).await?
            }
        }
        Ok(())
    }

    /// An operation that reads a stream from the connection: the stream is
    /// read to its end whatever the outcome; the reply goes to `w`.
    async fn incoming(&mut self, op: Incoming, w: &mut WireWriter) -> Result<OpResult<()>, ConnError> {
        Ok(match op {
            Incoming::AddToStoreDump { name, recursive, algo } => {
                let r = self.add_to_store_dump(&name, recursive, &algo).await?;
                r.map(|i| {
                    w.path(&i.store_path);
                })
            }
            Incoming::AddToStore { name, method, references, .. } => {
                let r = self.add_to_store(&name, &method, references).await?;
                r.map(|i| encode_path_info(w, self.version, &i.store_path, &to_wire_info(&i)))
            }
            Incoming::AddToStoreNar(req) => self.add_to_store_nar(*req).await?,
            Incoming::AddMultipleToStore { dont_check_sigs, .. } => self.add_multiple(dont_check_sigs).await?,
            Incoming::AddBuildLog(_) => {
                let mut framed = FramedReader::new(&mut self.r);
                framed.drain().await?;
                w.u64(1);
                Ok(())
            }
        })
    }

    /// An operation answered from its arguments alone: the reply goes to `w`.
    async fn answer(&self, req: Query, w: &mut WireWriter) -> OpResult<()> {
        match req {
            Query::SetOptions(_) => {}
            Query::IsValidPath(p) => {
                w.bool(self.is_valid(&p).await?);
            }
            Query::QueryPathInfo(p) => {
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
                    None => return Err(OpError::NotValid(p)),
                }
            }
            Query::QueryValidPaths { paths, .. } => {
                let mut valid = Vec::new();
                for p in paths {
                    if self.is_valid(&p).await? {
                        valid.push(p);
                    }
                }
                w.paths(&valid);
            }
            Query::QueryAllValidPaths => {
                let all = self.all_infos().await?;
                w.paths(all.iter().map(|i| &i.store_path));
            }
            Query::QueryReferrers(p) => {
                let all = self.all_infos().await?;
                w.paths(all.iter().filter(|i| i.references.contains(&p)).map(|i| &i.store_path));
            }
            Query::QueryValidDerivers(p) => {
                let mut valid = Vec::new();
                if let Some(d) = self.path_info(&p).await?.and_then(|i| i.deriver) {
                    if self.is_valid(&d).await? {
                        valid.push(d);
                    }
                }
                w.paths(&valid);
            }
            Query::QueryDeriver(p) => {
                let deriver = self.path_info(&p).await?.and_then(|i| i.deriver);
                w.opt_path(deriver.as_ref());
            }
            Query::QueryPathFromHashPart(h) => {
                w.opt_path(self.path_from_hash_part(&h).await?.as_ref());
            }
            Query::EnsurePath(p) | Query::AddTempRoot(p) => {
                if !self.is_valid(&p).await? {
                    return Err(OpError::NotValid(p));
                }
                w.u64(1);
            }
            Query::AddIndirectRoot(_) | Query::SyncWithGc | Query::OptimiseStore => {
                w.u64(1);
            }
            // a stored derivation's outputs, from its .drv file
            Query::QueryDerivationOutputMap(drv) => {
                let d = self.derivation(&drv).await?;
                w.u64(d.outputs.len() as u64);
                for o in &d.outputs {
                    w.string(&o.name).opt_path(o.path.as_ref());
                }
            }
            Query::QueryDerivationOutputs(drv) => {
                let d = self.derivation(&drv).await?;
                w.paths(d.outputs.iter().filter_map(|o| o.path.as_ref()));
            }
            Query::QueryDerivationOutputNames(drv) => {
                let d = self.derivation(&drv).await?;
                w.strings(d.outputs.iter().map(|o| o.name.as_str()));
            }
            // nothing to report: no GC roots, substitutes or realisations here
            Query::FindRoots
            | Query::QuerySubstitutablePathInfo(_)
            | Query::QuerySubstitutablePathInfos(_)
            | Query::QuerySubstitutablePaths(_)
            | Query::QueryRealisation(_) => {
                w.u64(0);
            }
            Query::QueryMissing(paths) => {
                let mut unknown = Vec::new();
                for s in &paths {
                    match DerivedPath::parse(s)? {
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
            Query::BuildPaths { paths, .. } => {
                self.check_buildable(&paths).await?;
                w.u64(1);
            }
            Query::BuildPathsWithResults { paths, .. } => {
                self.check_buildable(&paths).await?;
                w.u64(paths.len() as u64);
                for p in &paths {
                    w.string(p);
                    encode_build_result(w, self.version, &BuildResult::status(BuildStatus::AlreadyValid, ""));
                }
            }
            Query::CollectGarbage { action, paths, ignore_liveness, max_freed } => {
                let (paths, freed) = self.collect_garbage(action, paths, ignore_liveness, max_freed).await?;
                w.strings(paths.iter().map(|p| p.to_string())).u64(freed).u64(0);
            }
            Query::RegisterDrvOutput(_) => return Err(OpError::NoRealisations),
            Query::AddPermRoot { .. } => return Err(OpError::NoGcRoots),
            Query::AddSignatures { path, sigs } => {
                self.add_signatures(&path, &sigs).await?;
                w.u64(1);
            }
            Query::AddTextToStore { name, text, references } => {
                let size = text.len() as u64;
                let nar = flat_file_nar(std::io::Cursor::new(text), size);
                let s = &self.backend.store;
                let info =
                    add_content_addressed(nar, &name, CaMethod::Text, references, &*s.blobs, &*s.dirs, &*s.infos)
                        .await?;
                w.path(&info.store_path);
            }
        }
        Ok(())
    }

    /// CollectGarbage, for trusted clients. This store keeps no GC roots:
    /// every registered path is live (what `snix-store gc` keeps without
    /// `--keep`), so "dead" paths are none, and collecting sweeps the
    /// castore of what no path reaches. Deleting specific paths
    /// unregisters them; their content goes with a later collection, after
    /// the grace period.
    async fn collect_garbage(
        &self,
        action: GcAction,
        paths: Vec<StorePath>,
        ignore_liveness: bool,
        max_freed: u64,
    ) -> OpResult<(Vec<StorePath>, u64)> {
        if ignore_liveness {
            return Err(OpError::IgnoreLiveness);
        }
        if !self.trusted() {
            return Err(OpError::NotPrivilegedToCollectGarbage);
        }
        let s = &self.backend.store;
        Ok(match action {
            GcAction::ReturnLive => (self.all_infos().await?.into_iter().map(|i| i.store_path).collect(), 0),
            GcAction::ReturnDead => (vec![], 0),
            GcAction::DeleteDead => {
                let opts = gc::GcOptions {
                    max_freed: (max_freed != u64::MAX && max_freed != 0).then_some(max_freed),
                    ..Default::default()
                };
                let stats = gc::collect_garbage(
                    &*s.infos,
                    &*s.blobs,
                    &*s.dirs,
                    &opts,
                    |msg| tracing::info!(user = %self.user, "gc: {msg}"),
                )
                .await?;
                (vec![], stats.bytes)
            }
            GcAction::DeleteSpecific => {
                let deleted = gc::delete_paths(&*s.infos, &paths, false).await?;
                for p in &deleted {
                    self.backend.forget(p);
                }
                (deleted, 0)
            }
        })
    }

    /// A valid derivation's `.drv` file, parsed.
    async fn derivation(&self, drv: &StorePath) -> OpResult<Derivation> {
        let info = self.path_info(drv).await?.ok_or_else(|| OpError::NotValid(drv.clone()))?;
        let not_a_drv = || OpError::NotADerivation(drv.clone());
        let Node::File { digest, size, .. } = info.node else { return Err(not_a_drv()) };
        if !drv.is_derivation() || size > MAX_DERIVATION {
            return Err(not_a_drv());
        }
        let read = |source| OpError::ReadDerivation { path: drv.clone(), source };
        let bytes = read_to_vec(&*self.backend.store.blobs, &digest).await.map_err(read)?;
        let bytes = bytes.ok_or_else(|| read(std::io::Error::from(std::io::ErrorKind::NotFound)))?;
        Derivation::parse(&bytes).map_err(|source| OpError::Derivation { path: drv.clone(), source })
    }

    async fn path_from_hash_part(&self, h: &str) -> OpResult<Option<StorePath>> {
        let Ok(digest) = nix_compat::nixbase32::decode_fixed::<20>(h.as_bytes()) else {
            return Err(OpError::InvalidHashPart(h.to_string()));
        };
        let info = self.backend.store.infos.get(digest).await?;
        Ok(info.map(|i| i.store_path))
    }

    /// Only already-valid opaque paths "build" here.
    async fn check_buildable(&self, paths: &[String]) -> OpResult<()> {
        for s in paths {
            match DerivedPath::parse(s)? {
                DerivedPath::Opaque(p) => {
                    if !self.is_valid(&p).await? {
                        return Err(OpError::CannotSubstitute(p));
                    }
                }
                DerivedPath::Built { drv, .. } => return Err(OpError::CannotBuild(drv)),
            }
        }
        Ok(())
    }

    async fn add_signatures(&self, path: &StorePath, sigs: &[String]) -> OpResult<()> {
        if !self.trusted() {
            return Err(OpError::NotPrivilegedToSign);
        }
        let mut info = self.path_info(path).await?.ok_or_else(|| OpError::NotValid(path.clone()))?;
        for s in sigs {
            let sig: Signature = s.parse().map_err(|source| OpError::InvalidSignature { sig: s.clone(), source })?;
            if !info.signatures.contains(&sig) {
                info.signatures.push(sig);
            }
        }
        let info = self.backend.store.infos.put(info).await?;
        self.backend.remember(&info);
        Ok(())
    }

    /// VerifyStore: every path's tree must be complete in the castore
    /// (with `check_contents`, its NAR must also hash to its narHash) and
    /// every reference must be valid. Each problem goes to the client as a
    /// log line, as Nix reports it; the reply says whether there was any.
    async fn verify_store(&mut self, check_contents: bool, repair: bool) -> Result<(), ConnError> {
        if repair {
            let e = if self.trusted() { OpError::NoRepair } else { OpError::NotPrivilegedToRepair };
            return Ok(self.reply_error(&e).await?);
        }
        let infos = match self.all_infos().await {
            Ok(i) => i,
            Err(e) => return Ok(self.reply_error(&e).await?),
        };
        let count = infos.len();
        let valid: std::collections::HashSet<&StorePath> = infos.iter().map(|i| &i.store_path).collect();
        let mut problems: Vec<String> = infos
            .iter()
            .flat_map(|i| {
                i.references
                    .iter()
                    .filter(|r| !valid.contains(r))
                    .map(move |r| format!("path '{}' refers to '{r}', which is not valid", i.store_path))
            })
            .collect();
        let s = self.backend.store.clone();
        // owned items: a borrowing stream trips the compiler's Send checks
        let checked = futures::stream::iter(infos)
            .map(|i| {
                let s = s.clone();
                async move {
                    if !check_contents {
                        return ensure_complete(&i.node, &*s.blobs, &*s.dirs)
                            .await
                            .err()
                            .map(|e| format!("path '{}' is incomplete: {e}", i.store_path));
                    }
                    match calculate_nar(&i.node, &*s.blobs, &*s.dirs).await {
                        Ok((size, sha)) if size == i.nar_size && sha == i.nar_sha256 => None,
                        Ok((_, sha)) => Some(format!(
                            "path '{}' was modified! expected hash '{}', got '{}'",
                            i.store_path,
                            i.nar_hash().to_nix32_prefixed(),
                            nix_compat::hash::NixHash::sha256(sha).to_nix32_prefixed()
                        )),
                        Err(e) => Some(format!("path '{}' cannot be read: {e}", i.store_path)),
                    }
                }
            })
            .buffer_unordered(VERIFY_CONCURRENCY)
            .filter_map(|p| async move { p })
            .collect::<Vec<String>>()
            .await;
        problems.extend(checked);
        tracing::info!(user = %self.user, paths = count, problems = problems.len(), check_contents, "verified the store");
        let mut w = WireWriter::new();
        for p in &problems {
            w.u64(STDERR_NEXT).string(&format!("error: {p}\n"));
        }
        w.u64(STDERR_LAST).bool(!problems.is_empty());
        Ok(self.send(&w).await?)
    }

    async fn nar_from_path(&mut self, p: &StorePath) -> Result<(), ConnError> {
        let info = match self.path_info(p).await {
            Ok(Some(i)) => i,
            Ok(None) => return Ok(self.reply_error(&OpError::NotValid(p.clone())).await?),
            Err(e) => return Ok(self.reply_error(&e).await?),
        };
        self.send(WireWriter::new().u64(STDERR_LAST)).await?;
        // the NAR follows raw; a failure now cannot be reported in-band
        let s = self.backend.store.clone();
        snix_store::nar::render_nar(&mut self.w, &info.node, &*s.blobs, &*s.dirs)
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
        let s = self.backend.store.clone();
        let mut framed = FramedReader::new(&mut self.r);
        let result = match CaMethod::parse(method) {
            Err(e) => Err(e.into()),
            Ok(method) if method.takes_nar() => {
                add_content_addressed(&mut framed, name, method, references, &*s.blobs, &*s.dirs, &*s.infos)
                    .await
                    .map_err(OpError::from)
            }
            Ok(method) => match spool(&mut framed).await {
                Err(e) => Err(OpError::Receive(e)),
                Ok((file, size)) => {
                    let nar = flat_file_nar(file, size);
                    add_content_addressed(nar, name, method, references, &*s.blobs, &*s.dirs, &*s.infos)
                        .await
                        .map_err(OpError::from)
                }
            },
        };
        framed.drain().await?;
        Ok(result)
    }

    /// AddToStore (<1.25): a NAR follows, unframed; only parsing it finds
    /// its end, so it is copied off the connection (and validated) while
    /// the store ingests it. A NAR that does not parse ends the connection.
    async fn add_to_store_dump(
        &mut self,
        name: &str,
        recursive: bool,
        algo: &str,
    ) -> Result<OpResult<PathInfo>, ConnError> {
        let method = algo
            .parse::<HashAlgo>()
            .map(|a| if recursive { CaMethod::Nar(a) } else { CaMethod::Flat(a) })
            .map_err(|source| OpError::Method(CaMethodError::Algo { method: algo.to_string(), source }));
        let s = self.backend.store.clone();
        let (pipe_w, pipe_r) = tokio::io::duplex(256 * 1024);
        let r = &mut self.r;
        let pump = async move {
            // once the store stops reading (it failed), the rest is discarded
            let mut to_store = DiscardWhenClosed(Some(pipe_w));
            nix_compat::nar::reader::async_copy_nar(r, &mut to_store).await
        };
        let consume = async move {
            let m = method?;
            Ok(add_content_addressed(pipe_r, name, m, vec![], &*s.blobs, &*s.dirs, &*s.infos).await?)
        };
        let (pumped, result) = tokio::join!(pump, consume);
        pumped.map_err(|e| ConnError::Fatal(format!("AddToStore: the NAR that follows: {e}")))?;
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
            let count = wire::read_u64(&mut framed).await?;
            for _ in 0..count {
                let (path, info) = read_multiple_entry(&mut framed).await?;
                let nar_size = info.nar_size;
                let mut nar = (&mut framed).take(nar_size);
                check_signatures(&policy, trusted, &path, &info, dont_check_sigs)?;
                Self::add_one(&b, &mut nar, path, info).await?;
                // a NAR shorter than its narSize was caught by add_nar; skip any rest
                tokio::io::copy(&mut nar, &mut tokio::io::sink()).await.map_err(OpError::Receive)?;
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
        Err(OpError::LacksSignature(path.clone()))
    }
}

/// A writer that turns into a sink once its reader is gone, so that a
/// stream can be read to its end after its consumer gave up.
struct DiscardWhenClosed<W>(Option<W>);

impl<W: AsyncWrite + Unpin> AsyncWrite for DiscardWhenClosed<W> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let Some(w) = self.0.as_mut() else { return std::task::Poll::Ready(Ok(buf.len())) };
        match std::pin::Pin::new(w).poll_write(cx, buf) {
            std::task::Poll::Ready(Err(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.0 = None;
                std::task::Poll::Ready(Ok(buf.len()))
            }
            other => other,
        }
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.0.as_mut() {
            Some(w) => match std::pin::Pin::new(w).poll_flush(cx) {
                std::task::Poll::Ready(Err(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                    self.0 = None;
                    std::task::Poll::Ready(Ok(()))
                }
                other => other,
            },
            None => std::task::Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.0.as_mut() {
            Some(w) => std::pin::Pin::new(w).poll_shutdown(cx),
            None => std::task::Poll::Ready(Ok(())),
        }
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

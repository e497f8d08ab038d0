//! Adding a store path from its NAR: ingest into the castore, check the NAR
//! hash, size and content address against what was claimed, and only then
//! register the path info. On any mismatch nothing is registered and the
//! error says what differed.

use nix_compat::content_address::ContentAddress;
use nix_compat::hash::{HashAlgo, HashError, NixHash};
use nix_compat::signing::Signature;
use nix_compat::store_path::{make_ca_path, MakePathError, StorePath};
use snix_castore::blobservice::BlobService;
use snix_castore::directoryservice::DirectoryService;
use thiserror::Error;

use crate::errors::Error;
use tokio::io::AsyncRead;

use crate::nar::{ingest_nar, IngestError};
use crate::pathinfo::PathInfo;
use crate::pathinfoservice::PathInfoService;

/// What the sender says about the path it sends.
#[derive(Clone, Debug)]
pub struct Claimed {
    pub store_path: StorePath,
    pub nar_hash: NixHash,
    pub nar_size: u64,
    pub references: Vec<StorePath>,
    pub deriver: Option<StorePath>,
    pub signatures: Vec<Signature>,
    pub ca: Option<ContentAddress>,
}

#[derive(Debug, Error)]
pub enum AddError {
    #[error("{path}: {source}")]
    Ingest { path: StorePath, source: IngestError },
    #[error("{path}: NAR hash mismatch: claimed {claimed}, got {actual}")]
    NarHash { path: StorePath, claimed: String, actual: String },
    #[error("{path}: NAR size mismatch: claimed {claimed}, got {actual}")]
    NarSize { path: StorePath, claimed: u64, actual: u64 },
    #[error("{path}: content address {ca} does not match the content ({reason})")]
    ContentAddress { path: StorePath, ca: String, reason: CaMismatch },
    #[error("{path}: reference {reference} is not in the store")]
    MissingReference { path: StorePath, reference: StorePath },
    #[error("registering {path}: {source}")]
    Register { path: StorePath, source: Error },
}

/// How a claimed content address disagrees with the content.
#[derive(Debug, Error)]
pub enum CaMismatch {
    #[error("NAR sha256 is {}", .0.to_nix32_prefixed())]
    NarHash(NixHash),
    #[error("recursive {0} content addresses are not supported here")]
    UnsupportedAlgo(HashAlgo),
    #[error("the root is not a regular file")]
    NotAFile,
    #[error("content hash is {}", .0.to_nix32_prefixed())]
    ContentHash(NixHash),
    #[error(transparent)]
    Path(#[from] MakePathError),
    #[error("it gives the path {0}")]
    OtherPath(StorePath),
}

/// Checks a content address against the ingested content and the path.
fn check_ca(claimed: &Claimed, ingested: &crate::nar::Ingested) -> Result<(), CaMismatch> {
    let Some(ca) = &claimed.ca else { return Ok(()) };
    match ca {
        ContentAddress::Nar(h) => {
            // recursive: the CA hash is over the NAR; sha256 we have, others need a re-hash
            let d = h.sha256_digest().ok_or(CaMismatch::UnsupportedAlgo(h.algo()))?;
            if d != ingested.nar_sha256 {
                return Err(CaMismatch::NarHash(NixHash::sha256(ingested.nar_sha256)));
            }
        }
        ContentAddress::Flat(h) | ContentAddress::Text(h) => {
            let actual = ingested.flat_hash.as_ref().ok_or(CaMismatch::NotAFile)?;
            if actual != h {
                return Err(CaMismatch::ContentHash(actual.clone()));
            }
        }
    }
    let self_ref = claimed.references.contains(&claimed.store_path);
    let refs = claimed.references.iter().filter(|r| **r != claimed.store_path);
    let computed = make_ca_path(claimed.store_path.name(), ca, refs, self_ref)?;
    if computed != claimed.store_path {
        return Err(CaMismatch::OtherPath(computed));
    }
    Ok(())
}

/// Ingests `nar` and registers it as `claimed.store_path`, after checking
/// hash, size, content address and that every reference (but itself) exists.
pub async fn add_nar<R: AsyncRead + Unpin + Send>(
    nar: R,
    claimed: Claimed,
    blobs: &dyn BlobService,
    dirs: &dyn DirectoryService,
    infos: &dyn PathInfoService,
) -> Result<PathInfo, AddError> {
    let path = claimed.store_path.clone();
    for r in &claimed.references {
        if *r != path {
            let present = crate::pathinfoservice::get_path(infos, r)
                .await
                .map_err(|source| AddError::Register { path: path.clone(), source })?
                .is_some();
            if !present {
                return Err(AddError::MissingReference { path, reference: r.clone() });
            }
        }
    }
    let flat_algo = match &claimed.ca {
        Some(ContentAddress::Flat(h)) | Some(ContentAddress::Text(h)) => Some(h.algo()),
        _ => None,
    };
    let ingested = ingest_nar(nar, blobs, dirs, flat_algo)
        .await
        .map_err(|source| AddError::Ingest { path: path.clone(), source })?;
    if claimed.nar_hash.sha256_digest() != Some(ingested.nar_sha256) {
        return Err(AddError::NarHash {
            path,
            claimed: claimed.nar_hash.to_nix32_prefixed(),
            actual: NixHash::sha256(ingested.nar_sha256).to_nix32_prefixed(),
        });
    }
    if claimed.nar_size != ingested.nar_size {
        return Err(AddError::NarSize { path, claimed: claimed.nar_size, actual: ingested.nar_size });
    }
    check_ca(&claimed, &ingested).map_err(|reason| AddError::ContentAddress {
        path: path.clone(),
        ca: claimed.ca.as_ref().map(|c| c.to_string()).unwrap_or_default(),
        reason,
    })?;
    let info = PathInfo {
        store_path: claimed.store_path,
        node: ingested.node,
        references: claimed.references,
        nar_size: ingested.nar_size,
        nar_sha256: ingested.nar_sha256,
        signatures: claimed.signatures,
        deriver: claimed.deriver,
        ca: claimed.ca,
    };
    infos.put(info).await.map_err(|source| AddError::Register { path, source })
}

/// How content sent without a claimed path (Nix's AddToStore) is addressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaMethod {
    /// `text:sha256`: a flat file, may refer to other paths (derivations, `toFile`).
    Text,
    /// `fixed:<algo>`: a flat file.
    Flat(HashAlgo),
    /// `fixed:r:<algo>`: a tree, hashed as its NAR.
    Nar(HashAlgo),
}

#[derive(Debug, Error)]
pub enum CaMethodError {
    #[error("content-address method {method:?}: {source}")]
    Algo { method: String, source: HashError },
    #[error("content-address method {0:?} (git hashing) is not supported")]
    Git(String),
    #[error("unknown content-address method {0:?}")]
    Unknown(String),
}

impl CaMethod {
    /// Nix's method strings: `text:sha256`, `fixed:<algo>`, `fixed:r:<algo>`.
    pub fn parse(s: &str) -> Result<CaMethod, CaMethodError> {
        let algo = |a: &str| a.parse::<HashAlgo>().map_err(|source| CaMethodError::Algo { method: s.into(), source });
        if s == "text:sha256" {
            Ok(CaMethod::Text)
        } else if let Some(a) = s.strip_prefix("fixed:r:") {
            Ok(CaMethod::Nar(algo(a)?))
        } else if s.starts_with("fixed:git:") {
            Err(CaMethodError::Git(s.into()))
        } else if let Some(a) = s.strip_prefix("fixed:") {
            Ok(CaMethod::Flat(algo(a)?))
        } else {
            Err(CaMethodError::Unknown(s.into()))
        }
    }

    /// Whether the content comes as a NAR (else as the file's bytes).
    pub fn takes_nar(self) -> bool {
        matches!(self, CaMethod::Nar(_))
    }
}

/// A NAR of one regular (non-executable) file with `size` bytes from `contents`.
pub fn flat_file_nar<R: AsyncRead + Unpin + Send + 'static>(contents: R, size: u64) -> impl AsyncRead + Unpin + Send {
    let (w, r) = tokio::io::duplex(256 * 1024);
    tokio::spawn(async move {
        let mut contents = contents;
        let mut nw = nix_compat::nar::writer::AsyncNarWriter::new(w);
        if nw.file_from_reader(false, size, &mut contents).await.is_ok() {
            let _ = nw.finish().await;
        }
    });
    r
}

/// Ingests `nar`, computes its content address by `method` and the store
/// path from `name` and `references`, and registers it (a path already
/// present is returned as it is). References must exist.
pub async fn add_content_addressed<R: AsyncRead + Unpin + Send>(
    nar: R,
    name: &str,
    method: CaMethod,
    references: Vec<StorePath>,
    blobs: &dyn BlobService,
    dirs: &dyn DirectoryService,
    infos: &dyn PathInfoService,
) -> Result<PathInfo, AddCaError> {
    let flat_algo = match method {
        CaMethod::Text => Some(HashAlgo::Sha256),
        CaMethod::Flat(a) => Some(a),
        CaMethod::Nar(HashAlgo::Sha256) => None,
        CaMethod::Nar(a) => return Err(AddCaError::Unsupported(format!("recursive {a} hashing"))),
    };
    let ingested = ingest_nar(nar, blobs, dirs, flat_algo).await.map_err(AddCaError::Ingest)?;
    let ca = match method {
        CaMethod::Nar(_) => ContentAddress::Nar(NixHash::sha256(ingested.nar_sha256)),
        CaMethod::Flat(_) | CaMethod::Text => {
            let h = ingested.flat_hash.clone().ok_or(AddCaError::NotAFile)?;
            if method == CaMethod::Text {
                ContentAddress::Text(h)
            } else {
                ContentAddress::Flat(h)
            }
        }
    };
    if !matches!(ca, ContentAddress::Text(_)) && !references.is_empty() {
        // Nix allows references only on text and NAR-hashed (sha256) paths
        if !matches!(ca, ContentAddress::Nar(_)) {
            return Err(AddCaError::Unsupported("references on a flat fixed-output path".into()));
        }
    }
    let path = make_ca_path(name, &ca, references.iter(), false)?;
    for r in &references {
        let present = crate::pathinfoservice::get_path(infos, r).await.map_err(AddCaError::Store)?.is_some();
        if !present {
            return Err(AddCaError::MissingReference { path, reference: r.clone() });
        }
    }
    if let Some(existing) = crate::pathinfoservice::get_path(infos, &path).await.map_err(AddCaError::Store)? {
        return Ok(existing);
    }
    let info = PathInfo {
        store_path: path,
        node: ingested.node,
        references,
        nar_size: ingested.nar_size,
        nar_sha256: ingested.nar_sha256,
        signatures: vec![],
        deriver: None,
        ca: Some(ca),
    };
    infos.put(info).await.map_err(AddCaError::Store)
}

#[derive(Debug, Error)]
pub enum AddCaError {
    #[error("{0}")]
    Ingest(IngestError),
    #[error("flat and text content addresses need a single regular file")]
    NotAFile,
    #[error("not supported: {0}")]
    Unsupported(String),
    #[error("invalid store path: {0}")]
    Path(#[from] MakePathError),
    #[error("{path}: reference {reference} is not in the store")]
    MissingReference { path: StorePath, reference: StorePath },
    #[error("store: {0}")]
    Store(Error),
}

//! Copying closures out of the local Nix store: the closure is read from the
//! local Nix database (or an exportReferencesGraph JSON), ordered so every
//! path comes after its references, and each missing path is streamed from
//! `nix-store --dump` through `add_nar` (checked, then registered). Paths
//! already present are skipped, so an interrupted copy resumes.

use std::path::PathBuf;
use std::process::Stdio;

use nix_compat::closure::{dependencies_first, parse_closure, ClosureEntry};
use nix_compat::hash::NixHash;
use nix_compat::path_info_json;
use nix_compat::store_path::StorePath;
use snix_castore::blobservice::BlobService;
use snix_castore::directoryservice::DirectoryService;
use thiserror::Error;

use crate::pathinfoservice::PathInfoService;
use crate::register::{add_nar, AddError, Claimed};

#[derive(Debug, Error)]
pub enum CopyError {
    #[error("running {cmd}: {msg}")]
    Nix { cmd: String, msg: String },
    #[error("closure: {0}")]
    Closure(#[from] nix_compat::closure::ClosureError),
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    BadNarHash { path: StorePath, source: nix_compat::hash::HashError },
    #[error("the local Nix: {0}")]
    PathInfoJson(#[from] path_info_json::PathInfoJsonError),
    #[error("the local Nix says {0} is not valid")]
    NotValid(StorePath),
    #[error(transparent)]
    Add(#[from] AddError),
    #[error("store: {0}")]
    Store(#[from] crate::Error),
}

/// Where the closure comes from.
pub enum Source {
    /// Store paths; their closure is asked of the local Nix database.
    Paths(Vec<String>),
    /// An exportReferencesGraph JSON (a bare list, or structured attrs with
    /// the list under `key`).
    ClosureJson { file: PathBuf, key: String },
}

#[derive(Debug, Default, Clone, Copy)]
pub struct CopyStats {
    pub copied: usize,
    pub skipped: usize,
    pub nar_bytes: u64,
}

async fn run(cmd: &str, args: &[&str]) -> Result<Vec<u8>, CopyError> {
    let out = tokio::process::Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| CopyError::Nix { cmd: cmd.into(), msg: e.to_string() })?;
    if !out.status.success() {
        return Err(CopyError::Nix {
            cmd: format!("{cmd} {}", args.join(" ")),
            msg: String::from_utf8_lossy(&out.stderr).trim().into(),
        });
    }
    Ok(out.stdout)
}

/// Full metadata of `paths` from the local Nix database (`nix path-info
/// --json`, in whichever shape the local Nix prints it).
async fn local_path_infos(paths: &[String]) -> Result<Vec<Claimed>, CopyError> {
    let mut claims = Vec::with_capacity(paths.len());
    for batch in paths.chunks(500) {
        let mut args = vec!["--extra-experimental-features", "nix-command", "path-info", "--json"];
        args.extend(batch.iter().map(String::as_str));
        let (_, infos) = path_info_json::parse(&run("nix", &args).await?)?;
        for (store_path, info) in infos {
            let info = info.ok_or_else(|| CopyError::NotValid(store_path.clone()))?;
            claims.push(Claimed {
                store_path,
                nar_hash: info.nar_hash,
                nar_size: info.nar_size,
                references: info.references,
                deriver: info.deriver,
                signatures: info.signatures,
                ca: info.ca,
            });
        }
    }
    Ok(claims)
}

fn claim_from_entry(e: ClosureEntry) -> Result<Claimed, CopyError> {
    let nar_hash =
        NixHash::parse(&e.nar_hash, None).map_err(|source| CopyError::BadNarHash { path: e.path.clone(), source })?;
    Ok(Claimed {
        store_path: e.path,
        nar_hash,
        nar_size: e.nar_size,
        references: e.references,
        deriver: None,
        signatures: vec![],
        ca: None,
    })
}

/// The closure to copy, dependencies first.
pub async fn resolve(source: Source) -> Result<Vec<Claimed>, CopyError> {
    let claims = match source {
        Source::Paths(paths) => {
            let mut args = vec!["--query", "--requisites"];
            args.extend(paths.iter().map(String::as_str));
            let closure: Vec<String> =
                String::from_utf8_lossy(&run("nix-store", &args).await?).lines().map(str::to_string).collect();
            local_path_infos(&closure).await?
        }
        Source::ClosureJson { file, key } => {
            let json = tokio::fs::read(&file).await.map_err(|source| CopyError::Read { path: file.clone(), source })?;
            parse_closure(&json, &key)?.into_iter().map(claim_from_entry).collect::<Result<_, _>>()?
        }
    };
    // reuse the closure ordering of nix-compat
    let entries: Vec<ClosureEntry> = claims
        .iter()
        .map(|c| ClosureEntry {
            path: c.store_path.clone(),
            nar_hash: String::new(),
            nar_size: 0,
            references: c.references.clone(),
            closure_size: None,
        })
        .collect();
    let order = dependencies_first(entries)?;
    let mut by_path: std::collections::HashMap<StorePath, Claimed> =
        claims.into_iter().map(|c| (c.store_path.clone(), c)).collect();
    Ok(order.into_iter().filter_map(|e| by_path.remove(&e.path)).collect())
}

/// Copies every path of `closure` that is not yet in the store.
/// `progress(i, n, path, skipped)` is called before each path.
pub async fn copy_closure(
    closure: Vec<Claimed>,
    blobs: &dyn BlobService,
    dirs: &dyn DirectoryService,
    infos: &dyn PathInfoService,
    mut progress: impl FnMut(usize, usize, &Claimed, bool),
) -> Result<CopyStats, CopyError> {
    let n = closure.len();
    let mut stats = CopyStats::default();
    for (i, claim) in closure.into_iter().enumerate() {
        let present = crate::pathinfoservice::get_path(infos, &claim.store_path).await?.is_some();
        progress(i, n, &claim, present);
        if present {
            stats.skipped += 1;
            continue;
        }
        let path = claim.store_path.to_string();
        let mut child = tokio::process::Command::new("nix-store")
            .args(["--dump", &path])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| CopyError::Nix { cmd: "nix-store --dump".into(), msg: e.to_string() })?;
        let stdout = child.stdout.take().expect("piped");
        let size = claim.nar_size;
        let added = add_nar(stdout, claim, blobs, dirs, infos).await;
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| CopyError::Nix { cmd: "nix-store --dump".into(), msg: e.to_string() })?;
        if !out.status.success() {
            return Err(CopyError::Nix {
                cmd: format!("nix-store --dump {path}"),
                msg: String::from_utf8_lossy(&out.stderr).trim().into(),
            });
        }
        added?;
        stats.copied += 1;
        stats.nar_bytes += size;
    }
    Ok(stats)
}

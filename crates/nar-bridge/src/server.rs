//! The HTTP binary cache: `nix-cache-info`, `<hash>.narinfo`, `<hash>.ls`
//! and `nar/…`, each answered from the store's services. Every failure is a
//! [`BridgeError`], turned into a status in one place.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header::{ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use nix_compat::signing::SigningKey;
use nix_compat::store_path::STORE_DIR;
use snix_store::composition::StoreServices;
use snix_store::PathInfo;

use crate::body::nar_body;
use crate::errors::BridgeError;
use crate::narinfo::narinfo;
use crate::range::{self, RangeAnswer};
use crate::urls::{Compression, NarUrl, PathFile};

/// What the cache serves, and how.
pub struct Bridge {
    pub services: StoreServices,
    /// Signs every narinfo served (beside the signatures the path has).
    pub signing_key: Option<SigningKey>,
    /// How the NARs the narinfos point at are compressed.
    pub compression: Compression,
    /// `nix-cache-info`'s Priority (lower is preferred by Nix).
    pub priority: u32,
}

pub fn router(bridge: Arc<Bridge>) -> Router {
    Router::new()
        .route("/nix-cache-info", get(cache_info))
        .route("/nar/{file}", get(nar))
        .route("/{file}", get(path_file))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .with_state(bridge)
}

async fn cache_info(State(b): State<Arc<Bridge>>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/x-nix-cache-info")],
        format!("StoreDir: {STORE_DIR}\nWantMassQuery: 1\nPriority: {}\n", b.priority),
    )
}

async fn path_info(b: &Bridge, digest: [u8; 20], what: &str) -> Result<PathInfo, BridgeError> {
    b.services.infos.get(digest).await?.ok_or_else(|| BridgeError::NotFound(what.to_string()))
}

/// `<hash>.narinfo` and `<hash>.ls`.
async fn path_file(State(b): State<Arc<Bridge>>, Path(file): Path<String>) -> Result<Response, BridgeError> {
    match PathFile::parse(&file).ok_or_else(|| BridgeError::NotFound(file.clone()))?? {
        PathFile::NarInfo(digest) => {
            let info = path_info(&b, digest, &file).await?;
            let text = narinfo(&info, b.compression, b.signing_key.as_ref()).to_string();
            Ok(([(CONTENT_TYPE, "text/x-nix-narinfo")], text).into_response())
        }
        PathFile::Listing(digest) => {
            let info = path_info(&b, digest, &file).await?;
            let listing = snix_store::nar::nar_listing(&info.node, &*b.services.dirs).await?;
            Ok(([(CONTENT_TYPE, "application/json")], listing.to_json()).into_response())
        }
    }
}

/// `nar/<path hash>-<nar hash>.nar[.zst|.xz]`, streamed; ranges of an
/// uncompressed NAR.
async fn nar(
    State(b): State<Arc<Bridge>>,
    method: Method,
    headers: HeaderMap,
    Path(file): Path<String>,
) -> Result<Response, BridgeError> {
    let url = NarUrl::parse(&file)?;
    let info = b
        .services
        .infos
        .get(url.path_digest)
        .await?
        .filter(|i| i.nar_sha256 == url.nar_sha256)
        .ok_or_else(|| BridgeError::NotFound(format!("nar/{file}")))?;
    let mut response = Response::builder().header(CONTENT_TYPE, url.compression.content_type());
    let mut range = None;
    if url.compression == Compression::None {
        response = response.header(ACCEPT_RANGES, "bytes");
        let asked = headers.get(RANGE).and_then(|v| v.to_str().ok());
        match range::answer(asked, info.nar_size) {
            RangeAnswer::Whole => response = response.header(CONTENT_LENGTH, info.nar_size),
            RangeAnswer::Part(r) => {
                response = response
                    .status(StatusCode::PARTIAL_CONTENT)
                    .header(CONTENT_RANGE, r.content_range(info.nar_size))
                    .header(CONTENT_LENGTH, r.len());
                range = Some(r);
            }
            RangeAnswer::Unsatisfiable => {
                let unsatisfied = format!("bytes */{}", info.nar_size);
                return Ok((StatusCode::RANGE_NOT_SATISFIABLE, [(CONTENT_RANGE, unsatisfied)]).into_response());
            }
        }
    }
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        nar_body(b.services.clone(), info.node, url.compression, range)
    };
    Ok(response.body(body).expect("a response of valid headers"))
}

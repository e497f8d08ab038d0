//! The crate's error, and its one mapping to an HTTP answer.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use thiserror::Error;

use crate::urls::UrlError;

#[derive(Debug, Error)]
pub enum BridgeError {
    #[error(transparent)]
    BadUrl(#[from] UrlError),
    #[error("{0} is not in this cache")]
    NotFound(String),
    #[error("the store failed: {0}")]
    Store(#[from] snix_store::Error),
    #[error("{0}")]
    Render(#[from] snix_store::nar::RenderError),
}

impl BridgeError {
    pub fn status(&self) -> StatusCode {
        match self {
            BridgeError::BadUrl(_) => StatusCode::BAD_REQUEST,
            BridgeError::NotFound(_) => StatusCode::NOT_FOUND,
            // the store daemon behind us failed or is unreachable
            BridgeError::Store(_) => StatusCode::BAD_GATEWAY,
            BridgeError::Render(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for BridgeError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, "request failed");
        }
        (status, [("content-type", "text/plain; charset=utf-8")], format!("{self}\n")).into_response()
    }
}

//! The error of the store's services (PathInfoService and what serves it),
//! and its one mapping to and from gRPC status.

use nix_compat::store_path::StorePath;
use thiserror::Error;

use crate::nar::RenderError;
use crate::pathinfo::PathInfoError;

#[derive(Debug, Error)]
pub enum Error {
    /// A castore service (blobs, directories) failed.
    #[error(transparent)]
    Castore(#[from] snix_castore::Error),
    /// The request is wrong: an address, a digest of the wrong length.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A path info sent to us does not validate.
    #[error("invalid path info: {0}")]
    InvalidPathInfo(#[from] PathInfoError),
    /// A stored path info does not decode, or sits under another path's key;
    /// it is never served.
    #[error("stored path info {key} is corrupt: {reason}")]
    CorruptStored { key: String, reason: String },
    /// The store daemon answered with something that is not a valid answer.
    #[error("the store daemon sent an invalid answer: {0}")]
    InvalidReply(String),
    /// A path info whose content is not all in the castore: never registered.
    #[error("refusing to register {path}: its content is not in the castore: {source}")]
    Incomplete { path: StorePath, source: RenderError },
    /// The NAR of a tree could not be rendered or hashed.
    #[error("calculating the NAR: {0}")]
    Render(#[from] RenderError),
    /// The embedded path-info database failed.
    #[error("path-info database: {0}")]
    Sled(#[from] sled::Error),
    /// A blocking task of a backend died.
    #[error("backend task: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The backend cannot do this (e.g. tell of changes).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A watcher of changes fell this many changes behind and was cut off.
    #[error("the watch fell {0} changes behind")]
    WatcherBehind(u64),
    /// A confirming watcher did not confirm a change within this time.
    #[error("the watch did not confirm a change within {0:?}")]
    WatcherTooSlow(std::time::Duration),
    /// The store daemon answered with an error, or could not be reached.
    /// (boxed: a status is large, and errors travel in every `Result`)
    #[error("store daemon: {}: {}", .0.code(), .0.message())]
    Remote(Box<tonic::Status>),
}

impl From<tonic::Status> for Error {
    fn from(s: tonic::Status) -> Self {
        Error::Remote(Box::new(s))
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        use tonic::Status;
        match e {
            Error::Castore(e) => e.into(),
            Error::Remote(s) => *s,
            Error::InvalidRequest(_) | Error::InvalidPathInfo(_) => Status::invalid_argument(e.to_string()),
            Error::CorruptStored { .. } => Status::data_loss(e.to_string()),
            Error::Unsupported(_) => Status::unimplemented(e.to_string()),
            Error::WatcherBehind(_) | Error::WatcherTooSlow(_) => Status::resource_exhausted(e.to_string()),
            Error::Incomplete { .. }
            | Error::Render(RenderError::MissingBlob(_) | RenderError::MissingDirectory(_)) => {
                Status::failed_precondition(e.to_string())
            }
            Error::Render(RenderError::Castore(e)) => e.into(),
            Error::InvalidReply(_) | Error::Render(_) | Error::Sled(_) | Error::Task(_) => {
                Status::internal(e.to_string())
            }
        }
    }
}

//! The castore's error type, and its one mapping to and from gRPC status.

use thiserror::Error;

use crate::digest::DigestError;
use crate::directory::DirectoryError;

#[derive(Debug, Error)]
pub enum Error {
    /// The request itself is wrong: bad digest, invalid Directory, a Put
    /// batch that is disconnected or out of order.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// Stored data failed its hash check; it is never served.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// The backend failed (I/O, database, remote daemon unreachable).
    #[error("storage error: {0}")]
    Storage(String),
}

impl From<DirectoryError> for Error {
    fn from(e: DirectoryError) -> Self {
        Error::InvalidRequest(e.to_string())
    }
}

impl From<DigestError> for Error {
    fn from(e: DigestError) -> Self {
        Error::InvalidRequest(e.to_string())
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        use std::io::ErrorKind::*;
        match e.kind() {
            NotFound => Error::NotFound(e.to_string()),
            InvalidInput => Error::InvalidRequest(e.to_string()),
            InvalidData => Error::Corrupt(e.to_string()),
            _ => Error::Storage(e.to_string()),
        }
    }
}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        use std::io::ErrorKind;
        let kind = match &e {
            Error::InvalidRequest(_) => ErrorKind::InvalidInput,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::Corrupt(_) => ErrorKind::InvalidData,
            Error::Storage(_) => ErrorKind::Other,
        };
        std::io::Error::new(kind, e.to_string())
    }
}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        Error::Storage(format!("sled: {e}"))
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidRequest(m) => tonic::Status::invalid_argument(m),
            Error::NotFound(m) => tonic::Status::not_found(m),
            Error::Corrupt(m) => tonic::Status::data_loss(m),
            Error::Storage(m) => tonic::Status::internal(m),
        }
    }
}

impl From<tonic::Status> for Error {
    fn from(s: tonic::Status) -> Self {
        use tonic::Code;
        let m = s.message().to_string();
        match s.code() {
            Code::InvalidArgument => Error::InvalidRequest(m),
            Code::NotFound => Error::NotFound(m),
            Code::DataLoss => Error::Corrupt(m),
            _ => Error::Storage(format!("remote: {}: {m}", s.code())),
        }
    }
}

/// io errors on the gRPC wire: mapped through [`Error`].
pub fn io_to_status(e: std::io::Error) -> tonic::Status {
    Error::from(e).into()
}

pub fn status_to_io(s: tonic::Status) -> std::io::Error {
    Error::from(s).into()
}

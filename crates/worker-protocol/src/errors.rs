//! Why an operation failed, as the client reads it: each variant's text is
//! the message of the STDERR_ERROR reply ([`crate::server`] sends it, the
//! one place errors become wire errors), in Nix's own words where Nix has
//! them. The connection goes on after any of these.

use nix_compat::signing::SigningError;
use nix_compat::store_path::StorePath;
use snix_store::register::{AddCaError, AddError, CaMethodError};
use thiserror::Error;

use crate::wire::WireError;

#[derive(Debug, Error)]
pub enum OpError {
    #[error("path '{0}' is not valid")]
    NotValid(StorePath),
    #[error("path '{0}' is not valid, and this store cannot build or substitute it")]
    CannotSubstitute(StorePath),
    #[error("this store cannot build: '{0}' would have to be built")]
    CannotBuild(StorePath),
    #[error("cannot add path '{0}' because it lacks a signature by a trusted key")]
    LacksSignature(StorePath),
    #[error("you are not privileged to add signatures")]
    NotPrivilegedToSign,
    #[error("invalid signature {sig:?}: {source}")]
    InvalidSignature { sig: String, source: SigningError },
    #[error("'{0}' is not a derivation")]
    NotADerivation(StorePath),
    #[error("reading derivation '{path}': {source}")]
    ReadDerivation { path: StorePath, source: std::io::Error },
    #[error("derivation '{path}': {source}")]
    Derivation { path: StorePath, source: nix_compat::derivation::DerivationError },
    #[error("invalid store path hash part {0:?}")]
    InvalidHashPart(String),
    /// An argument that is well-formed on the wire but not as a value (a
    /// derived path, a count in a stream).
    #[error("{0}")]
    Argument(#[from] WireError),
    #[error(transparent)]
    Method(#[from] CaMethodError),
    #[error("receiving contents: {0}")]
    Receive(std::io::Error),
    #[error("you are not allowed to ignore liveness")]
    IgnoreLiveness,
    #[error("you are not privileged to collect garbage or delete paths")]
    NotPrivilegedToCollectGarbage,
    #[error(transparent)]
    Gc(#[from] snix_store::gc::GcError),
    #[error("repairing is not supported by this store")]
    NoRepair,
    #[error("you are not privileged to repair paths")]
    NotPrivilegedToRepair,
    #[error("this store does not record realisations")]
    NoRealisations,
    #[error("this store does not keep GC roots")]
    NoGcRoots,
    #[error(transparent)]
    Store(#[from] snix_store::Error),
    #[error(transparent)]
    Add(#[from] AddError),
    #[error(transparent)]
    AddContentAddressed(#[from] AddCaError),
}

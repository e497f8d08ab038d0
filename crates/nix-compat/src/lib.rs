//! Nix's data formats, byte for byte as the real Nix writes and reads them:
//! nixbase32, hashes, store paths and content addresses, NAR, narinfo,
//! ed25519 signatures, the `exportReferencesGraph` closure JSON and
//! `nix path-info --json`.
//!
//! Owns: pure format code — bytes in, values out. Must not depend on any other
//! crate of this workspace, on gRPC, or on sockets; the only I/O here are the
//! thin `std::io`/tokio and file-system front-ends of the NAR code.

/// Serde (de)serialisation of a type through its one text form: `Display`
/// out, `FromStr` in.
macro_rules! serde_via_text {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

pub mod closure;
pub mod content_address;
pub mod derivation;
pub mod hash;
pub mod nar;
pub mod narinfo;
pub mod nixbase32;
pub mod path_info_json;
pub mod signing;
pub mod store_path;

pub use content_address::ContentAddress;
pub use hash::{HashAlgo, NixHash};
pub use store_path::StorePath;

//! The service-address flags every binary takes, each with its environment
//! twin, and their defaults. A flag left unset means "the binary's default":
//! embedded backends under the state directory for a daemon
//! ([`StoreAddrs::or_embedded`]), the local daemon's socket for a client
//! ([`StoreAddrs::or_store_daemon`]).

use crate::dirs;

/// Where the castore's two services are.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct CastoreAddrs {
    /// Blob service: memory://, objectstore+file:///path, grpc+unix:///path.sock or grpc+http://host:port.
    #[arg(long, env = "BLOB_SERVICE_ADDR")]
    pub blob_service_addr: Option<String>,

    /// Directory service: memory://, sled:///path, grpc+unix:///path.sock or grpc+http://host:port.
    #[arg(long, env = "DIRECTORY_SERVICE_ADDR")]
    pub directory_service_addr: Option<String>,
}

/// Where the path-info service is.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct PathInfoAddr {
    /// Path info service: memory://, sled:///path, grpc+unix:///path.sock or grpc+http://host:port.
    #[arg(long, env = "PATH_INFO_SERVICE_ADDR")]
    pub path_info_service_addr: Option<String>,
}

/// The three service addresses of a store: castore's two and path infos.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct StoreAddrs {
    #[command(flatten)]
    pub castore: CastoreAddrs,
    #[command(flatten)]
    pub path_info: PathInfoAddr,
}

/// Castore addresses with the defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedCastoreAddrs {
    pub blob: String,
    pub directory: String,
}

/// Store addresses with the defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedStoreAddrs {
    pub blob: String,
    pub directory: String,
    pub path_info: String,
}

impl ResolvedCastoreAddrs {
    /// `(variable, address)` pairs, for messages and self-reference checks.
    pub fn named(&self) -> [(&'static str, &str); 2] {
        [("BLOB_SERVICE_ADDR", &self.blob), ("DIRECTORY_SERVICE_ADDR", &self.directory)]
    }
}

impl ResolvedStoreAddrs {
    /// `(variable, address)` pairs, for messages and self-reference checks.
    pub fn named(&self) -> [(&'static str, &str); 3] {
        [
            ("BLOB_SERVICE_ADDR", &self.blob),
            ("DIRECTORY_SERVICE_ADDR", &self.directory),
            ("PATH_INFO_SERVICE_ADDR", &self.path_info),
        ]
    }
}

impl CastoreAddrs {
    fn or(&self, blob: impl FnOnce() -> String, directory: impl FnOnce() -> String) -> ResolvedCastoreAddrs {
        ResolvedCastoreAddrs {
            blob: self.blob_service_addr.clone().unwrap_or_else(blob),
            directory: self.directory_service_addr.clone().unwrap_or_else(directory),
        }
    }

    /// A daemon's: embedded backends under the state directory.
    pub fn or_embedded(&self) -> ResolvedCastoreAddrs {
        self.or(dirs::embedded_blob_addr, dirs::embedded_directory_addr)
    }

    /// A client's: the local castore daemon.
    pub fn or_castore_daemon(&self) -> ResolvedCastoreAddrs {
        let socket = || dirs::grpc_unix_addr(&dirs::castore_socket());
        self.or(socket, socket)
    }
}

impl StoreAddrs {
    fn or(&self, castore: ResolvedCastoreAddrs, path_info: impl FnOnce() -> String) -> ResolvedStoreAddrs {
        ResolvedStoreAddrs {
            blob: castore.blob,
            directory: castore.directory,
            path_info: self.path_info.path_info_service_addr.clone().unwrap_or_else(path_info),
        }
    }

    /// A daemon's: embedded backends under the state directory.
    pub fn or_embedded(&self) -> ResolvedStoreAddrs {
        self.or(self.castore.or_embedded(), dirs::embedded_path_info_addr)
    }

    /// A client's: the local store daemon, which serves all three.
    pub fn or_store_daemon(&self) -> ResolvedStoreAddrs {
        let socket = || dirs::grpc_unix_addr(&dirs::store_socket());
        self.or(self.castore.or(socket, socket), socket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_addresses_win_over_defaults() {
        let a = StoreAddrs {
            castore: CastoreAddrs { blob_service_addr: Some("memory://".into()), directory_service_addr: None },
            path_info: PathInfoAddr { path_info_service_addr: Some("sled://".into()) },
        };
        let r = a.or_store_daemon();
        assert_eq!(r.blob, "memory://");
        assert!(r.directory.starts_with("grpc+unix:///") && r.directory.ends_with("/snix-store.sock"), "{r:?}");
        assert_eq!(r.path_info, "sled://");
        let e = StoreAddrs::default().or_embedded();
        assert!(e.blob.starts_with("objectstore+file:///") && e.blob.ends_with("/castore/blobs"), "{e:?}");
        assert!(e.directory.starts_with("sled:///") && e.directory.ends_with("/castore/directories"), "{e:?}");
        assert!(e.path_info.starts_with("sled:///") && e.path_info.ends_with("/store/pathinfo"), "{e:?}");
        assert_eq!(e.named()[2], ("PATH_INFO_SERVICE_ADDR", e.path_info.as_str()));
    }
}

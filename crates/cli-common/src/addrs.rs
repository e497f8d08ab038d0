//! The service-address flags every binary takes, each with its environment
//! twin. `None` means "the binary's default" (embedded backends for a daemon,
//! the local daemon's socket for a client).

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

impl CastoreAddrs {
    /// Both addresses, each falling back to `default_blob` / `default_dirs`.
    pub fn resolve(&self, default_blob: String, default_dirs: String) -> (String, String) {
        (
            self.blob_service_addr.clone().unwrap_or(default_blob),
            self.directory_service_addr.clone().unwrap_or(default_dirs),
        )
    }
}

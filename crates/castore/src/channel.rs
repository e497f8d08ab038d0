//! gRPC channels to a remote daemon from `grpc+unix:///abs/path.sock` or
//! `grpc+http://host:port` addresses. Channels connect lazily and reconnect
//! by themselves, so a restarted daemon is picked up again.

use tonic::transport::{Channel, Endpoint};

use crate::errors::Error;

pub fn channel_from_url(url: &url::Url) -> Result<Channel, Error> {
    let endpoint = match url.scheme() {
        "grpc+unix" => Endpoint::from_shared(format!("unix://{}", absolute_path(url)?.display())),
        "grpc+http" => {
            let host = url.host_str().ok_or_else(|| Error::InvalidRequest(format!("{url}: missing host")))?;
            let port = url.port().ok_or_else(|| Error::InvalidRequest(format!("{url}: missing port")))?;
            let host =
                if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_string() };
            Endpoint::from_shared(format!("http://{host}:{port}"))
        }
        other => return Err(Error::InvalidRequest(format!("{url}: {other} is not a gRPC address scheme"))),
    }
    .map_err(|e| Error::InvalidRequest(format!("{url}: {e}")))?;
    Ok(tune(endpoint).connect_lazy())
}

/// Parses a service address, with a message naming what it was for.
pub fn parse_addr(what: &str, addr: &str) -> Result<url::Url, Error> {
    url::Url::parse(addr).map_err(|e| Error::InvalidRequest(format!("invalid {what} address {addr:?}: {e}")))
}

/// The absolute path of a `scheme:///path` address.
pub fn absolute_path(url: &url::Url) -> Result<std::path::PathBuf, Error> {
    if url.host_str().is_some_and(|h| !h.is_empty()) || !url.path().starts_with('/') || url.path() == "/" {
        return Err(Error::InvalidRequest(format!("{url}: expected {}:///absolute/path", url.scheme())));
    }
    Ok(std::path::PathBuf::from(url.path()))
}

/// HTTP/2 flow-control windows for bulk transfers. The defaults (64 KiB)
/// make every blob chunk wait for several WINDOW_UPDATE round trips.
pub const STREAM_WINDOW: u32 = 8 * 1024 * 1024;
pub const CONNECTION_WINDOW: u32 = 32 * 1024 * 1024;
/// HTTP/2 frames up to 1 MiB (default 16 KiB): fewer frames per chunk.
pub const MAX_FRAME: u32 = 1024 * 1024 - 1;

fn tune(e: Endpoint) -> Endpoint {
    e.initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME)
        .tcp_nodelay(true)
}

/// A server builder with the same windows as our clients.
pub fn server_builder() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME)
}

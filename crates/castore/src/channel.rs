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
    Ok(endpoint.connect_lazy())
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

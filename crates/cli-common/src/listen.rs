//! Listen addresses and listeners: a unix socket (the default: permissions
//! 0660, never an unauthenticated TCP port unless asked), a TCP address, or a
//! socket passed by systemd (`LISTEN_FDS`).

use std::fmt;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use thiserror::Error;
use tokio::net::{TcpListener, UnixListener};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddr {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

#[derive(Debug, Error)]
pub enum ListenError {
    #[error("invalid listen address {0:?}: use unix:///abs/path, /abs/path or host:port")]
    BadAddress(String),
    #[error("{path}: {what}: {source}")]
    Io { path: String, what: &'static str, source: std::io::Error },
    #[error("{0} is in use by a running process; refusing to take it over")]
    InUse(String),
    #[error("systemd socket activation: {0}")]
    Activation(String),
    #[error("{var}={addr} is this daemon's own socket: it would call itself forever. Unset it (embedded backends) or point it at another daemon")]
    SelfReference { var: String, addr: String },
}

impl FromStr for ListenAddr {
    type Err = ListenError;
    fn from_str(s: &str) -> Result<Self, ListenError> {
        if let Some(p) = s.strip_prefix("unix://") {
            if !p.starts_with('/') {
                return Err(ListenError::BadAddress(s.into()));
            }
            return Ok(ListenAddr::Unix(PathBuf::from(p)));
        }
        if s.starts_with('/') {
            return Ok(ListenAddr::Unix(PathBuf::from(s)));
        }
        s.parse::<SocketAddr>().map(ListenAddr::Tcp).map_err(|_| ListenError::BadAddress(s.into()))
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Unix(p) => write!(f, "unix://{}", p.display()),
            ListenAddr::Tcp(a) => write!(f, "{a}"),
        }
    }
}

pub enum Listener {
    Unix(UnixListener, Option<PathBuf>),
    Tcp(TcpListener),
}

impl Listener {
    /// The socket systemd passed us, if any (LISTEN_FDS); else binds `addr`.
    pub async fn bind_or_activated(addr: &ListenAddr, unix_mode: u32) -> Result<Listener, ListenError> {
        if let Some(l) = Self::activated()? {
            return Ok(l);
        }
        Self::bind(addr, unix_mode).await
    }

    /// The first socket passed by systemd socket activation.
    pub fn activated() -> Result<Option<Listener>, ListenError> {
        use std::os::fd::FromRawFd;
        let Some(fd) = sd_notify::listen_fds().map_err(|e| ListenError::Activation(e.to_string()))?.next() else {
            return Ok(None);
        };
        match socket_kind(fd)? {
            Kind::Unix => {
                // SAFETY: systemd hands us this fd to own; nothing else uses it
                let l = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
                l.set_nonblocking(true).map_err(|e| ListenError::Activation(e.to_string()))?;
                Ok(Some(Listener::Unix(
                    UnixListener::from_std(l).map_err(|e| ListenError::Activation(e.to_string()))?,
                    None,
                )))
            }
            Kind::Inet => {
                // SAFETY: as above
                let l = unsafe { std::net::TcpListener::from_raw_fd(fd) };
                l.set_nonblocking(true).map_err(|e| ListenError::Activation(e.to_string()))?;
                Ok(Some(Listener::Tcp(TcpListener::from_std(l).map_err(|e| ListenError::Activation(e.to_string()))?)))
            }
        }
    }

    /// Binds `addr`. A unix socket's directory is created (0755) and the
    /// socket gets `unix_mode`; a stale socket file (nobody listening) is
    /// replaced, a live one is an error.
    pub async fn bind(addr: &ListenAddr, unix_mode: u32) -> Result<Listener, ListenError> {
        match addr {
            ListenAddr::Tcp(a) => {
                let l = TcpListener::bind(a).await.map_err(|source| ListenError::Io {
                    path: a.to_string(),
                    what: "binding",
                    source,
                })?;
                Ok(Listener::Tcp(l))
            }
            ListenAddr::Unix(path) => {
                let io = |what: &'static str| {
                    move |source| ListenError::Io { path: path.display().to_string(), what, source }
                };
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(io("creating the socket's directory"))?;
                }
                remove_stale_socket(path).await?;
                let l = UnixListener::bind(path).map_err(io("binding"))?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(unix_mode))
                    .map_err(io("setting the socket's permissions"))?;
                Ok(Listener::Unix(l, Some(path.clone())))
            }
        }
    }

    /// Refuses backend addresses (`(variable, address)`) that point back at
    /// this listener: a daemon configured as its own backend would recurse
    /// on every request until it runs out of memory.
    pub fn refuse_self_reference(&self, backends: &[(&str, &str)]) -> Result<(), ListenError> {
        let own: Vec<String> = match self {
            Listener::Unix(l, path) => {
                let p = path.clone().or_else(|| l.local_addr().ok()?.as_pathname().map(Path::to_path_buf));
                p.into_iter().map(|p| format!("grpc+unix://{}", p.display())).collect()
            }
            Listener::Tcp(l) => l.local_addr().into_iter().map(|a| format!("grpc+http://{a}")).collect(),
        };
        for (var, addr) in backends {
            let addr_no_query = addr.split('?').next().unwrap_or(addr).trim_end_matches('/');
            if own.iter().any(|o| o == addr_no_query) {
                return Err(ListenError::SelfReference { var: var.to_string(), addr: addr.to_string() });
            }
        }
        Ok(())
    }

    /// Serves a tonic router on this listener until `shutdown` resolves.
    pub async fn serve_tonic<F>(
        self,
        router: tonic::transport::server::Router,
        shutdown: F,
    ) -> Result<(), tonic::transport::Error>
    where
        F: std::future::Future<Output = ()>,
    {
        match self {
            Listener::Unix(l, path) => {
                let r = router
                    .serve_with_incoming_shutdown(tokio_stream::wrappers::UnixListenerStream::new(l), shutdown)
                    .await;
                if let Some(p) = path {
                    let _ = std::fs::remove_file(p);
                }
                r
            }
            Listener::Tcp(l) => {
                router.serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(l), shutdown).await
            }
        }
    }
}

enum Kind {
    Unix,
    Inet,
}

/// What kind of socket systemd passed.
fn socket_kind(fd: i32) -> Result<Kind, ListenError> {
    // SAFETY: a zeroed sockaddr_storage is a valid value of it
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: getsockname writes at most `len` bytes into `addr`
    let r = unsafe { libc::getsockname(fd, &mut addr as *mut _ as *mut libc::sockaddr, &mut len) };
    if r != 0 {
        return Err(ListenError::Activation(format!("fd {fd}: {}", std::io::Error::last_os_error())));
    }
    match i32::from(addr.ss_family) {
        libc::AF_UNIX => Ok(Kind::Unix),
        libc::AF_INET | libc::AF_INET6 => Ok(Kind::Inet),
        other => Err(ListenError::Activation(format!("fd {fd} is a socket of address family {other}"))),
    }
}

/// Removes `path` if it is a socket nobody listens on any more.
async fn remove_stale_socket(path: &Path) -> Result<(), ListenError> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else { return Ok(()) };
    if !meta.file_type().is_socket() {
        return Err(ListenError::Io {
            path: path.display().to_string(),
            what: "refusing to replace a file that is not a socket",
            source: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
        });
    }
    if tokio::net::UnixStream::connect(path).await.is_ok() {
        return Err(ListenError::InUse(path.display().to_string()));
    }
    std::fs::remove_file(path).map_err(|source| ListenError::Io {
        path: path.display().to_string(),
        what: "removing the stale socket",
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_backend_address_pointing_at_the_listener_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("d.sock");
        let l = Listener::bind(&ListenAddr::Unix(sock.clone()), 0o600).await.unwrap();
        let own = format!("grpc+unix://{}", sock.display());
        let other = format!("grpc+unix://{}", dir.path().join("other.sock").display());
        let err =
            l.refuse_self_reference(&[("BLOB_SERVICE_ADDR", &other), ("DIRECTORY_SERVICE_ADDR", &own)]).unwrap_err();
        assert!(err.to_string().starts_with("DIRECTORY_SERVICE_ADDR="), "{err}");
        assert!(l.refuse_self_reference(&[("BLOB_SERVICE_ADDR", &other), ("X", "sled:///x")]).is_ok());
        let tcp = Listener::bind(&ListenAddr::Tcp("127.0.0.1:0".parse().unwrap()), 0).await.unwrap();
        let Listener::Tcp(t) = &tcp else { panic!() };
        let addr = format!("grpc+http://{}", t.local_addr().unwrap());
        assert!(tcp.refuse_self_reference(&[("PATH_INFO_SERVICE_ADDR", &addr)]).is_err());
    }

    #[test]
    fn parses_addresses() {
        assert_eq!("unix:///run/x.sock".parse::<ListenAddr>().unwrap(), ListenAddr::Unix("/run/x.sock".into()));
        assert_eq!("/run/x.sock".parse::<ListenAddr>().unwrap(), ListenAddr::Unix("/run/x.sock".into()));
        assert_eq!("[::1]:8000".parse::<ListenAddr>().unwrap(), ListenAddr::Tcp("[::1]:8000".parse().unwrap()));
        for bad in ["unix://relative", "relative.sock", "host-without-port", ""] {
            assert!(bad.parse::<ListenAddr>().is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn unix_socket_permissions_and_stale_socket_handling() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/d.sock");
        let addr = ListenAddr::Unix(path.clone());
        let l = Listener::bind(&addr, 0o660).await.unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o660);
        // a live socket is not taken over
        assert!(matches!(Listener::bind(&addr, 0o660).await, Err(ListenError::InUse(_))));
        drop(l);
        // a stale one is replaced
        Listener::bind(&addr, 0o600).await.unwrap();
        // a regular file is never removed
        let file = dir.path().join("file");
        std::fs::write(&file, b"keep").unwrap();
        assert!(Listener::bind(&ListenAddr::Unix(file.clone()), 0o600).await.is_err());
        assert_eq!(std::fs::read(&file).unwrap(), b"keep");
    }
}

//! Default locations: state (databases, blobs) and runtime (sockets).
//!
//! systemd's `StateDirectory=`/`RuntimeDirectory=` set `$STATE_DIRECTORY` /
//! `$RUNTIME_DIRECTORY`; otherwise root uses `/var/lib/snix` and `/run/snix`,
//! and other users `$XDG_DATA_HOME/snix` (or `~/.local/share/snix`) and
//! `$XDG_RUNTIME_DIR/snix`.

use std::path::PathBuf;

fn first_of(var: &str) -> Option<PathBuf> {
    // systemd passes colon-separated lists when several directories are set
    std::env::var(var).ok().and_then(|v| v.split(':').next().filter(|s| !s.is_empty()).map(PathBuf::from))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail
    unsafe { libc::geteuid() == 0 }
}

/// Where daemons keep their data.
pub fn state_dir() -> PathBuf {
    if let Some(d) = first_of("STATE_DIRECTORY") {
        return d;
    }
    if is_root() {
        return PathBuf::from("/var/lib/snix");
    }
    if let Some(d) = first_of("XDG_DATA_HOME") {
        return d.join("snix");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/snix")
}

/// Where daemons put their sockets (and where clients look for them).
pub fn runtime_dir() -> PathBuf {
    if let Some(d) = first_of("RUNTIME_DIRECTORY") {
        return d;
    }
    if is_root() {
        return PathBuf::from("/run/snix");
    }
    if let Some(d) = first_of("XDG_RUNTIME_DIR") {
        return d.join("snix");
    }
    // SAFETY: geteuid has no preconditions and cannot fail
    std::env::temp_dir().join(format!("snix-{}", unsafe { libc::geteuid() }))
}

/// The default socket of the castore daemon.
pub fn castore_socket() -> PathBuf {
    runtime_dir().join("snix-castore.sock")
}

/// The default socket of the store daemon (which also serves castore).
pub fn store_socket() -> PathBuf {
    runtime_dir().join("snix-store.sock")
}

/// The embedded blob store of a daemon: chunk files under the state directory.
pub fn embedded_blob_addr() -> String {
    format!("objectstore+file://{}", state_dir().join("castore/blobs").display())
}

/// The embedded directory database of a daemon.
pub fn embedded_directory_addr() -> String {
    format!("sled://{}", state_dir().join("castore/directories").display())
}

/// The embedded path-info database of a store daemon.
pub fn embedded_path_info_addr() -> String {
    format!("sled://{}", state_dir().join("store/pathinfo").display())
}

/// `grpc+unix://` address of a socket path.
pub fn grpc_unix_addr(socket: &std::path::Path) -> String {
    format!("grpc+unix://{}", socket.display())
}

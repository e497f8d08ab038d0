//! The `snix-mount` program: mount, report ready, unmount on
//! SIGINT/SIGTERM. Flags and the mount's lifecycle; the file system itself
//! is `snix_fuse_mount::fs`.

use std::path::{Path, PathBuf};

use clap::Parser;
use snix_cli_common::StoreAddrs;
use snix_fuse_mount::fs::{Options, SnixFs};
use snix_store::composition::StoreServices;

/// Mount the snix store read-only with FUSE: one directory per store path,
/// named by its basename (`<hash>-<name>`), contents read from the castore.
///
/// Usable as an overlayfs lowerdir (e.g. under a local-overlay Nix store).
/// Talks to `snix-store daemon` (its socket in the runtime directory) unless
/// the *_SERVICE_ADDR flags or variables say otherwise.
#[derive(Parser, Debug)]
#[command(name = "snix-mount", version)]
struct Cli {
    /// Where to mount (an existing directory).
    mountpoint: PathBuf,

    /// Allow listing the mount's root (every store path). Off by default: on
    /// a large store a listing is expensive, and Nix never needs it.
    #[arg(long, env = "SNIX_MOUNT_LIST_ROOT")]
    list_root: bool,

    /// Let users other than the one mounting access the mount (needed when
    /// Nix or an overlay mount run as another user; as root, always allowed).
    #[arg(long, env = "SNIX_MOUNT_ALLOW_OTHER")]
    allow_other: bool,

    /// FUSE worker threads: requests served at once.
    #[arg(long, env = "SNIX_MOUNT_THREADS", default_value_t = default_threads())]
    threads: usize,

    /// Expose each file's and directory's castore digest as the extended
    /// attribute `user.snix.castore.digest`.
    #[arg(long, env = "SNIX_MOUNT_SHOW_XATTR", overrides_with = "no_show_xattr")]
    show_xattr: bool,

    /// Expose no extended attributes (the default).
    #[arg(long, overrides_with = "show_xattr")]
    no_show_xattr: bool,

    #[command(flatten)]
    addrs: StoreAddrs,
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(4).max(4) * 2
}

#[derive(Debug, thiserror::Error)]
enum MountError {
    #[error(
        "{0} is a stale FUSE mount (the process serving it died). Unmount it first: `umount -l {0}` (or `fusermount3 -u {0}`)"
    )]
    Stale(String),
    #[error("mount point {0}: {1}")]
    MountPoint(String, String),
    #[error("cannot reach the store daemon: {0}")]
    Daemon(snix_store::Error),
    #[error("mounting at {0}: {1}")]
    Mount(String, std::io::Error),
}

/// Refuses a mount point that is missing, not a directory, or a dead mount.
fn check_mountpoint(path: &Path) -> Result<(), MountError> {
    let shown = path.display().to_string();
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(MountError::MountPoint(shown, "not a directory".into())),
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Err(MountError::Stale(shown)),
        Err(e) => Err(MountError::MountPoint(shown, e.to_string())),
    }
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    check_mountpoint(&cli.mountpoint)?;
    let a = cli.addrs.or_store_daemon();
    let s = StoreServices::from_addrs(&a.blob, &a.directory, &a.path_info)?;
    // fail now, not on the first lookup, if the daemon is not there
    s.infos.get([0; 20]).await.map_err(MountError::Daemon)?;

    let fs = SnixFs::new(
        tokio::runtime::Handle::current(),
        s.blobs,
        s.dirs,
        s.infos,
        Options { list_root: cli.list_root, show_xattr: cli.show_xattr && !cli.no_show_xattr },
    );
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::RO,
        fuser::MountOption::FSName("snix".into()),
        fuser::MountOption::Subtype("snix".into()),
        fuser::MountOption::DefaultPermissions,
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
    ];
    if cli.allow_other {
        config.acl = fuser::SessionACL::All;
    }
    config.n_threads = Some(cli.threads.max(1));
    config.clone_fd = true;

    let mountpoint = cli.mountpoint.clone();
    let shown = mountpoint.display().to_string();
    let mut session = tokio::task::spawn_blocking(move || fuser::Session::new(fs, &mountpoint, &config))
        .await?
        .map_err(|e| MountError::Mount(shown.clone(), e))?;
    let mut unmounter = session.unmount_callable();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let serving = std::thread::Builder::new().name("fuse-session".into()).spawn(move || {
        let r = session.run();
        let _ = done_tx.send(());
        r
    })?;
    tracing::info!(mountpoint = %shown, threads = cli.threads, list_root = cli.list_root, "mounted");
    snix_cli_common::process::notify_ready();

    tokio::select! {
        _ = snix_cli_common::process::shutdown_signal() => {
            tracing::info!(mountpoint = %shown, "unmounting");
            if let Err(e) = unmounter.unmount() {
                tracing::error!(error = %e, "unmount failed");
            }
            // The session ends when the kernel drops the file system. A copy
            // of the mount in another mount namespace (a service started with
            // PrivateTmp= under a private, non-shared root) keeps it alive:
            // don't wait for that; exiting closes /dev/fuse, and such copies
            // then fail with ENOTCONN.
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
            while !serving.is_finished() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            if !serving.is_finished() {
                tracing::warn!(mountpoint = %shown, "the mount is still in use in another mount namespace; exiting anyway");
                return Ok(());
            }
        }
        _ = done_rx => tracing::info!(mountpoint = %shown, "unmounted from outside"),
    }
    let result = tokio::task::spawn_blocking(move || serving.join()).await?;
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("FUSE session ended with an error: {e}").into()),
        Err(_) => Err("FUSE session thread panicked".into()),
    }
}

fn main() -> std::process::ExitCode {
    snix_cli_common::run_main("snix-mount", run(Cli::parse()))
}

//! The `snix-mount` program: mount, report ready, unmount on
//! SIGINT/SIGTERM. Flags and the mount's lifecycle; the file system itself
//! is `snix_fuse_mount::fs`.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use clap::Parser;
use snix_cli_common::StoreAddrs;
use snix_fuse_mount::cache::ContentCache;
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

    /// List the mount's root: every registered store path, each before the
    /// paths it refers to (the default). An overlay over the mount then
    /// lists the lower layer, as Nix's garbage collector on a local-overlay
    /// store needs.
    #[arg(long, env = "SNIX_MOUNT_LIST_ROOT", overrides_with = "no_list_root")]
    list_root: bool,

    /// Refuse to list the root (a listing reads every path info from the
    /// daemon; Nix's garbage collector over an overlay then finds no lower
    /// path). Lookups by name work either way.
    #[arg(long, overrides_with = "list_root")]
    no_list_root: bool,

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

    /// Where whole copies of files read are kept, so later reads come from
    /// local disk (default: $CACHE_DIRECTORY, as systemd's CacheDirectory=
    /// sets it, else /var/cache/snix-mount). Copies survive restarts.
    #[arg(long, env = "SNIX_MOUNT_CACHE_DIR")]
    cache_dir: Option<PathBuf>,

    /// The cache's bound, in bytes (suffixes K, M, G, T: powers of 1024);
    /// least recently used copies go first. 0 turns the cache off. Default:
    /// 10% of the free space of the cache's file system at start-up.
    #[arg(long, env = "SNIX_MOUNT_CACHE_SIZE", value_parser = parse_size)]
    cache_size: Option<u64>,

    /// Let the kernel read cached copies itself (FUSE passthrough): `auto`
    /// uses it where the kernel (Linux 6.9 or later) and privileges
    /// (CAP_SYS_ADMIN) allow, `never` serves every read from this process.
    #[arg(long, env = "SNIX_MOUNT_PASSTHROUGH", value_enum, default_value_t = Passthrough::Auto)]
    passthrough: Passthrough,

    #[command(flatten)]
    addrs: StoreAddrs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Passthrough {
    Auto,
    Never,
}

/// `1234`, `512K`, `10G`: bytes, suffixes in powers of 1024.
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (digits, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("{s:?}: unknown size suffix {c:?} (K, M, G or T)")),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let n: u64 = digits.parse().map_err(|_| format!("{s:?} is not a size in bytes (e.g. 10G)"))?;
    n.checked_mul(1u64 << shift).ok_or_else(|| format!("{s:?} is too large"))
}

/// Free bytes of the file system holding `dir`.
fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and a statvfs to fill
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

/// Whether this process has CAP_SYS_ADMIN (FUSE backing files need it).
fn has_cap_sys_admin() -> bool {
    const CAP_SYS_ADMIN: u32 = 21;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|st| {
            let hex = st.lines().find_map(|l| l.strip_prefix("CapEff:"))?.trim().to_string();
            u64::from_str_radix(&hex, 16).ok()
        })
        .is_some_and(|caps| caps & (1 << CAP_SYS_ADMIN) != 0)
}

/// Files not cached yet are read through us: ask the kernel for 1 MiB
/// readahead on this mount (its default, 128 KiB, means eight times the
/// requests). Best effort: needs root and sysfs.
fn widen_readahead(mountpoint: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(m) = std::fs::metadata(mountpoint) else { return };
    let bdi = format!("/sys/class/bdi/{}:{}/read_ahead_kb", libc::major(m.dev()), libc::minor(m.dev()));
    match std::fs::write(&bdi, "1024") {
        Ok(()) => tracing::debug!(%bdi, "readahead 1 MiB"),
        Err(e) => tracing::info!(%bdi, error = %e, "could not widen readahead; the kernel's default stays"),
    }
}

/// The content cache the flags ask for (None: turned off).
fn open_cache(cli: &Cli) -> Result<Option<std::sync::Arc<ContentCache>>, MountError> {
    let dir = cli.cache_dir.clone().unwrap_or_else(|| {
        // systemd may list several, separated by ':'; ours is the first
        std::env::var("CACHE_DIRECTORY")
            .ok()
            .and_then(|d| d.split(':').next().filter(|d| !d.is_empty()).map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("/var/cache/snix-mount"))
    });
    if cli.cache_size == Some(0) {
        tracing::info!("content cache off (--cache-size 0): every read goes to the castore");
        return Ok(None);
    }
    let shown = dir.display().to_string();
    std::fs::create_dir_all(&dir).map_err(|e| MountError::Cache(shown.clone(), e))?;
    let size = match cli.cache_size {
        Some(n) => n,
        None => free_bytes(&dir).map_err(|e| MountError::Cache(shown.clone(), e))? / 10,
    };
    let cache = ContentCache::open(&dir, size).map_err(|e| MountError::Cache(shown.clone(), e))?;
    tracing::info!(dir = %shown, bound = size, used = cache.used_bytes(), "content cache");
    Ok(Some(cache))
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
    #[error("content cache {0}: {1}")]
    Cache(String, std::io::Error),
    #[error("mounting at {0}: {1}")]
    Mount(String, std::io::Error),
}

/// Refuses a mount point that is missing, not a directory, or a dead mount.
fn check_mountpoint(path: &Path) -> Result<(), MountError> {
    let shown = path.display().to_string();
    // opening it reaches the file system behind it; a stat may be answered
    // from the attributes the kernel kept of a mount that has since died
    if let Err(e) = std::fs::read_dir(path) {
        if e.raw_os_error() == Some(libc::ENOTCONN) {
            return Err(MountError::Stale(shown));
        }
    }
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(MountError::MountPoint(shown, "not a directory".into())),
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Err(MountError::Stale(shown)),
        Err(e) => Err(MountError::MountPoint(shown, e.to_string())),
    }
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    // before mounting: a SIGTERM right after the mount appears unmounts it
    let shutdown = snix_cli_common::process::shutdown_signal();
    check_mountpoint(&cli.mountpoint)?;
    let a = cli.addrs.or_store_daemon();
    let s = StoreServices::from_addrs(&a.blob, &a.directory, &a.path_info)?;
    // fail now, not on the first lookup, if the daemon is not there
    s.infos.get([0; 20]).await.map_err(MountError::Daemon)?;

    let cache = open_cache(&cli)?;
    let passthrough = match cli.passthrough {
        Passthrough::Never => {
            tracing::info!("passthrough off: --passthrough never");
            false
        }
        Passthrough::Auto if cache.is_none() => {
            tracing::info!("passthrough off: there is no content cache to pass through to");
            false
        }
        Passthrough::Auto if !has_cap_sys_admin() => {
            tracing::info!("passthrough off: it needs CAP_SYS_ADMIN; cached files are read with pread");
            false
        }
        // the kernel has its say in init
        Passthrough::Auto => true,
    };
    let infos = s.infos.clone();
    let fs = SnixFs::new(
        tokio::runtime::Handle::current(),
        s.blobs,
        s.dirs,
        s.infos,
        Options { list_root: !cli.no_list_root, show_xattr: cli.show_xattr && !cli.no_show_xattr, cache, passthrough },
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

    let misses = fs.misses();
    let mountpoint = cli.mountpoint.clone();
    let shown = mountpoint.display().to_string();
    let mut session = tokio::task::spawn_blocking(move || fuser::Session::new(fs, &mountpoint, &config))
        .await?
        .map_err(|e| MountError::Mount(shown.clone(), e))?;
    let mut unmounter = session.unmount_callable();
    // a path registered after a miss is visible at once
    let notifier = session.notifier();
    snix_fuse_mount::misses::watch_changes(infos, misses, move |name| {
        // ENOENT: the kernel holds no entry of that name
        if let Err(e) = notifier.inval_entry(fuser::INodeNo(snix_fuse_mount::inodes::ROOT), OsStr::from_bytes(name)) {
            if e.raw_os_error() != Some(libc::ENOENT) {
                tracing::warn!(error = %e, "dropping a kernel entry failed");
            }
        }
    })
    .await;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let serving = std::thread::Builder::new().name("fuse-session".into()).spawn(move || {
        let r = session.run();
        let _ = done_tx.send(());
        r
    })?;
    widen_readahead(&cli.mountpoint);
    tracing::info!(mountpoint = %shown, threads = cli.threads, list_root = !cli.no_list_root, "mounted");
    snix_cli_common::process::notify_ready();

    tokio::select! {
        _ = shutdown => {
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
    // One malloc arena: each of the many FUSE and runtime threads would
    // otherwise get its own, each keeping the 1 MiB read buffers it freed
    // (76 MB resident after a walk and a 1 GiB read, 42 MB with one arena).
    // SAFETY: mallopt only sets a tunable; called before any other thread exists.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    snix_cli_common::run_main("snix-mount", run(Cli::parse()))
}

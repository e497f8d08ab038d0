//! The `nar-bridge` program: flags, listening (a unix socket, TCP when
//! asked, or systemd's socket), serving until SIGINT/SIGTERM. The cache is
//! the `snix_nar_bridge` library.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use nix_compat::signing::SigningKey;
use snix_cli_common::{dirs, ListenAddr, Listener, SocketMode, StoreAddrs};
use snix_nar_bridge::urls::Compression;
use snix_nar_bridge::{router, Bridge};
use snix_store::composition::StoreServices;

/// Serve the snix store as a Nix HTTP binary cache: `nix copy --from
/// http://HOST:PORT`, or a substituter. NARs are rendered from the castore
/// as they are sent (byte-identical to `nix-store --dump`), compressed on
/// the fly; narinfos are signed on the fly with --signing-key.
#[derive(Parser, Debug)]
#[command(name = "nar-bridge", version)]
struct Cli {
    /// Where to listen: unix:///abs/path, /abs/path or host:port (TCP: no
    /// authentication; anyone who reaches it reads the whole store).
    /// Default: nar-bridge.sock in the runtime directory ($RUNTIME_DIRECTORY,
    /// else /run/snix as root). A socket passed by systemd (LISTEN_FDS)
    /// takes precedence.
    #[arg(short = 'l', long, env = "SNIX_NAR_BRIDGE_LISTEN")]
    listen: Option<ListenAddr>,

    /// Permissions of the unix socket (octal).
    #[arg(long, default_value = "660")]
    unix_socket_mode: SocketMode,

    /// A secret key file as `nix-store --generate-binary-cache-key` writes
    /// it: every narinfo served gets its signature.
    #[arg(long, env = "SNIX_NAR_BRIDGE_SIGNING_KEY")]
    signing_key: Option<PathBuf>,

    /// How NARs are compressed (none, zstd or xz; Nix before 2.4 reads no
    /// zstd). Every form is served; this is the one narinfos point at.
    #[arg(long, default_value = "none", env = "SNIX_NAR_BRIDGE_COMPRESSION")]
    compression: Compression,

    /// nix-cache-info's Priority: Nix prefers substituters with lower ones.
    #[arg(long, default_value_t = 40)]
    priority: u32,

    #[command(flatten)]
    addrs: StoreAddrs,
}

fn read_signing_key(path: &std::path::Path) -> Result<SigningKey, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("--signing-key {}: {e}", path.display()))?;
    text.trim().parse().map_err(|e| format!("--signing-key {}: {e}", path.display()))
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let a = cli.addrs.or_store_daemon();
    let services = StoreServices::from_addrs(&a.blob, &a.directory, &a.path_info)?;
    let signing_key = cli.signing_key.as_deref().map(read_signing_key).transpose()?;
    if let Some(k) = &signing_key {
        tracing::info!(key = %k.verifying_key(), "signing narinfos");
    }
    let bridge = Arc::new(Bridge { services, signing_key, compression: cli.compression, priority: cli.priority });
    let app = router(bridge);

    let listen = cli.listen.unwrap_or_else(|| ListenAddr::Unix(dirs::runtime_dir().join("nar-bridge.sock")));
    let listener = Listener::bind_or_activated(&listen, cli.unix_socket_mode.0).await?;
    let shutdown = snix_cli_common::shutdown_signal();
    match listener {
        Listener::Unix(l, path) => {
            tracing::info!(listen = %listen, "nar-bridge ready");
            snix_cli_common::notify_ready();
            let r = axum::serve(l, app).with_graceful_shutdown(shutdown).await;
            if let Some(p) = path {
                let _ = std::fs::remove_file(p);
            }
            r?
        }
        Listener::Tcp(l) => {
            tracing::info!(listen = %l.local_addr()?, "nar-bridge ready");
            snix_cli_common::notify_ready();
            axum::serve(l, app).with_graceful_shutdown(shutdown).await?
        }
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    snix_cli_common::run_main("nar-bridge", run(Cli::parse()))
}

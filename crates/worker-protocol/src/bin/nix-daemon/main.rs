//! The `nix-daemon` program: listen (a unix socket, or systemd's), check
//! who connects, serve each connection in its own task. Flags and wiring
//! only; the protocol is the `snix_worker_protocol` library.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, ValueEnum};
use nix_compat::signing::VerifyingKey;
use snix_cli_common::{dirs, ListenAddr, Listener, StoreAddrs};
use snix_store::composition::StoreServices;
use snix_worker_protocol::server::{Backend, Connection, Policy};
use snix_worker_protocol::trust::{access, resolve_peer, Access};

/// A Nix daemon (worker protocol 1.10 – 1.38) serving the snix store: Nix
/// clients query, add and copy store paths through it — directly
/// (`--store unix://SOCKET`) or as the lower store of a local-overlay store.
/// File contents are read by clients from their own file system (a
/// snix-mount), never through this socket. This store cannot build.
#[derive(Parser, Debug)]
#[command(name = "nix-daemon", version)]
struct Cli {
    /// Unix socket to listen on. Default: nix-daemon.sock in the runtime
    /// directory ($RUNTIME_DIRECTORY, else /run/snix as root). A socket
    /// passed by systemd (LISTEN_FDS) takes precedence.
    #[arg(short = 'l', long = "listen", env = "SNIX_NIX_DAEMON_LISTEN")]
    listen: Option<PathBuf>,

    /// Remove whatever is at the socket path first (even a live socket).
    #[arg(long)]
    unix_listen_unlink: bool,

    /// Who may connect, by file permissions: user (0600), group (0660) or
    /// everybody (0666; then --allowed-users decides).
    #[arg(long, value_enum, default_value = "group", env = "SNIX_NIX_DAEMON_LISTEN_CHMOD")]
    unix_listen_chmod: Chmod,

    /// Users with full rights (nix.conf syntax: names, @group, *).
    #[arg(long, num_args = 1.., value_delimiter = ' ', default_value = "root", env = "SNIX_TRUSTED_USERS")]
    trusted_users: Vec<String>,

    /// Users allowed to connect at all (names, @group, *).
    #[arg(long, num_args = 1.., value_delimiter = ' ', default_value = "*", env = "SNIX_ALLOWED_USERS")]
    allowed_users: Vec<String>,

    /// Require input-addressed paths to carry a signature by one of
    /// --trusted-public-keys (trusted clients may skip it: `--no-check-sigs`).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, env = "SNIX_REQUIRE_SIGS")]
    require_sigs: bool,

    /// Public keys (`name:base64`) whose signatures are trusted.
    #[arg(long, num_args = 0.., value_delimiter = ' ', env = "SNIX_TRUSTED_PUBLIC_KEYS")]
    trusted_public_keys: Vec<String>,

    /// Serve one connection on stdin/stdout (as `nix-daemon --stdio`), as
    /// an untrusted client unless --force-trusted.
    #[arg(long)]
    stdio: bool,

    /// With --stdio: treat the client as trusted.
    #[arg(long, requires = "stdio")]
    force_trusted: bool,

    /// Accepted for compatibility with Nix's nix-daemon; no effect.
    #[arg(long, hide = true)]
    daemon: bool,

    #[command(flatten)]
    addrs: StoreAddrs,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Chmod {
    User,
    Group,
    Everybody,
}

impl Chmod {
    fn mode(self) -> u32 {
        match self {
            Chmod::User => 0o600,
            Chmod::Group => 0o660,
            Chmod::Everybody => 0o666,
        }
    }
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let a = cli.addrs.or_store_daemon();
    let backend = Backend::new(StoreServices::from_addrs(&a.blob, &a.directory, &a.path_info)?);
    backend.watch_registrations();
    let keys = cli
        .trusted_public_keys
        .iter()
        .filter(|k| !k.is_empty())
        .map(|k| k.parse::<VerifyingKey>().map_err(|e| format!("--trusted-public-keys {k:?}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let policy = Arc::new(Policy {
        require_sigs: cli.require_sigs,
        trusted_public_keys: keys,
        daemon_version: format!("snix {}", env!("CARGO_PKG_VERSION")),
    });

    if cli.stdio {
        let a = if cli.force_trusted { Access::Trusted } else { Access::Allowed };
        let conn = Connection::handshake(tokio::io::stdin(), tokio::io::stdout(), a, "stdio".into(), backend, policy);
        if let Some(c) = conn.await? {
            c.serve().await?;
        }
        return Ok(());
    }

    let path = cli.listen.clone().unwrap_or_else(|| dirs::runtime_dir().join("nix-daemon.sock"));
    let listener = match Listener::activated()? {
        Some(l) => l,
        None => {
            if cli.unix_listen_unlink {
                match std::fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(format!("--unix-listen-unlink {}: {e}", path.display()).into())
                    }
                    _ => {}
                }
            }
            Listener::bind(&ListenAddr::Unix(path.clone()), cli.unix_listen_chmod.mode()).await?
        }
    };
    let Listener::Unix(listener, _cleanup) = listener else {
        return Err("nix-daemon listens on unix sockets only (the worker protocol has no authentication)".into());
    };
    tracing::info!(socket = %path.display(), "nix-daemon ready");
    snix_cli_common::notify_ready();

    let (trusted, allowed) = (Arc::new(cli.trusted_users), Arc::new(cli.allowed_users));
    let accept_loop = async {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (backend, policy, trusted, allowed) =
                (backend.clone(), policy.clone(), trusted.clone(), allowed.clone());
            tokio::spawn(async move {
                let cred = match stream.peer_cred() {
                    Ok(c) => c,
                    Err(e) => return tracing::warn!(error = %e, "no peer credentials; closing"),
                };
                let (uid, gid) = (cred.uid(), cred.gid());
                let peer = tokio::task::spawn_blocking(move || resolve_peer(uid, gid)).await.expect("resolve peer");
                let a = access(&peer, &trusted, &allowed);
                let user = peer.user.clone().unwrap_or_else(|| format!("uid {uid}"));
                tracing::debug!(%user, ?a, "connection");
                let (r, w) = stream.into_split();
                let res = match Connection::handshake(r, w, a, user.clone(), backend, policy).await {
                    Ok(Some(c)) => c.serve().await,
                    Ok(None) => {
                        tracing::warn!(%user, "refused: not in --allowed-users");
                        Ok(())
                    }
                    Err(e) => Err(e),
                };
                if let Err(e) = res {
                    tracing::info!(%user, error = %e, "connection ended");
                }
            });
        }
    };
    tokio::select! {
        _ = accept_loop => {},
        _ = snix_cli_common::shutdown_signal() => {},
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    snix_cli_common::run_main("nix-daemon", run(Cli::parse()))
}

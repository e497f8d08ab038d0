//! The `snix-castore` command: `daemon`, `ingest`, `ls`, `cat`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use snix_cli_common::{dirs, CastoreAddrs, ListenAddr, Listener};

use crate::blobservice::{self, BlobService};
use crate::directoryservice::{self, DirectoryService};
use crate::errors::Error;
use crate::{grpc_server, import, proto, B3Digest};

/// How long a shutdown waits for open connections before giving up on them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

#[derive(Parser, Debug)]
#[command(name = "snix-castore", version, about = "Content-addressed storage of blobs (BLAKE3) and Merkle directories")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the castore gRPC API (snix.castore.v1, plus grpc.health.v1 and reflection).
    ///
    /// Backends default to embedded ones under the state directory
    /// ($STATE_DIRECTORY, else /var/lib/snix as root): blobs in
    /// objectstore+file://<state>/castore/blobs, directories in
    /// sled://<state>/castore/directories.
    Daemon(DaemonArgs),
    /// Store a file or directory tree and print its root node.
    Ingest {
        path: PathBuf,
        #[command(flatten)]
        addrs: CastoreAddrs,
    },
    /// List a directory by digest.
    Ls {
        digest: B3Digest,
        #[command(flatten)]
        addrs: CastoreAddrs,
    },
    /// Write a blob to stdout, by digest.
    Cat {
        digest: B3Digest,
        #[command(flatten)]
        addrs: CastoreAddrs,
    },
}

#[derive(clap::Args, Debug)]
pub struct DaemonArgs {
    /// Where to listen: unix:///abs/path, /abs/path or host:port (TCP: no
    /// authentication — only on trusted networks). Default: a unix socket in
    /// the runtime directory ($RUNTIME_DIRECTORY, else /run/snix as root).
    /// A socket passed by systemd (LISTEN_FDS) takes precedence.
    #[arg(short = 'l', long, env = "SNIX_CASTORE_LISTEN_ADDRESS")]
    pub listen_address: Option<ListenAddr>,

    /// Permissions of the unix socket (octal).
    #[arg(long, default_value = "660", value_parser = parse_mode)]
    pub unix_socket_mode: u32,

    #[command(flatten)]
    pub addrs: CastoreAddrs,
}

pub fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s, 8).ok().filter(|m| *m <= 0o777).ok_or_else(|| format!("{s:?} is not an octal mode"))
}

/// Embedded default backends under the state directory.
pub fn embedded_castore_addrs() -> (String, String) {
    let state = dirs::state_dir().join("castore");
    (
        format!("objectstore+file://{}", state.join("blobs").display()),
        format!("sled://{}", state.join("directories").display()),
    )
}

/// The castore services of the local castore daemon, or as configured.
pub fn client_services(addrs: &CastoreAddrs) -> Result<(Arc<dyn BlobService>, Arc<dyn DirectoryService>), Error> {
    let socket = dirs::grpc_unix_addr(&dirs::castore_socket());
    let (b, d) = addrs.resolve(socket.clone(), socket);
    Ok((blobservice::from_addr(&b)?, directoryservice::from_addr(&d)?))
}

/// Health and reflection services for `descriptor_sets` (plus health's own).
pub async fn health_and_reflection(
    descriptor_sets: &[&'static [u8]],
) -> Result<
    (
        tonic_health::server::HealthReporter,
        tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
        tonic_reflection::server::v1::ServerReflectionServer<impl tonic_reflection::server::v1::ServerReflection>,
    ),
    Error,
> {
    let (reporter, health) = tonic_health::server::health_reporter();
    let mut builder = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
    for set in descriptor_sets {
        builder = builder.register_encoded_file_descriptor_set(set);
    }
    let reflection = builder.build_v1().map_err(|e| Error::Storage(format!("reflection: {e}")))?;
    Ok((reporter, health, reflection))
}

/// Serves `router` on `listener` until SIGINT/SIGTERM, then waits at most
/// [`SHUTDOWN_GRACE`] for open connections.
pub async fn serve_until_signal(
    listener: Listener,
    router: tonic::transport::server::Router,
) -> Result<(), Box<dyn std::error::Error>> {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        snix_cli_common::shutdown_signal().await;
        let _ = tx.send(());
    };
    tokio::select! {
        r = listener.serve_tonic(router, shutdown) => r?,
        _ = async { let _ = rx.await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
            tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; exiting anyway");
        }
    }
    Ok(())
}

pub async fn run_daemon(args: DaemonArgs) -> Result<(), Box<dyn std::error::Error>> {
    let (default_blob, default_dirs) = embedded_castore_addrs();
    let (blob_addr, dir_addr) = args.addrs.resolve(default_blob, default_dirs);
    let blobs = blobservice::from_addr(&blob_addr)?;
    let dirs_svc = directoryservice::from_addr(&dir_addr)?;

    let (reporter, health, reflection) = health_and_reflection(&[proto::FILE_DESCRIPTOR_SET]).await?;
    reporter.set_serving::<grpc_server::BlobServer>().await;
    reporter.set_serving::<grpc_server::DirectoryServer>().await;
    let router = grpc_server::castore_router(blobs, dirs_svc).add_service(health).add_service(reflection);

    let listen = args.listen_address.unwrap_or_else(|| ListenAddr::Unix(dirs::castore_socket()));
    let listener = Listener::bind_or_activated(&listen, args.unix_socket_mode).await?;
    listener.refuse_self_reference(&[("BLOB_SERVICE_ADDR", &blob_addr), ("DIRECTORY_SERVICE_ADDR", &dir_addr)])?;
    tracing::info!(listen = %listen, blobs = %blob_addr, directories = %dir_addr, "snix-castore ready");
    snix_cli_common::notify_ready();
    serve_until_signal(listener, router).await
}

pub async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Daemon(args) => run_daemon(args).await,
        Command::Ingest { path, addrs } => {
            let (blobs, dirs_svc) = client_services(&addrs)?;
            let node = import::ingest_path(&*blobs, &*dirs_svc, &path).await?;
            println!("{}", import::describe(&node));
            Ok(())
        }
        Command::Ls { digest, addrs } => {
            let (_, dirs_svc) = client_services(&addrs)?;
            for line in import::list_directory(&*dirs_svc, &digest).await? {
                println!("{line}");
            }
            Ok(())
        }
        Command::Cat { digest, addrs } => {
            let (blobs, _) = client_services(&addrs)?;
            let mut out = tokio::io::stdout();
            import::copy_blob_to(&*blobs, &digest, &mut out).await?;
            tokio::io::AsyncWriteExt::flush(&mut out).await?;
            Ok(())
        }
    }
}

/// The whole `snix-castore` program; `main.rs` only calls this.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    snix_cli_common::run_main("snix-castore", run(cli))
}

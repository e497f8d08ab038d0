//! The `snix-castore` program: `daemon`, `ingest`, `ls`, `cat`. Flags and
//! wiring only; the work is done by the `snix_castore` library.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use snix_castore::composition::CastoreServices;
use snix_castore::{grpc_server, import, proto, B3Digest};
use snix_cli_common::{dirs, CastoreAddrs, ListenAddr, Listener, SocketMode};

#[derive(Parser, Debug)]
#[command(name = "snix-castore", version, about = "Content-addressed storage of blobs (BLAKE3) and Merkle directories")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
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
struct DaemonArgs {
    /// Where to listen: unix:///abs/path, /abs/path or host:port (TCP: no
    /// authentication — only on trusted networks). Default: a unix socket in
    /// the runtime directory ($RUNTIME_DIRECTORY, else /run/snix as root).
    /// A socket passed by systemd (LISTEN_FDS) takes precedence.
    #[arg(short = 'l', long, env = "SNIX_CASTORE_LISTEN_ADDRESS")]
    listen_address: Option<ListenAddr>,

    /// Permissions of the unix socket (octal).
    #[arg(long, default_value = "660")]
    unix_socket_mode: SocketMode,

    #[command(flatten)]
    addrs: CastoreAddrs,
}

/// The castore services of the local castore daemon, or as configured.
fn client_services(addrs: &CastoreAddrs) -> Result<CastoreServices, snix_castore::Error> {
    let a = addrs.or_castore_daemon();
    CastoreServices::from_addrs(&a.blob, &a.directory)
}

async fn run_daemon(args: DaemonArgs) -> Result<(), Box<dyn std::error::Error>> {
    let addrs = args.addrs.or_embedded();
    let s = CastoreServices::from_addrs(&addrs.blob, &addrs.directory)?;

    let (reporter, health, reflection) = snix_cli_common::health_and_reflection(&[proto::FILE_DESCRIPTOR_SET])?;
    reporter.set_serving::<grpc_server::BlobServer>().await;
    reporter.set_serving::<grpc_server::DirectoryServer>().await;
    let router = grpc_server::castore_router(s.blobs, s.dirs).add_service(health).add_service(reflection);

    let listen = args.listen_address.unwrap_or_else(|| ListenAddr::Unix(dirs::castore_socket()));
    let listener = Listener::bind_or_activated(&listen, args.unix_socket_mode.0).await?;
    listener.refuse_self_reference(&addrs.named())?;
    tracing::info!(listen = %listen, blobs = %addrs.blob, directories = %addrs.directory, "snix-castore ready");
    snix_cli_common::notify_ready();
    Ok(snix_cli_common::serve_until_signal(listener, router).await?)
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Daemon(args) => run_daemon(args).await,
        Command::Ingest { path, addrs } => {
            let s = client_services(&addrs)?;
            let node = import::ingest_path(&*s.blobs, &*s.dirs, &path).await?;
            println!("{}", import::describe(&node));
            Ok(())
        }
        Command::Ls { digest, addrs } => {
            let s = client_services(&addrs)?;
            for line in import::list_directory(&*s.dirs, &digest).await? {
                println!("{line}");
            }
            Ok(())
        }
        Command::Cat { digest, addrs } => {
            let s = client_services(&addrs)?;
            let mut out = tokio::io::stdout();
            import::copy_blob_to(&*s.blobs, &digest, &mut out).await?;
            tokio::io::AsyncWriteExt::flush(&mut out).await?;
            Ok(())
        }
    }
}

fn main() -> std::process::ExitCode {
    snix_cli_common::run_main("snix-castore", run(Cli::parse()))
}

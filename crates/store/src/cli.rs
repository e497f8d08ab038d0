//! The `snix-store` command: `daemon`, `import`, `copy`, `path-info`, `dump`, `mount`.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use nix_compat::store_path::StorePath;
use snix_castore::blobservice::{self, BlobService};
use snix_castore::cli::{embedded_castore_addrs, health_and_reflection, parse_mode, serve_until_signal};
use snix_castore::directoryservice::{self, DirectoryService};
use snix_castore::{grpc_server as castore_grpc, Error};
use snix_cli_common::{dirs, CastoreAddrs, ListenAddr, Listener, PathInfoAddr};

use crate::pathinfo::PathInfo;
use crate::pathinfoservice::{self, PathInfoService};
use crate::{copy, grpc_server, import, nar, proto};

#[derive(Parser, Debug)]
#[command(name = "snix-store", version, about = "Nix store paths on a content-addressed store")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The three service addresses every command takes.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct StoreAddrs {
    #[command(flatten)]
    pub castore: CastoreAddrs,
    #[command(flatten)]
    pub path_info: PathInfoAddr,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve snix.store.v1 PathInfoService and the castore services
    /// (snix.castore.v1), plus grpc.health.v1 and reflection.
    ///
    /// Backends default to embedded ones under the state directory
    /// ($STATE_DIRECTORY, else /var/lib/snix as root): blobs in
    /// objectstore+file://<state>/castore/blobs, directories in
    /// sled://<state>/castore/directories, path infos in
    /// sled://<state>/store/pathinfo. Point BLOB_SERVICE_ADDR /
    /// DIRECTORY_SERVICE_ADDR at a snix-castore daemon (grpc+unix://…) to use
    /// that instead.
    Daemon(DaemonArgs),
    /// Add files or directories to the store; prints one store path per line,
    /// the same `nix-store --add` prints.
    Import {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        addrs: StoreAddrs,
    },
    /// Copy closures out of the local Nix store, dependencies first; paths
    /// already present are skipped (so an interrupted copy resumes).
    ///
    /// Without PATHS, the closure comes from --closure-json, else from
    /// $NIX_ATTRS_JSON_FILE (a structured-attrs build's exportReferencesGraph).
    Copy {
        /// Store paths whose closures to copy (asked of the local Nix database).
        paths: Vec<String>,
        /// An exportReferencesGraph JSON file: a list, or an object holding it under --closure-key.
        #[arg(long, conflicts_with = "paths")]
        closure_json: Option<PathBuf>,
        #[arg(long, default_value = "closure")]
        closure_key: String,
        #[command(flatten)]
        addrs: StoreAddrs,
    },
    /// Show what the store knows about store paths.
    PathInfo {
        #[arg(required = true)]
        paths: Vec<String>,
        /// Print JSON shaped like `nix path-info --json`.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        addrs: StoreAddrs,
    },
    /// Write the NAR of a store path to stdout.
    Dump {
        path: String,
        #[command(flatten)]
        addrs: StoreAddrs,
    },
    /// Mount the store with FUSE: runs `snix-mount` with the same arguments.
    #[command(disable_help_flag = true)]
    Mount {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

#[derive(clap::Args, Debug)]
pub struct DaemonArgs {
    /// Where to listen: unix:///abs/path, /abs/path or host:port (TCP: no
    /// authentication — only on trusted networks). Default: snix-store.sock in
    /// the runtime directory ($RUNTIME_DIRECTORY, else /run/snix as root),
    /// where the other snix programs look for it. A socket passed by systemd
    /// (LISTEN_FDS) takes precedence.
    #[arg(short = 'l', long, env = "SNIX_STORE_LISTEN_ADDRESS")]
    pub listen_address: Option<ListenAddr>,

    /// Permissions of the unix socket (octal).
    #[arg(long, default_value = "660", value_parser = parse_mode)]
    pub unix_socket_mode: u32,

    #[command(flatten)]
    pub addrs: StoreAddrs,
}

pub struct Services {
    pub blobs: Arc<dyn BlobService>,
    pub dirs: Arc<dyn DirectoryService>,
    pub infos: Arc<dyn PathInfoService>,
}

/// The services a client command uses: the local store daemon's, unless
/// addresses say otherwise.
pub fn client_services(addrs: &StoreAddrs) -> Result<Services, Error> {
    let socket = dirs::grpc_unix_addr(&dirs::store_socket());
    let (b, d) = addrs.castore.resolve(socket.clone(), socket.clone());
    let p = addrs.path_info.path_info_service_addr.clone().unwrap_or(socket);
    Ok(Services {
        blobs: blobservice::from_addr(&b)?,
        dirs: directoryservice::from_addr(&d)?,
        infos: pathinfoservice::from_addr(&p)?,
    })
}

pub async fn run_daemon(args: DaemonArgs) -> Result<(), Box<dyn std::error::Error>> {
    let (default_blob, default_dirs) = embedded_castore_addrs();
    let (blob_addr, dir_addr) = args.addrs.castore.resolve(default_blob, default_dirs);
    let pi_addr = args
        .addrs
        .path_info
        .path_info_service_addr
        .clone()
        .unwrap_or_else(|| format!("sled://{}", dirs::state_dir().join("store").join("pathinfo").display()));
    let blobs = blobservice::from_addr(&blob_addr)?;
    let dir_svc = directoryservice::from_addr(&dir_addr)?;
    let infos = pathinfoservice::from_addr(&pi_addr)?;

    let (reporter, health, reflection) =
        health_and_reflection(&[snix_castore::proto::FILE_DESCRIPTOR_SET, proto::FILE_DESCRIPTOR_SET]).await?;
    reporter.set_serving::<castore_grpc::BlobServer>().await;
    reporter.set_serving::<castore_grpc::DirectoryServer>().await;
    reporter.set_serving::<grpc_server::PathInfoServer>().await;
    let router = castore_grpc::castore_router(blobs.clone(), dir_svc.clone())
        .add_service(health)
        .add_service(reflection)
        .add_service(grpc_server::path_info_server(infos, blobs, dir_svc));

    let listen = args.listen_address.unwrap_or_else(|| ListenAddr::Unix(dirs::store_socket()));
    let listener = Listener::bind_or_activated(&listen, args.unix_socket_mode).await?;
    listener.refuse_self_reference(&[
        ("BLOB_SERVICE_ADDR", &blob_addr),
        ("DIRECTORY_SERVICE_ADDR", &dir_addr),
        ("PATH_INFO_SERVICE_ADDR", &pi_addr),
    ])?;
    tracing::info!(listen = %listen, blobs = %blob_addr, directories = %dir_addr, path_infos = %pi_addr, "snix-store daemon ready");
    snix_cli_common::notify_ready();
    serve_until_signal(listener, router).await
}

fn parse_store_path(s: &str) -> Result<StorePath, Error> {
    // accept paths inside a store path too, as Nix does for queries
    let (p, _) = StorePath::from_absolute_path_full(s.as_bytes())
        .or_else(|_| StorePath::from_basename(s.as_bytes()).map(|p| (p, &b""[..])))
        .map_err(|e| Error::InvalidRequest(format!("{s}: {e}")))?;
    Ok(p)
}

async fn lookup(infos: &dyn PathInfoService, s: &str) -> Result<PathInfo, Error> {
    let p = parse_store_path(s)?;
    pathinfoservice::get_path(infos, &p).await?.ok_or_else(|| Error::NotFound(format!("path '{p}' is not valid")))
}

/// `nix path-info --json` shape (Nix 2.8).
pub fn path_info_json(info: &PathInfo) -> serde_json::Value {
    let mut refs: Vec<String> = info.references.iter().map(|r| r.to_string()).collect();
    refs.sort();
    let mut m = serde_json::Map::new();
    m.insert("path".into(), info.store_path.to_string().into());
    m.insert("narHash".into(), info.nar_hash().to_sri().into());
    m.insert("narSize".into(), info.nar_size.into());
    m.insert("references".into(), refs.into());
    if let Some(d) = &info.deriver {
        m.insert("deriver".into(), d.to_string().into());
    }
    if let Some(ca) = &info.ca {
        m.insert("ca".into(), ca.to_string().into());
    }
    if !info.signatures.is_empty() {
        m.insert("signatures".into(), info.signatures.iter().map(|s| s.to_string()).collect::<Vec<_>>().into());
    }
    serde_json::Value::Object(m)
}

/// Runs `snix-mount` from our own directory, else from PATH.
fn exec_mount(args: Vec<std::ffi::OsString>) -> Result<(), Box<dyn std::error::Error>> {
    use std::os::unix::process::CommandExt;
    let beside = std::env::current_exe().ok().and_then(|e| e.parent().map(|d| d.join("snix-mount")));
    let program = beside.filter(|p| p.is_file()).unwrap_or_else(|| PathBuf::from("snix-mount"));
    let err = std::process::Command::new(&program).args(args).exec();
    Err(format!("running {}: {err}", program.display()).into())
}

pub async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Daemon(args) => run_daemon(args).await,
        Command::Import { paths, addrs } => {
            let s = client_services(&addrs)?;
            for p in paths {
                let info = import::import_path(&p, &*s.blobs, &*s.dirs, &*s.infos).await?;
                println!("{}", info.store_path);
            }
            Ok(())
        }
        Command::Copy { paths, closure_json, closure_key, addrs } => {
            let source = if !paths.is_empty() {
                copy::Source::Paths(paths)
            } else if let Some(file) =
                closure_json.or_else(|| std::env::var_os("NIX_ATTRS_JSON_FILE").map(PathBuf::from))
            {
                copy::Source::ClosureJson { file, key: closure_key }
            } else {
                return Err("nothing to copy: give store paths, --closure-json FILE, or set NIX_ATTRS_JSON_FILE".into());
            };
            let s = client_services(&addrs)?;
            let closure = copy::resolve(source).await?;
            let total: u64 = closure.iter().map(|c| c.nar_size).sum();
            // a bar on a terminal; plain log lines for journals and pipes
            let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
                let bar = indicatif::ProgressBar::new(total);
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} [{msg}]",
                    )
                    .expect("valid template"),
                );
                bar
            });
            let mut done = 0u64;
            let stats = copy::copy_closure(closure, &*s.blobs, &*s.dirs, &*s.infos, |i, n, c, skip| {
                if let Some(bar) = &bar {
                    bar.set_position(done);
                    bar.set_message(format!("{}/{n} {}", i + 1, c.store_path));
                } else if skip {
                    tracing::info!("[{}/{n}] {} already present", i + 1, c.store_path);
                } else {
                    tracing::info!("[{}/{n}] copying {} ({} bytes)", i + 1, c.store_path, c.nar_size);
                }
                done += c.nar_size;
            })
            .await;
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            let stats = stats?;
            eprintln!(
                "copied {} paths ({} NAR bytes), {} already present",
                stats.copied, stats.nar_bytes, stats.skipped
            );
            Ok(())
        }
        Command::PathInfo { paths, json, addrs } => {
            let s = client_services(&addrs)?;
            let mut out = Vec::new();
            for p in &paths {
                out.push(lookup(&*s.infos, p).await?);
            }
            if json {
                println!("{}", serde_json::Value::Array(out.iter().map(path_info_json).collect()));
            } else {
                for i in out {
                    let refs: Vec<String> = i.references.iter().map(|r| r.to_string()).collect();
                    println!(
                        "{}\t{}\t{}\t{}",
                        i.store_path,
                        i.nar_hash().to_nix32_prefixed(),
                        i.nar_size,
                        refs.join(" ")
                    );
                }
            }
            Ok(())
        }
        Command::Dump { path, addrs } => {
            let s = client_services(&addrs)?;
            let info = lookup(&*s.infos, &path).await?;
            let out = tokio::io::BufWriter::with_capacity(256 * 1024, tokio::io::stdout());
            let mut out = nar::render_nar(out, &info.node, &*s.blobs, &*s.dirs).await?;
            tokio::io::AsyncWriteExt::flush(&mut out).await?;
            Ok(())
        }
        Command::Mount { args } => exec_mount(args),
    }
}

/// The whole `snix-store` program; `main.rs` only calls this.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    snix_cli_common::run_main("snix-store", run(cli))
}

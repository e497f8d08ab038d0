//! The `snix-store` program: `daemon`, `import`, `copy`, `path-info`,
//! `dump`, `delete`, `gc`, `sign`, `mount`. Flags and wiring only; the work is done by the
//! `snix_store` library.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use nix_compat::path_info_json;
use nix_compat::store_path::StorePath;
use snix_castore::grpc_server as castore_grpc;
use snix_cli_common::{dirs, ListenAddr, Listener, SocketMode, StoreAddrs};
use snix_store::composition::StoreServices;
use snix_store::pathinfoservice::{self, PathInfoService};
use snix_store::{copy, gc, grpc_server, import, nar, proto, sign, PathInfo};

mod progress;

#[derive(Parser, Debug)]
#[command(name = "snix-store", version, about = "Nix store paths on a content-addressed store")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
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
        /// Print JSON shaped like `nix path-info --json` (Nix 2.8's list form).
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
    /// Unregister store paths. A path another registered path refers to is
    /// refused (the message names the referrer) unless --recursive deletes
    /// the referrers too. The content is freed by a later `gc`, once the
    /// grace period has passed (readers of the paths keep reading till then).
    Delete {
        #[arg(required = true)]
        paths: Vec<String>,
        /// Also delete every path that refers to these, transitively.
        #[arg(long)]
        recursive: bool,
        /// List what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        addrs: StoreAddrs,
    },
    /// Collect garbage: with --keep/--keep-file, delete every registered path
    /// outside their closures; then remove the directories and blobs no
    /// registered path reaches. Content written, and paths deleted, within
    /// the grace period stay (an import running meanwhile loses nothing).
    Gc {
        /// Keep the closure of this path (repeatable).
        #[arg(long = "keep", value_name = "PATH")]
        keep: Vec<String>,
        /// Keep the closures of the paths listed in this file, one per line.
        #[arg(long, value_name = "FILE")]
        keep_file: Option<PathBuf>,
        /// Report what would be freed; delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Stop once this many bytes are freed.
        #[arg(long, value_name = "BYTES")]
        max_freed: Option<u64>,
        /// Keep content written, and paths deleted, within this long (e.g. 1h, 30m, 0s).
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        grace: std::time::Duration,
        #[command(flatten)]
        addrs: StoreAddrs,
    },
    /// Sign store paths: adds the key's signature to each path's info, where
    /// `nix path-info --sigs` (through our nix-daemon) and nar-bridge's
    /// narinfos show it. Prints each path signed; a path that already had
    /// this signature is left as it is.
    Sign {
        #[arg(required = true)]
        paths: Vec<String>,
        /// A secret key file as `nix-store --generate-binary-cache-key` writes it.
        #[arg(long, short = 'k', value_name = "FILE")]
        key_file: PathBuf,
        /// Sign every path of the closures of PATHS.
        #[arg(long, short = 'r')]
        recursive: bool,
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
struct DaemonArgs {
    /// Where to listen: unix:///abs/path, /abs/path or host:port (TCP: no
    /// authentication — only on trusted networks). Default: snix-store.sock in
    /// the runtime directory ($RUNTIME_DIRECTORY, else /run/snix as root),
    /// where the other snix programs look for it. A socket passed by systemd
    /// (LISTEN_FDS) takes precedence.
    #[arg(short = 'l', long, env = "SNIX_STORE_LISTEN_ADDRESS")]
    listen_address: Option<ListenAddr>,

    /// Permissions of the unix socket (octal).
    #[arg(long, default_value = "660")]
    unix_socket_mode: SocketMode,

    #[command(flatten)]
    addrs: StoreAddrs,
}

#[derive(Debug, thiserror::Error)]
enum LookupError {
    #[error("{0}: {1}")]
    Invalid(String, nix_compat::store_path::StorePathError),
    #[error("path '{0}' is not valid")]
    NotValid(StorePath),
    #[error(transparent)]
    Store(#[from] snix_store::Error),
}

/// The services a client command uses: the local store daemon's, unless
/// addresses say otherwise.
fn client_services(addrs: &StoreAddrs) -> Result<StoreServices, snix_store::Error> {
    let a = addrs.or_store_daemon();
    StoreServices::from_addrs(&a.blob, &a.directory, &a.path_info)
}

async fn run_daemon(args: DaemonArgs) -> Result<(), Box<dyn std::error::Error>> {
    let addrs = args.addrs.or_embedded();
    let s = StoreServices::from_addrs(&addrs.blob, &addrs.directory, &addrs.path_info)?;

    let (reporter, health, reflection) = snix_cli_common::health_and_reflection(&[
        snix_castore::proto::FILE_DESCRIPTOR_SET,
        proto::FILE_DESCRIPTOR_SET,
    ])?;
    reporter.set_serving::<castore_grpc::BlobServer>().await;
    reporter.set_serving::<castore_grpc::DirectoryServer>().await;
    reporter.set_serving::<grpc_server::PathInfoServer>().await;
    let router = castore_grpc::castore_router(s.blobs.clone(), s.dirs.clone())
        .add_service(health)
        .add_service(reflection)
        .add_service(grpc_server::path_info_server(s.infos, s.blobs, s.dirs));

    let listen = args.listen_address.unwrap_or_else(|| ListenAddr::Unix(dirs::store_socket()));
    let listener = Listener::bind_or_activated(&listen, args.unix_socket_mode.0).await?;
    listener.refuse_self_reference(&addrs.named())?;
    tracing::info!(listen = %listen, blobs = %addrs.blob, directories = %addrs.directory, path_infos = %addrs.path_info, "snix-store daemon ready");
    snix_cli_common::notify_ready();
    Ok(snix_cli_common::serve_until_signal(listener, router).await?)
}

fn parse_store_path(s: &str) -> Result<StorePath, LookupError> {
    // accept paths inside a store path too, as Nix does for queries
    let (p, _) = StorePath::from_absolute_path_full(s.as_bytes())
        .or_else(|_| StorePath::from_basename(s.as_bytes()).map(|p| (p, &b""[..])))
        .map_err(|e| LookupError::Invalid(s.to_string(), e))?;
    Ok(p)
}

async fn lookup(infos: &dyn PathInfoService, s: &str) -> Result<PathInfo, LookupError> {
    let p = parse_store_path(s)?;
    pathinfoservice::get_path(infos, &p).await?.ok_or(LookupError::NotValid(p))
}

/// Runs `snix-mount` from our own directory, else from PATH.
fn exec_mount(args: Vec<std::ffi::OsString>) -> Result<(), Box<dyn std::error::Error>> {
    use std::os::unix::process::CommandExt;
    let beside = std::env::current_exe().ok().and_then(|e| e.parent().map(|d| d.join("snix-mount")));
    let program = beside.filter(|p| p.is_file()).unwrap_or_else(|| PathBuf::from("snix-mount"));
    let err = std::process::Command::new(&program).args(args).exec();
    Err(format!("running {}: {err}", program.display()).into())
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
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
            let mut progress = progress::CopyProgress::new(closure.iter().map(|c| c.nar_size).sum());
            let stats =
                copy::copy_closure(closure, &*s.blobs, &*s.dirs, &*s.infos, |i, n, c, skip| progress.at(i, n, c, skip))
                    .await;
            progress.finish();
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
                let infos: Vec<_> = out.iter().map(|i| (i.store_path.clone(), Some(i.to_json()))).collect();
                println!("{}", path_info_json::print(path_info_json::Form::List, &infos));
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
        Command::Delete { paths, recursive, dry_run, addrs } => {
            let s = client_services(&addrs)?;
            let paths = paths.iter().map(|p| parse_store_path(p)).collect::<Result<Vec<_>, _>>()?;
            let doomed = if dry_run {
                gc::paths_to_delete(&*s.infos, &paths, recursive).await?
            } else {
                gc::delete_paths(&*s.infos, &paths, recursive).await?
            };
            for p in &doomed {
                println!("{p}");
            }
            let verb = if dry_run { "would delete" } else { "deleted" };
            eprintln!("{verb} {} paths; `snix-store gc` frees their content after the grace period", doomed.len());
            Ok(())
        }
        Command::Gc { keep, keep_file, dry_run, max_freed, grace, addrs } => {
            let s = client_services(&addrs)?;
            let mut keep: Vec<String> = keep;
            if let Some(f) = keep_file {
                let text = std::fs::read_to_string(&f).map_err(|e| format!("--keep-file {}: {e}", f.display()))?;
                keep.extend(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string));
            }
            let keep = keep.iter().map(|p| parse_store_path(p)).collect::<Result<Vec<_>, _>>()?;
            let opts = gc::GcOptions { keep: (!keep.is_empty()).then_some(keep), grace, dry_run, max_freed };
            let stats =
                gc::collect_garbage(&*s.infos, &*s.blobs, &*s.dirs, &opts, |msg| tracing::info!("{msg}")).await?;
            for p in &stats.paths {
                println!("{p}");
            }
            eprintln!(
                "{} {} paths, {} tombstones, {} directories, {} blobs, {} chunks: {} bytes ({:.1} MiB)",
                if dry_run { "would free" } else { "freed" },
                stats.paths.len(),
                stats.tombstones,
                stats.directories,
                stats.blobs,
                stats.chunks,
                stats.bytes,
                stats.bytes as f64 / (1024.0 * 1024.0)
            );
            Ok(())
        }
        Command::Sign { paths, key_file, recursive, addrs } => {
            let key = read_signing_key(&key_file)?;
            let paths = paths.iter().map(|p| parse_store_path(p)).collect::<Result<Vec<_>, _>>()?;
            let s = client_services(&addrs)?;
            let signed = sign::sign_paths(&*s.infos, &key, &paths, recursive).await?;
            let added = signed.iter().filter(|s| s.added).count();
            for s in &signed {
                println!("{}", s.store_path);
            }
            eprintln!(
                "signed {added} paths with {}; {} had the signature already",
                key.verifying_key(),
                signed.len() - added
            );
            Ok(())
        }
        Command::Mount { args } => exec_mount(args),
    }
}

/// A secret key as `nix-store --generate-binary-cache-key` writes it.
fn read_signing_key(path: &std::path::Path) -> Result<nix_compat::signing::SigningKey, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("--key-file {}: {e}", path.display()))?;
    text.trim().parse().map_err(|e| format!("--key-file {}: {e}", path.display()))
}

/// `90s`, `30m`, `1h`, `2d` or plain seconds.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n.parse().map_err(|_| format!("{s:?} is not a duration (e.g. 1h, 30m, 90s)"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use s, m, h or d)")),
    };
    Ok(std::time::Duration::from_secs(secs))
}

fn main() -> std::process::ExitCode {
    snix_cli_common::run_main("snix-store", run(Cli::parse()))
}

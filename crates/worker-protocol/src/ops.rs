//! Worker operations: numbers, names, and the decoding of each one's
//! arguments. Streams that follow some ops (framed NARs) are left to the
//! server: only the fixed arguments are read here.

use nix_compat::store_path::StorePath;
use tokio::io::AsyncRead;

use crate::types::{minor, parse_nar_hash, parse_opt_ca, read_path_info, DerivedPath, WirePathInfo};
use crate::wire::{self, read_bool, read_opt_path, read_path, read_paths, read_string, read_strings, read_u64};

pub fn op_name(op: u64) -> &'static str {
    match op {
        1 => "IsValidPath",
        3 => "HasSubstitutes",
        4 => "QueryPathHash",
        5 => "QueryReferences",
        6 => "QueryReferrers",
        7 => "AddToStore",
        8 => "AddTextToStore",
        9 => "BuildPaths",
        10 => "EnsurePath",
        11 => "AddTempRoot",
        12 => "AddIndirectRoot",
        13 => "SyncWithGC",
        14 => "FindRoots",
        16 => "ExportPath",
        18 => "QueryDeriver",
        19 => "SetOptions",
        20 => "CollectGarbage",
        21 => "QuerySubstitutablePathInfo",
        22 => "QueryDerivationOutputs",
        23 => "QueryAllValidPaths",
        24 => "QueryFailedPaths",
        25 => "ClearFailedPaths",
        26 => "QueryPathInfo",
        27 => "ImportPaths",
        28 => "QueryDerivationOutputNames",
        29 => "QueryPathFromHashPart",
        30 => "QuerySubstitutablePathInfos",
        31 => "QueryValidPaths",
        32 => "QuerySubstitutablePaths",
        33 => "QueryValidDerivers",
        34 => "OptimiseStore",
        35 => "VerifyStore",
        36 => "BuildDerivation",
        37 => "AddSignatures",
        38 => "NarFromPath",
        39 => "AddToStoreNar",
        40 => "QueryMissing",
        41 => "QueryDerivationOutputMap",
        42 => "RegisterDrvOutput",
        43 => "QueryRealisation",
        44 => "AddMultipleToStore",
        45 => "AddBuildLog",
        46 => "BuildPathsWithResults",
        47 => "AddPermRoot",
        _ => "unknown",
    }
}

/// SetOptions' fixed fields, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientOptions {
    pub keep_failed: bool,
    pub keep_going: bool,
    pub try_fallback: bool,
    pub verbosity: u64,
    pub max_build_jobs: u64,
    pub max_silent_time: u64,
    pub use_build_hook: bool,
    pub build_verbosity: u64,
    pub log_type: u64,
    pub print_build_trace: u64,
    pub build_cores: u64,
    pub use_substitutes: bool,
    pub overrides: Vec<(String, String)>,
}

/// What CollectGarbage is asked to do (`nix-store --gc`, `--print-live`,
/// `--print-dead`, `--delete`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GcAction {
    ReturnLive,
    ReturnDead,
    DeleteDead,
    DeleteSpecific,
}

/// AddToStoreNar's arguments (the NAR follows).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddToStoreNar {
    pub path: StorePath,
    pub info: WirePathInfo,
    pub repair: bool,
    pub dont_check_sigs: bool,
}

/// An operation with its arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Answered from its arguments alone.
    Query(Query),
    /// A stream from the client follows.
    Incoming(Incoming),
    /// A NAR goes back to the client.
    NarFromPath(StorePath),
    /// Log lines go back while the store is checked, then the verdict.
    VerifyStore { check_contents: bool, repair: bool },
}

/// The operations followed by a stream from the client, which the
/// connection must read to its end, success or not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// <1.25: a NAR follows, unframed (its end is found by parsing it). With
    /// `recursive`, the path is addressed by the NAR's hash, else by the
    /// hash of the one regular file it holds.
    AddToStoreDump { name: String, recursive: bool, algo: String },
    /// ≥1.25: a framed stream with a NAR or flat bytes follows
    AddToStore { name: String, method: String, references: Vec<StorePath>, repair: bool },
    /// the NAR follows (framed at ≥1.23)
    AddToStoreNar(Box<AddToStoreNar>),
    /// a framed stream of (path info, NAR) pairs follows
    AddMultipleToStore { repair: bool, dont_check_sigs: bool },
    /// a framed stream with the log follows
    AddBuildLog(StorePath),
}

/// The operations answered from their arguments alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    IsValidPath(StorePath),
    QueryReferrers(StorePath),
    AddTextToStore { name: String, text: Vec<u8>, references: Vec<StorePath> },
    BuildPaths { paths: Vec<String>, mode: u64 },
    EnsurePath(StorePath),
    AddTempRoot(StorePath),
    AddIndirectRoot(String),
    SyncWithGc,
    FindRoots,
    QueryDeriver(StorePath),
    SetOptions(ClientOptions),
    CollectGarbage { action: GcAction, paths: Vec<StorePath>, ignore_liveness: bool, max_freed: u64 },
    QuerySubstitutablePathInfo(StorePath),
    QueryDerivationOutputs(StorePath),
    QueryAllValidPaths,
    QueryPathInfo(StorePath),
    QueryDerivationOutputNames(StorePath),
    QueryPathFromHashPart(String),
    QuerySubstitutablePathInfos(Vec<StorePath>),
    QueryValidPaths { paths: Vec<StorePath>, substitute: bool },
    QuerySubstitutablePaths(Vec<StorePath>),
    QueryValidDerivers(StorePath),
    OptimiseStore,
    AddSignatures { path: StorePath, sigs: Vec<String> },
    QueryMissing(Vec<String>),
    QueryDerivationOutputMap(StorePath),
    RegisterDrvOutput(String),
    QueryRealisation(String),
    BuildPathsWithResults { paths: Vec<String>, mode: u64 },
    AddPermRoot { path: StorePath, gc_root: String },
}

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Its arguments cannot be skipped: the connection cannot go on.
    #[error("operation {0} ({name}) is not supported by this daemon", name = op_name(*.0))]
    Unsupported(u64),
    #[error("reading the arguments of operation {op} ({name}): {err}", name = op_name(*op))]
    Wire { op: u64, err: wire::WireError },
}

async fn read_derived_paths<R: AsyncRead + Unpin>(r: &mut R) -> wire::Result<Vec<String>> {
    let v = read_strings(r).await?;
    for s in &v {
        DerivedPath::parse(s)?;
    }
    Ok(v)
}

/// Reads the arguments of operation `op`.
pub async fn read_request<R: AsyncRead + Unpin>(op: u64, version: u64, r: &mut R) -> Result<Request, RequestError> {
    let m = minor(version);
    // None: an operation we do not know, its arguments unread
    let res: wire::Result<Option<Request>> = async {
        Ok(Some(match op {
            1 => Request::Query(Query::IsValidPath(read_path(r).await?)),
            6 => Request::Query(Query::QueryReferrers(read_path(r).await?)),
            7 if m < 25 => {
                let name = read_string(r).await?;
                // "fixed" false is an old way of saying recursive sha256
                let fixed = read_bool(r).await?;
                let recursive = read_bool(r).await?;
                let algo = read_string(r).await?;
                let (recursive, algo) = if fixed { (recursive, algo) } else { (true, "sha256".to_string()) };
                Request::Incoming(Incoming::AddToStoreDump { name, recursive, algo })
            }
            7 => {
                let name = read_string(r).await?;
                let method = read_string(r).await?;
                let references = read_paths(r).await?;
                let repair = read_bool(r).await?;
                Request::Incoming(Incoming::AddToStore { name, method, references, repair })
            }
            8 => {
                let name = read_string(r).await?;
                let text = wire::read_bytes(r).await?;
                let references = read_paths(r).await?;
                Request::Query(Query::AddTextToStore { name, text, references })
            }
            9 | 46 => {
                let paths = read_derived_paths(r).await?;
                let mode = if m >= 15 { read_u64(r).await? } else { 0 };
                if op == 9 {
                    Request::Query(Query::BuildPaths { paths, mode })
                } else {
                    Request::Query(Query::BuildPathsWithResults { paths, mode })
                }
            }
            10 => Request::Query(Query::EnsurePath(read_path(r).await?)),
            11 => Request::Query(Query::AddTempRoot(read_path(r).await?)),
            12 => Request::Query(Query::AddIndirectRoot(read_string(r).await?)),
            13 => Request::Query(Query::SyncWithGc),
            14 => Request::Query(Query::FindRoots),
            18 => Request::Query(Query::QueryDeriver(read_path(r).await?)),
            19 => {
                let mut o = ClientOptions {
                    keep_failed: read_bool(r).await?,
                    keep_going: read_bool(r).await?,
                    try_fallback: read_bool(r).await?,
                    verbosity: read_u64(r).await?,
                    max_build_jobs: read_u64(r).await?,
                    max_silent_time: read_u64(r).await?,
                    use_build_hook: read_bool(r).await?,
                    build_verbosity: read_u64(r).await?,
                    log_type: read_u64(r).await?,
                    print_build_trace: read_u64(r).await?,
                    build_cores: read_u64(r).await?,
                    use_substitutes: read_bool(r).await?,
                    overrides: vec![],
                };
                if m >= 12 {
                    o.overrides = wire::read_string_pairs(r).await?;
                }
                Request::Query(Query::SetOptions(o))
            }
            20 => {
                let action = match read_u64(r).await? {
                    0 => GcAction::ReturnLive,
                    1 => GcAction::ReturnDead,
                    2 => GcAction::DeleteDead,
                    3 => GcAction::DeleteSpecific,
                    n => return Err(wire::WireError::Invalid(format!("unknown garbage collector action {n}"))),
                };
                let paths = read_paths(r).await?;
                let ignore_liveness = read_bool(r).await?;
                let max_freed = read_u64(r).await?;
                for _ in 0..3 {
                    read_u64(r).await?; // obsolete
                }
                Request::Query(Query::CollectGarbage { action, paths, ignore_liveness, max_freed })
            }
            21 => Request::Query(Query::QuerySubstitutablePathInfo(read_path(r).await?)),
            22 => Request::Query(Query::QueryDerivationOutputs(read_path(r).await?)),
            23 => Request::Query(Query::QueryAllValidPaths),
            26 => Request::Query(Query::QueryPathInfo(read_path(r).await?)),
            28 => Request::Query(Query::QueryDerivationOutputNames(read_path(r).await?)),
            29 => Request::Query(Query::QueryPathFromHashPart(read_string(r).await?)),
            30 => {
                if m < 22 {
                    Request::Query(Query::QuerySubstitutablePathInfos(read_paths(r).await?))
                } else {
                    let n = read_u64(r).await?;
                    if n > wire::MAX_COUNT {
                        return Err(wire::WireError::Invalid(format!("map of {n} entries is too long")));
                    }
                    let mut paths = Vec::new();
                    for _ in 0..n {
                        paths.push(read_path(r).await?);
                        parse_opt_ca(&read_string(r).await?)?;
                    }
                    Request::Query(Query::QuerySubstitutablePathInfos(paths))
                }
            }
            31 => {
                let paths = read_paths(r).await?;
                let substitute = if m >= 27 { read_bool(r).await? } else { false };
                Request::Query(Query::QueryValidPaths { paths, substitute })
            }
            32 => Request::Query(Query::QuerySubstitutablePaths(read_paths(r).await?)),
            33 => Request::Query(Query::QueryValidDerivers(read_path(r).await?)),
            34 => Request::Query(Query::OptimiseStore),
            35 => Request::VerifyStore { check_contents: read_bool(r).await?, repair: read_bool(r).await? },
            37 => Request::Query(Query::AddSignatures { path: read_path(r).await?, sigs: read_strings(r).await? }),
            38 => Request::NarFromPath(read_path(r).await?),
            39 => {
                let path = read_path(r).await?;
                let deriver = read_opt_path(r).await?;
                let nar_hash = parse_nar_hash(&read_string(r).await?)?;
                let references = read_paths(r).await?;
                let registration_time = read_u64(r).await?;
                let nar_size = read_u64(r).await?;
                let ultimate = read_bool(r).await?;
                let sigs = read_strings(r).await?;
                let ca = parse_opt_ca(&read_string(r).await?)?;
                let repair = read_bool(r).await?;
                let dont_check_sigs = read_bool(r).await?;
                let info =
                    WirePathInfo { deriver, nar_hash, references, registration_time, nar_size, ultimate, sigs, ca };
                Request::Incoming(Incoming::AddToStoreNar(Box::new(AddToStoreNar {
                    path,
                    info,
                    repair,
                    dont_check_sigs,
                })))
            }
            40 => Request::Query(Query::QueryMissing(read_derived_paths(r).await?)),
            41 => Request::Query(Query::QueryDerivationOutputMap(read_path(r).await?)),
            42 => Request::Query(Query::RegisterDrvOutput(read_string(r).await?)),
            43 => Request::Query(Query::QueryRealisation(read_string(r).await?)),
            44 => Request::Incoming(Incoming::AddMultipleToStore {
                repair: read_bool(r).await?,
                dont_check_sigs: read_bool(r).await?,
            }),
            45 => Request::Incoming(Incoming::AddBuildLog(read_path(r).await?)),
            47 => Request::Query(Query::AddPermRoot { path: read_path(r).await?, gc_root: read_string(r).await? }),
            _ => return Ok(None),
        }))
    }
    .await;
    match res {
        Ok(Some(req)) => Ok(req),
        Ok(None) => Err(RequestError::Unsupported(op)),
        Err(err) => Err(RequestError::Wire { op, err }),
    }
}

/// One entry of AddMultipleToStore's stream: a path info (1.16 layout,
/// whatever the connection's version) followed by its NAR.
pub async fn read_multiple_entry<R: AsyncRead + Unpin>(r: &mut R) -> wire::Result<(StorePath, WirePathInfo)> {
    read_path_info(r, 0x110).await
}

//! Our binaries as separate processes, the way a user or systemd runs them:
//! a store daemon on a unix socket and FUSE mounts of it. Each stops on
//! drop, so a failing test leaves no daemon or mount behind.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A workspace binary, built next to the running test binary
/// (`cargo test --workspace` builds them all).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let p = exe.parent().and_then(Path::parent).expect("target/<profile>/deps").join(name);
    assert!(p.exists(), "{} is not built: run the tests with `cargo test --workspace`", p.display());
    p
}

fn wait_for(what: &str, child: &mut Child, log: &Path, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited ({status}): {}", std::fs::read_to_string(log).unwrap_or_default());
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{what} not ready after 30 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn terminate(child: &mut Child) {
    signal_and_wait(child, libc::SIGTERM);
}

/// Sends `signal` to a still-running child and waits for it to end; after
/// 15 s, SIGKILL (as systemd's stop timeout does).
pub fn signal_and_wait(child: &mut Child, signal: i32) {
    if let Ok(None) = child.try_wait() {
        unsafe { libc::kill(child.id() as i32, signal) };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("pid {}: still running 15 s after signal {signal}: SIGKILL", child.id());
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A gRPC daemon of ours — `snix-castore daemon` or `snix-store daemon` —
/// with its embedded backends under `state`, listening on
/// `state/<program>.sock` and logging to `state/<program>.log`, as the
/// systemd units run them.
pub struct GrpcDaemon {
    program: &'static str,
    child: Child,
    pub state: PathBuf,
    pub socket: PathBuf,
    env: Vec<(&'static str, String)>,
}

/// `snix-castore daemon` (see [`GrpcDaemon::start_castore`]).
pub type CastoreDaemon = GrpcDaemon;
/// `snix-store daemon` (see [`GrpcDaemon::start`]).
pub type StoreDaemon = GrpcDaemon;

impl GrpcDaemon {
    /// `snix-store daemon`, castore embedded.
    pub fn start(state: &Path) -> GrpcDaemon {
        Self::spawn_new("snix-store", state, vec![])
    }

    /// `snix-store daemon` with the castore on a `snix-castore daemon` (the
    /// design's topology).
    pub fn start_with_castore(state: &Path, castore: &GrpcDaemon) -> GrpcDaemon {
        let env = vec![("BLOB_SERVICE_ADDR", castore.addr()), ("DIRECTORY_SERVICE_ADDR", castore.addr())];
        Self::spawn_new("snix-store", state, env)
    }

    /// `snix-castore daemon`.
    pub fn start_castore(state: &Path) -> GrpcDaemon {
        Self::spawn_new("snix-castore", state, vec![])
    }

    fn spawn_new(program: &'static str, state: &Path, env: Vec<(&'static str, String)>) -> GrpcDaemon {
        std::fs::create_dir_all(state).unwrap();
        let socket = state.join(format!("{program}.sock"));
        let child = Self::spawn(program, state, &socket, &env);
        GrpcDaemon { program, child, state: state.to_path_buf(), socket, env }
    }

    fn spawn(program: &str, state: &Path, socket: &Path, env: &[(&str, String)]) -> Child {
        let log = state.join(format!("{program}.log"));
        let mut child = Command::new(bin(program))
            .args(["daemon", "-l", socket.to_str().unwrap()])
            .env("STATE_DIRECTORY", state)
            .env("RUNTIME_DIRECTORY", state)
            .env_remove("BLOB_SERVICE_ADDR")
            .env_remove("DIRECTORY_SERVICE_ADDR")
            .env_remove("PATH_INFO_SERVICE_ADDR")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {program}: {e}"));
        wait_for(program, &mut child, &log, || std::os::unix::net::UnixStream::connect(socket).is_ok());
        child
    }

    /// SIGKILL, then the same command again.
    pub fn kill9_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Self::spawn(self.program, &self.state, &self.socket, &self.env);
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn addr(&self) -> String {
        format!("grpc+unix://{}", self.socket.display())
    }

    /// The three service-address variables pointing at this daemon.
    pub fn client_env(&self) -> Vec<(String, String)> {
        ["BLOB_SERVICE_ADDR", "DIRECTORY_SERVICE_ADDR", "PATH_INFO_SERVICE_ADDR"]
            .into_iter()
            .map(|k| (k.to_string(), self.addr()))
            .collect()
    }

    /// `program` with the service addresses pointing at this daemon (and
    /// the tests' Nix settings, for clients that run Nix).
    pub fn client(&self, program: &Path) -> Command {
        let mut c = Command::new(program);
        c.envs(self.client_env()).env("NIX_CONFIG", crate::judge::NIX_CONFIG).stdin(Stdio::null());
        c
    }

    /// Runs `snix-store ARGS` against this daemon; panics on failure.
    pub fn snix_store(&self, args: &[&str]) -> String {
        let out = self.client(&bin("snix-store")).args(args).output().unwrap();
        assert!(out.status.success(), "snix-store {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Where the embedded blob store keeps its files.
    pub fn blob_dir(&self) -> PathBuf {
        self.state.join("castore").join("blobs")
    }
}

impl Drop for GrpcDaemon {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// Our `nix-daemon` against a store daemon, on `socket`.
pub struct NixDaemon {
    child: Child,
    pub socket: PathBuf,
    pub log: PathBuf,
    command: Vec<std::ffi::OsString>,
    env: Vec<(String, String)>,
}

impl NixDaemon {
    pub fn start(store: &StoreDaemon, socket: &Path, args: &[&str]) -> NixDaemon {
        Self::start_with_env(store, socket, args, &[])
    }

    pub fn start_with_env(store: &StoreDaemon, socket: &Path, args: &[&str], env: &[(&str, &str)]) -> NixDaemon {
        let log = socket.with_extension("log");
        let mut command: Vec<std::ffi::OsString> = vec!["-l".into(), socket.into(), "--unix-listen-unlink".into()];
        command.extend(args.iter().map(Into::into));
        let mut env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        env.extend(store.client_env());
        let child = Self::spawn(&command, &env, socket, &log);
        NixDaemon { child, socket: socket.to_path_buf(), log, command, env }
    }

    fn spawn(command: &[std::ffi::OsString], env: &[(String, String)], socket: &Path, log: &Path) -> Child {
        let mut child = Command::new(bin("nix-daemon"))
            .args(command)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap())
            .spawn()
            .expect("starting nix-daemon");
        wait_for("nix-daemon", &mut child, log, || std::os::unix::net::UnixStream::connect(socket).is_ok());
        child
    }

    /// SIGKILL, then the same command again.
    pub fn kill9_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Self::spawn(&self.command, &self.env, &self.socket, &self.log);
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `unix://SOCKET`, plus `?real=DIR` when given.
    pub fn url(&self, real: Option<&Path>) -> String {
        match real {
            Some(r) => format!("unix://{}?real={}", self.socket.display(), r.display()),
            None => format!("unix://{}", self.socket.display()),
        }
    }
}

impl Drop for NixDaemon {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// Whether `dir` is a mount point now.
pub fn is_mounted(dir: &Path) -> bool {
    let dir = dir.to_str().unwrap();
    std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().any(|l| l.split(' ').nth(4) == Some(dir))
}

/// `snix-mount DIR ARGS…` against a store daemon.
pub struct Mount {
    child: Child,
    pub dir: PathBuf,
    pub log: PathBuf,
}

impl Mount {
    pub fn start(daemon: &StoreDaemon, dir: &Path, args: &[&str]) -> Mount {
        std::fs::create_dir_all(dir).unwrap();
        let dir = dir.canonicalize().unwrap();
        let log = dir.with_extension("log");
        // a content cache of its own, next to the mount point
        let cache = dir.with_extension("cache");
        let own_cache = args.iter().any(|a| a.starts_with("--cache-"));
        let mut child = daemon
            .client(&bin("snix-mount"))
            .arg(&dir)
            .args(if own_cache { vec![] } else { vec![std::ffi::OsString::from("--cache-dir"), cache.into()] })
            .args(args)
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("starting snix-mount");
        wait_for("snix-mount", &mut child, &log, || is_mounted(&dir));
        Mount { child, dir, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then waits: the mount must be gone and the process ended.
    pub fn stop(mut self) -> std::process::ExitStatus {
        terminate(&mut self.child);
        self.child.wait().unwrap()
    }

    /// SIGKILL: leaves a dead ("stale") mount behind.
    pub fn kill9(mut self) -> PathBuf {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = self.dir.clone();
        std::mem::forget(self);
        dir
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        terminate(&mut self.child);
        if is_mounted(&self.dir) {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// `nar-bridge` against a store daemon, on 127.0.0.1 at a port of its own
/// choosing (read from its log), logging to `state/nar-bridge-N.log`.
pub struct NarBridge {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub log: PathBuf,
}

impl NarBridge {
    pub fn start(store: &StoreDaemon, args: &[&str]) -> NarBridge {
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = store.state.join(format!("nar-bridge-{n}.log"));
        let mut child = store
            .client(&bin("nar-bridge"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("starting nar-bridge");
        let mut addr = None;
        wait_for("nar-bridge", &mut child, &log, || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            addr = text
                .split("nar-bridge ready listen=")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_string);
            addr.is_some()
        });
        NarBridge { child, url: format!("http://{}", addr.expect("read from the log")), log }
    }

    /// SIGTERM, then waits.
    pub fn stop(mut self) -> std::process::ExitStatus {
        terminate(&mut self.child);
        self.child.wait().unwrap()
    }
}

impl Drop for NarBridge {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

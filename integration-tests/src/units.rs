//! The NixOS modules' systemd units, run here without systemd (this
//! machine has neither systemd as PID 1 nor nixpkgs).
//!
//! `nix/eval-units.nix` evaluates `nixos-modules/` with Nix 2.8; each
//! service is then started the way systemd would start it: the unit's
//! environment only, `StateDirectory`/`CacheDirectory` made and passed in
//! `STATE_DIRECTORY`/`CACHE_DIRECTORY`,
//! `preStart` first, the socket unit's listening socket made by us and
//! passed as fd 3 (`LISTEN_FDS`/`LISTEN_PID`) — and kept open across
//! restarts, as systemd does — `Type=notify` awaited as `READY=1` on a
//! `NOTIFY_SOCKET`, and a unit with file-system namespacing options run in
//! its own mount namespace, whose mounts do not reach the host.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Options that give a unit its own mount namespace (systemd.exec(5)).
const NAMESPACING: &[&str] = &[
    "PrivateTmp",
    "PrivateDevices",
    "PrivateMounts",
    "ProtectSystem",
    "ProtectHome",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectKernelLogs",
    "ProtectControlGroups",
    "ProtectClock",
    "ProtectHostname",
    "ReadOnlyPaths",
    "ReadWritePaths",
    "InaccessiblePaths",
    "TemporaryFileSystem",
    "BindPaths",
    "MountFlags",
];

/// `nixos-modules/` evaluated with `settings` (a Nix attribute set) by
/// `nix/eval-units.nix`: services, sockets, fileSystems, tmpfiles,
/// nixSettings, environment. Panics on an evaluation error or a failed
/// assertion.
pub fn evaluate_modules(settings: &str) -> Value {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("nix/eval-units.nix");
    let out = crate::judge::nix_cmd("nix-instantiate")
        .args(["--eval", "--strict", "--json"])
        .arg(&file)
        .args(["--arg", "settings", settings])
        .stdin(Stdio::null())
        .output()
        .expect("running nix-instantiate");
    assert!(out.status.success(), "evaluating the modules: {}", String::from_utf8_lossy(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["failedAssertions"], Value::Array(vec![]), "failed assertions");
    json
}

/// The evaluated units of one configuration, living under `root` (a shared
/// mount while this lives). Drop the services first.
pub struct Units {
    pub root: PathBuf,
    pub json: Value,
}

impl Units {
    /// Evaluates the modules with castore, store, mount and nix-daemon
    /// enabled, every path under `root` (runtime directory `root/run/snix`,
    /// mount point `root/mnt`), binaries from `package/bin`, plus `extra`
    /// (the body of a Nix attribute set, e.g. `services.snix.mount.threads = 4;`).
    pub fn evaluate(root: &Path, package: &Path, extra: &str) -> Units {
        let r = root.display();
        let settings = format!(
            r#"{{ services.snix = {{
                package = "{pkg}";
                runtimeDirectory = "{r}/run/snix";
                castore.enable = true;
                store.enable = true;
                mount.enable = true;
                mount.mountPoint = "{r}/mnt";
                nix-daemon.enable = true;
              }};
              {extra} }}"#,
            pkg = package.display(),
        );
        let json = evaluate_modules(&settings);
        // systemd makes / a shared mount, so a namespaced unit's copies of
        // later mounts follow the host's unmounts; this machine's / is
        // private: make `root` a shared mount of its own to match.
        let shared = Command::new("sh")
            .args(["-ec", r#"mount --bind "$1" "$1"; mount --make-rshared "$1""#, "sh"])
            .arg(root)
            .status()
            .unwrap();
        assert!(shared.success(), "making {} a shared mount", root.display());
        Units { root: root.to_path_buf(), json }
    }

    /// A directory laid out like a package (`bin/<program>`) with our
    /// binaries from this build.
    pub fn this_build(root: &Path) -> PathBuf {
        let pkg = root.join("pkg");
        std::fs::create_dir_all(pkg.join("bin")).unwrap();
        for b in ["snix-castore", "snix-store", "snix-mount", "nix-daemon"] {
            let link = pkg.join("bin").join(b);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(crate::stack::bin(b), link).unwrap();
        }
        pkg
    }

    /// Starts service `name` (`snix-castore`, …) and waits for READY=1.
    pub fn start(&self, name: &str) -> Service {
        let unit = &self.json["services"][name];
        assert!(unit.is_object(), "no service {name}");
        let config = &unit["serviceConfig"];
        assert_eq!(config["Type"], "notify", "{name}");
        let listener = self.json["sockets"][name]["listenStreams"].as_array().map(|streams| {
            assert_eq!(streams.len(), 1, "{name}: one socket");
            let path = PathBuf::from(streams[0].as_str().unwrap());
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let _ = std::fs::remove_file(&path);
            let l = UnixListener::bind(&path).unwrap();
            let mode = self.json["sockets"][name]["socketConfig"]["SocketMode"].as_str().unwrap_or("0666");
            let mode = u32::from_str_radix(mode, 8).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            (l, path)
        });
        let mut env: Vec<(String, String)> = vec![("PATH".into(), "/usr/sbin:/usr/bin:/sbin:/bin".into())];
        if let Some(obj) = unit["environment"].as_object() {
            env.extend(obj.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())));
        }
        for (option, base, var) in
            [("StateDirectory", "var/lib", "STATE_DIRECTORY"), ("CacheDirectory", "var/cache", "CACHE_DIRECTORY")]
        {
            if let Some(dir) = config[option].as_str() {
                let made = self.root.join(base).join(dir);
                std::fs::create_dir_all(&made).unwrap();
                env.push((var.into(), made.display().to_string()));
            }
        }
        let namespaced = NAMESPACING.iter().any(|o| !config[*o].is_null() && config[*o] != false);
        let logs = self.root.join("log");
        std::fs::create_dir_all(&logs).unwrap();
        let mut s = Service {
            name: name.to_string(),
            exec_start: config["ExecStart"].as_str().unwrap().to_string(),
            pre_start: unit["preStart"].as_str().map(str::to_string),
            env,
            listener,
            namespaced,
            notify: logs.join(format!("{name}.notify")),
            log: logs.join(format!("{name}.log")),
            child: None,
        };
        s.spawn();
        s
    }
}

impl Drop for Units {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.root).status();
    }
}

/// A running service; SIGTERM on drop.
pub struct Service {
    pub name: String,
    exec_start: String,
    pre_start: Option<String>,
    env: Vec<(String, String)>,
    listener: Option<(UnixListener, PathBuf)>,
    namespaced: bool,
    notify: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Service {
    /// The socket unit's path.
    pub fn socket(&self) -> &Path {
        &self.listener.as_ref().expect("no socket unit").1
    }

    fn spawn(&mut self) {
        let log = || File::options().create(true).append(true).open(&self.log).unwrap();
        if let Some(pre) = &self.pre_start {
            let st = Command::new("sh")
                .args(["-ec", pre])
                .env_clear()
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .stdout(log())
                .stderr(log())
                .status()
                .unwrap();
            assert!(st.success(), "{}: preStart failed: {}", self.name, std::fs::read_to_string(&self.log).unwrap());
        }
        let _ = std::fs::remove_file(&self.notify);
        let notify = UnixDatagram::bind(&self.notify).unwrap();
        notify.set_read_timeout(Some(Duration::from_millis(50))).unwrap();

        // the shell's pid is the service's: it execs the ExecStart line
        let mut script = String::new();
        if self.listener.is_some() {
            script.push_str("LISTEN_PID=$$; LISTEN_FDS=1; export LISTEN_PID LISTEN_FDS; ");
        }
        script.push_str("exec ");
        script.push_str(&self.exec_start);
        let mut cmd = if self.namespaced {
            let mut c = Command::new("unshare");
            c.args(["--mount", "--propagation", "slave", "sh", "-c", &script]);
            c
        } else {
            let mut c = Command::new("sh");
            c.args(["-c", &script]);
            c
        };
        cmd.env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("NOTIFY_SOCKET", &self.notify)
            .stdin(Stdio::null())
            .stdout(log())
            .stderr(log());
        if let Some((l, _)) = &self.listener {
            let fd = l.as_raw_fd();
            // SAFETY: only async-signal-safe calls between fork and exec
            unsafe {
                cmd.pre_exec(move || {
                    if fd == 3 {
                        if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    } else if libc::dup2(fd, 3) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().unwrap();
        let start = Instant::now();
        let mut buf = [0u8; 4096];
        loop {
            if let Ok(n) = notify.recv(&mut buf) {
                if String::from_utf8_lossy(&buf[..n]).lines().any(|l| l == "READY=1") {
                    break;
                }
            }
            if let Ok(Some(st)) = child.try_wait() {
                panic!("{} exited ({st}) before READY=1: {}", self.name, std::fs::read_to_string(&self.log).unwrap());
            }
            assert!(start.elapsed() < Duration::from_secs(30), "{}: no READY=1 after 30 s", self.name);
        }
        self.child = Some(child);
    }

    fn stop(&mut self, signal: i32) {
        if let Some(mut child) = self.child.take() {
            crate::stack::signal_and_wait(&mut child, signal);
        }
    }

    /// `systemctl restart`: SIGTERM, then start again.
    pub fn restart(&mut self) {
        self.stop(libc::SIGTERM);
        self.spawn();
    }

    /// SIGKILL, then what `Restart=on-failure` does: start again.
    pub fn kill9_and_restart(&mut self) {
        self.stop(libc::SIGKILL);
        self.spawn();
    }

    /// Another package's binary for this unit (an upgrade of one unit):
    /// `from` replaced by `to` in ExecStart, then a restart.
    pub fn upgrade(&mut self, from: &Path, to: &Path) {
        let (from, to) = (from.display().to_string(), to.display().to_string());
        assert!(self.exec_start.contains(&from), "{}: {} does not run {from}", self.name, self.exec_start);
        self.exec_start = self.exec_start.replace(&from, &to);
        self.restart();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop(libc::SIGTERM);
    }
}

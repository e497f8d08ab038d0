//! The NixOS modules' systemd units, run here without systemd (this
//! machine has neither systemd as PID 1 nor nixpkgs).
//!
//! `nix/eval-units.nix` evaluates `nixos-modules/` with Nix 2.8 and
//! nixpkgs' own module system, and writes the unit files and their scripts
//! as NixOS does; the packages the units name (and NixOS puts on every
//! service's PATH) are directories made from Debian's packages, each
//! holding exactly the programs its Debian package ships, so a tool a
//! unit's script uses but its `path` lacks is missing here too. Each
//! service is then started from its unit file the way systemd would start
//! it: its `Environment=` only (PATH as NixOS builds it from `path`),
//! `ExecStartPre=` programs, then `ExecStart=`,
//! `StateDirectory`/`CacheDirectory` made and passed in
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

/// The nixpkgs packages the modules and NixOS's service PATH name, and the
/// Debian packages whose programs stand in for each (shared with
/// scripts/vm-test.sh): `nixpkgs-name debian-package…` per line.
const PACKAGES: &str = include_str!("../nix/debian-packages.txt");

/// nixpkgs' `lib` (the module system): `SNIX_NIXPKGS_LIB`, else the copy
/// beside this repository (`../shared/nixpkgs-lib/lib`) or in /work/shared.
pub fn nixpkgs_lib() -> PathBuf {
    if let Some(p) = std::env::var_os("SNIX_NIXPKGS_LIB") {
        return PathBuf::from(p);
    }
    let beside = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/nixpkgs-lib/lib");
    [beside, PathBuf::from("/work/shared/nixpkgs-lib/lib")]
        .into_iter()
        .find(|p| p.join("default.nix").is_file())
        .expect("the modules are evaluated with nixpkgs' lib: set SNIX_NIXPKGS_LIB to a nixpkgs lib/ directory")
}

/// Makes, under `dir`, one directory per entry of [`PACKAGES`] laid out
/// like a package: `bin/` and `sbin/` with a link to each program its
/// Debian packages ship (none for a package not installed). Returns the
/// Nix attribute set naming them, plus `snix = package`.
pub fn debian_packages(dir: &Path, package: &Path) -> String {
    let mut set = format!("{{ snix = \"{}\";", package.display());
    let entries = PACKAGES.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty());
    for (name, debian) in entries.map(|l| l.split_once(' ').expect("name and Debian packages")) {
        let pkg = dir.join(name);
        let _ = std::fs::remove_dir_all(&pkg);
        for sub in ["bin", "sbin"] {
            std::fs::create_dir_all(pkg.join(sub)).unwrap();
        }
        for deb in debian.split_whitespace() {
            let out = Command::new("dpkg-query").args(["-L", deb]).stderr(Stdio::null()).output().unwrap();
            for file in String::from_utf8_lossy(&out.stdout).lines() {
                let sub = match Path::new(file).parent().and_then(|d| d.file_name()).and_then(|d| d.to_str()) {
                    Some(d @ ("bin" | "sbin")) => d,
                    _ => continue,
                };
                let (target, name) = (Path::new(file), Path::new(file).file_name().unwrap());
                if target.is_file() && !pkg.join(sub).join(name).exists() {
                    std::os::unix::fs::symlink(target, pkg.join(sub).join(name)).unwrap();
                }
            }
        }
        set.push_str(&format!(" \"{name}\" = \"{}\";", pkg.display()));
    }
    set.push_str(" }");
    set
}

/// A unit file: its (section, key, value) lines, in order.
fn parse_unit(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut lines = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
        } else if let Some((k, v)) = line.split_once('=') {
            lines.push((section.clone(), k.to_string(), v.to_string()));
        }
    }
    lines
}

/// The values of `key` in `section` of a parsed unit, in order.
fn unit_values<'a>(unit: &'a [(String, String, String)], section: &str, key: &str) -> Vec<&'a str> {
    unit.iter().filter(|(s, k, _)| s == section && k == key).map(|(_, _, v)| v.as_str()).collect()
}

/// `nixos-modules/` evaluated with `settings` (a NixOS module: an
/// attribute set, or a function of `{ pkgs, ... }` where `pkgs.snix` is
/// the package) by `nix/eval-units.nix`: services, sockets, fileSystems,
/// tmpfiles, nixSettings, environment. Panics on an evaluation error or a
/// failed assertion.
pub fn evaluate_modules(settings: &str) -> Value {
    // (only evaluated: nothing runs from these)
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    evaluate_modules_in(settings, dir, &dir.join("snix"), &dir.join("unit-scripts"))
}

/// [`evaluate_modules`] with the package `package`, the stand-in packages
/// made under `packages` and the units' scripts to be put under `script_dir`.
fn evaluate_modules_in(settings: &str, packages: &Path, package: &Path, script_dir: &Path) -> Value {
    let pkgs = debian_packages(packages, package);
    let out = evaluate_modules_raw(settings, &pkgs, script_dir);
    assert!(out.status.success(), "evaluating the modules: {}", String::from_utf8_lossy(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["failedAssertions"], Value::Array(vec![]), "failed assertions");
    json
}

/// Runs `nix/eval-units.nix` on `settings` with the packages `pkgs` (a Nix
/// attribute set of directories), the units' scripts to be put under
/// `script_dir`: its output, success or not.
pub fn evaluate_modules_raw(settings: &str, pkgs: &str, script_dir: &Path) -> std::process::Output {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("nix/eval-units.nix");
    crate::judge::nix_cmd("nix-instantiate")
        .args(["--eval", "--strict", "--json"])
        .arg(&file)
        .arg("--arg")
        .arg("nixpkgsLib")
        .arg(nixpkgs_lib())
        .args(["--arg", "settings", settings, "--arg", "pkgs", pkgs])
        .arg("--argstr")
        .arg("scriptDir")
        .arg(script_dir)
        .stdin(Stdio::null())
        .output()
        .expect("running nix-instantiate")
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
            r#"{{ pkgs, ... }}: {{ services.snix = {{
                package = pkgs.snix;
                runtimeDirectory = "{r}/run/snix";
                castore.enable = true;
                store.enable = true;
                mount.enable = true;
                mount.mountPoint = "{r}/mnt";
                nix-daemon.enable = true;
              }};
              {extra} }}"#,
        );
        let scripts = root.join("unit-scripts");
        let json = evaluate_modules_in(&settings, &root.join("packages"), package, &scripts);
        // the unit files and their scripts where systemd and the units find them
        for (dir, files) in [(root.join("units"), &json["unitFiles"]), (scripts, &json["scripts"])] {
            for (name, text) in files.as_object().unwrap() {
                let file = dir.join(name);
                std::fs::create_dir_all(file.parent().unwrap()).unwrap();
                std::fs::write(&file, text.as_str().unwrap()).unwrap();
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
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
        for b in ["snix-castore", "snix-store", "snix-mount", "nix-daemon", "nar-bridge"] {
            let link = pkg.join("bin").join(b);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(crate::stack::bin(b), link).unwrap();
        }
        pkg
    }

    /// Starts service `name` (`snix-castore`, …) from its unit file and
    /// waits for READY=1.
    pub fn start(&self, name: &str) -> Service {
        let read = |file: &str| std::fs::read_to_string(self.root.join("units").join(file)).ok();
        let unit = parse_unit(&read(&format!("{name}.service")).unwrap_or_else(|| panic!("no service {name}")));
        let one = |key: &str| unit_values(&unit, "Service", key).last().copied();
        assert_eq!(one("Type"), Some("notify"), "{name}");
        let listener = read(&format!("{name}.socket")).map(|text| {
            let socket = parse_unit(&text);
            let streams = unit_values(&socket, "Socket", "ListenStream");
            assert_eq!(streams.len(), 1, "{name}: one socket");
            let path = PathBuf::from(streams[0]);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let _ = std::fs::remove_file(&path);
            let l = UnixListener::bind(&path).unwrap();
            let mode = unit_values(&socket, "Socket", "SocketMode").last().copied().unwrap_or("0666");
            let mode = u32::from_str_radix(mode, 8).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            (l, path)
        });
        // the unit's Environment= is all it gets, PATH included
        let mut env: Vec<(String, String)> = unit_values(&unit, "Service", "Environment")
            .into_iter()
            .map(|v| {
                let v: String = if v.starts_with('"') { serde_json::from_str(v).unwrap() } else { v.to_string() };
                let (k, v) = v.split_once('=').expect("Environment=NAME=value");
                (k.to_string(), v.to_string())
            })
            .collect();
        for (option, base, var) in
            [("StateDirectory", "var/lib", "STATE_DIRECTORY"), ("CacheDirectory", "var/cache", "CACHE_DIRECTORY")]
        {
            if let Some(dir) = one(option) {
                let made = self.root.join(base).join(dir);
                std::fs::create_dir_all(&made).unwrap();
                env.push((var.into(), made.display().to_string()));
            }
        }
        let namespaced = NAMESPACING.iter().any(|o| one(o).is_some_and(|v| v != "false"));
        let logs = self.root.join("log");
        std::fs::create_dir_all(&logs).unwrap();
        let mut s = Service {
            name: name.to_string(),
            exec_start: one("ExecStart").expect("ExecStart=").to_string(),
            exec_start_pre: unit_values(&unit, "Service", "ExecStartPre").into_iter().map(str::to_string).collect(),
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
    /// programs run before ExecStart, each must succeed (no shell, as systemd)
    exec_start_pre: Vec<String>,
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
        for pre in &self.exec_start_pre {
            let st = Command::new(pre)
                .env_clear()
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .stdout(log())
                .stderr(log())
                .status()
                .unwrap();
            assert!(
                st.success(),
                "{}: ExecStartPre {pre} failed: {}",
                self.name,
                std::fs::read_to_string(&self.log).unwrap()
            );
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
            let mut c = Command::new("/usr/bin/unshare");
            c.args(["--mount", "--propagation", "slave", "/bin/sh", "-c", &script]);
            c
        } else {
            let mut c = Command::new("/bin/sh");
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

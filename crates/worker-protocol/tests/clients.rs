//! Every Nix client a Debian or NixOS user may have, against our nix-daemon:
//! Nix 2.3.7 (bullseye, protocol 1.21), 2.8 (this host, 1.34), 2.26
//! (trixie, 1.38) and 2.34 (sid, 1.38). One stack serves them all; each
//! client runs the same script (`tests/clients.sh`) in its own chroot —
//! adds of every kind, copies both ways, queries, verification, reads
//! through the mount — and every answer is judged against what Nix 2.8
//! itself says of the same files and paths.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use integration_tests::chroots::{self, Suite};
use integration_tests::judge::{build_closure, nix_cmd, nix_stdout, path_str, require_nix, sorted_lines};
use integration_tests::stack::{Mount, NixDaemon, StoreDaemon};
use nix_compat::path_info_json;

const SCRIPT: &str = include_str!("clients.sh");

struct Client {
    name: &'static str,
    /// `None`: Debian bookworm's Nix 2.8 on this host
    suite: Option<Suite>,
    protocol: &'static str,
}

const CLIENTS: [Client; 4] = [
    Client { name: "Nix 2.3.7", suite: Some(Suite::Bullseye), protocol: "1.21" },
    Client { name: "Nix 2.8", suite: None, protocol: "1.34" },
    Client { name: "Nix 2.26", suite: Some(Suite::Trixie), protocol: "1.38" },
    Client { name: "Nix 2.34", suite: Some(Suite::Sid), protocol: "1.38" },
];

/// The script's output, by section (`== name` lines).
fn sections(out: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in out.lines() {
        if let Some(name) = line.strip_prefix("== ") {
            if let Some((n, body)) = current.take() {
                map.insert(n, body);
            }
            current = Some((name.to_string(), String::new()));
        } else if let Some((_, body)) = current.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    if let Some((n, body)) = current {
        map.insert(n, body);
    }
    map
}

/// What both Nixes must agree on, per path: narHash, narSize, references.
fn facts(json: &str) -> Vec<(String, String, u64, Vec<String>)> {
    let (_, infos) = path_info_json::parse(json.as_bytes()).unwrap_or_else(|e| panic!("{e}: {json}"));
    let mut v: Vec<_> = infos
        .into_iter()
        .map(|(p, i)| {
            let i = i.unwrap_or_else(|| panic!("{p} not valid"));
            let mut refs: Vec<String> = i.references.iter().map(|r| r.to_string()).collect();
            refs.sort();
            (p.to_string(), i.nar_hash.to_sri(), i.nar_size, refs)
        })
        .collect();
    v.sort();
    v
}

/// sha256 of `nix-store --dump PATH`, in base16 (what `sha256sum` prints).
fn sha256_of_dump(path: &str) -> String {
    let out = nix_cmd("nix-store").args(["--dump", path]).output().unwrap();
    assert!(out.status.success());
    nix_compat::hash::NixHash::sha256(nix_compat::hash::sha256(&out.stdout)).to_base16()
}

/// Runs the script for `client`: in its chroot, with the stack's directory
/// bound at /snix (and, for Nix 2.3, whose `unix://` store reads file
/// contents from /nix/store and ignores `real=`, the mount bound there
/// for the content phase); on the host for Nix 2.8.
fn run(client: &Client, stack_dir: &Path, phase: &str, env: &[(&str, String)]) -> String {
    let out = match client.suite {
        None => {
            let mut c = nix_cmd("sh");
            c.arg("-c").arg(SCRIPT).arg("clients.sh").arg(phase);
            for (k, v) in env {
                c.env(k, v);
            }
            c.output().unwrap()
        }
        Some(suite) => {
            let root = chroots::chroot(suite);
            let mut pre = format!(r#"mkdir -p "$R/snix"; mount --rbind {} "$R/snix""#, stack_dir.display());
            if phase == "content" && suite == Suite::Bullseye {
                pre.push_str(r#"; mount --bind "$R/snix/mnt" "$R/nix/store""#);
            }
            let vars: String = env.iter().map(|(k, v)| format!("{k}='{v}' ")).collect();
            std::fs::write(stack_dir.join("clients.sh"), SCRIPT).unwrap();
            chroots::run_prepared(root, &pre, &format!("{vars} sh /snix/clients.sh {phase}"))
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} ({phase}): stdout: {stdout}\nstderr: {}",
        client.name,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
#[ignore = "needs nix, root and /dev/fuse"]
fn every_client_from_nix_2_3_to_2_34_gets_nix_s_answers() {
    require_nix();
    let tmp = tempfile::tempdir().unwrap();
    let (top, dep) = build_closure(tmp.path());
    let dir = tmp.path().join("stack");
    let files = dir.join("files");
    std::fs::create_dir_all(files.join("dir/sub")).unwrap();
    std::fs::write(files.join("flat.txt"), format!("flat file {:?}\n", tmp.path())).unwrap();
    std::fs::write(files.join("dir/sub/x"), b"in a tree\n").unwrap();
    std::os::unix::fs::symlink("sub/x", files.join("dir/link")).unwrap();
    let text = format!("text of {}", tmp.path().display());

    // what Nix 2.8 says of the same files (added to its own store)
    let add = |args: &[&str]| nix_stdout(&[&["nix-store"][..], args].concat());
    let flat = path_str(&files.join("flat.txt")).to_string();
    let tree = path_str(&files.join("dir")).to_string();
    let expected_adds = [
        ("add-recursive", add(&["--add", &flat])),
        ("add-dir", add(&["--add", &tree])),
        ("add-fixed", add(&["--add-fixed", "sha256", &flat])),
        ("add-fixed-recursive", add(&["--add-fixed", "--recursive", "sha256", &tree])),
        ("add-text", {
            let expr = format!("builtins.toFile \"snix-text\" \"{text}\"");
            nix_stdout(&["nix-instantiate", "--eval", "--read-write-mode", "-E", &expr]).trim_matches('"').to_string()
        }),
    ];
    let closure = sorted_lines(&nix_stdout(&["nix-store", "-qR", &top]));
    let deriver = nix_stdout(&["nix-store", "-q", "--deriver", &top]);
    let local_facts = facts(&nix_stdout(&["nix", "path-info", "--json", "-r", &top]));
    let dump_hash = sha256_of_dump(&top);

    let store = StoreDaemon::start(&tmp.path().join("state"));
    let daemon = NixDaemon::start_with_env(
        &store,
        &dir.join("nd.sock"),
        &["--require-sigs", "false"],
        &[("RUST_LOG", "snix_worker_protocol=debug")],
    );
    integration_tests::judge::nix(&["nix", "copy", "--no-check-sigs", "--to", &daemon.url(None), &top]);
    let _mount = Mount::start(&store, &dir.join("mnt"), &["--allow-other"]);

    let report = Path::new(env!("CARGO_TARGET_TMPDIR")).join("clients-report.txt");
    let mut table = String::from("| client | protocol | operations it sent | result |\n|---|---|---|---|\n");
    let mut log_seen = std::fs::read_to_string(&daemon.log).unwrap().len();
    for (i, client) in CLIENTS.iter().enumerate() {
        eprintln!("--- {}", client.name);
        let (base, u) = match client.suite {
            None => (dir.clone(), format!("unix://{}", dir.join("nd.sock").display())),
            Some(_) => (PathBuf::from("/snix"), "unix:///snix/nd.sock".to_string()),
        };
        let content_url = match client.suite {
            Some(Suite::Bullseye) => u.clone(),
            _ => format!("{u}?real={}", base.join("mnt").display()),
        };
        let fresh = match client.suite {
            None => tmp.path().join(format!("fresh-{i}")),
            Some(_) => PathBuf::from(format!("/tmp/snix-fresh-{}-{i}", std::process::id())),
        };
        let env = [
            ("U", u.clone()),
            ("C", content_url),
            ("F", base.join("files").display().to_string()),
            ("TOP", top.clone()),
            ("DEP", dep.clone()),
            ("TEXT", text.clone()),
            ("FRESH", fresh.display().to_string()),
            ("UNIQUE", format!("{} {i}", tmp.path().display())),
        ];
        let mut got = sections(&run(client, &dir, "meta", &env));
        got.extend(sections(&run(client, &dir, "content", &env)));
        let who = client.name;

        if client.protocol == "1.38" {
            // the daemon's version and the client's trust reach the client from 1.33 and 1.35 on
            assert!(got["info"].contains("snix"), "{who}: {}", got["info"]);
            assert!(got["info"].contains("Trusted: 1"), "{who}: root is trusted: {}", got["info"]);
        }
        for (section, want) in &expected_adds {
            assert_eq!(got[*section].trim().trim_matches('"'), want, "{who}: {section}");
        }
        assert_eq!(sorted_lines(&got["requisites"]), closure, "{who}: -qR");
        assert_eq!(got["referrers"].trim(), top, "{who}: --referrers");
        assert_eq!(got["deriver"].trim(), deriver, "{who}: --deriver");
        assert_eq!(facts(&got["path-info"]), local_facts, "{who}: path-info --json");
        let hashes: Vec<&str> = got["copy-to"].lines().collect();
        assert_eq!(hashes.len(), 2, "{who}: copy-to: {}", got["copy-to"]);
        assert_eq!(hashes[0], hashes[1], "{who}: the copied path's hash, ours vs the client's store");
        assert_eq!(got["verify"].trim(), "verified", "{who}: --verify --check-contents");
        assert_eq!(got["verify-path"].trim(), "verified", "{who}: --verify-path through the mount");
        assert_eq!(got["copy-from"].trim(), "copied", "{who}: copy --from");
        assert_eq!(got["dump"].trim(), dump_hash, "{who}: dump-path through the mount");
        if let Some(suite) = client.suite {
            let _ = std::fs::remove_dir_all(chroots::chroot(suite).join(fresh.strip_prefix("/").unwrap()));
        }
        let log = std::fs::read_to_string(&daemon.log).unwrap();
        let this_client = &log[log_seen..];
        log_seen = log.len();
        assert!(this_client.contains(&format!("protocol={}", client.protocol)), "{who} speaks {}", client.protocol);
        // the operations this client sent, for the README's table
        let mut ops: BTreeMap<u64, &str> = BTreeMap::new();
        for l in this_client.lines().filter(|l| l.contains(" operation ")) {
            let field = |k: &str| l.split(k).nth(1).and_then(|r| r.split(' ').next());
            if let (Some(op), Some(name)) = (field(" op="), field(" name=")) {
                ops.insert(op.parse().unwrap(), name.trim_matches('"'));
            }
        }
        let ops: Vec<String> = ops.iter().map(|(n, name)| format!("{n} {name}")).collect();
        table.push_str(&format!("| {who} | {} | {} | all answers as Nix 2.8's |\n", client.protocol, ops.join(", ")));
    }
    std::fs::write(&report, &table).unwrap();
    eprintln!("{table}");
    let log = std::fs::read_to_string(&daemon.log).unwrap();
    assert!(!log.contains("not supported by this daemon"), "{log}");
}

//! The NixOS modules' units, as evaluated (`nix/eval-units.nix`): the
//! ordering the deployment promises — castore → store → mount → our
//! nix-daemon → overlay mount → Nix's daemon — and the properties the
//! other tests rely on but cannot see, since they start the units
//! themselves. (Running them is `tests/restarts.rs` and `tests/compat.rs`.)
#![allow(clippy::unwrap_used)]

use integration_tests::judge::require_nix;
use integration_tests::units::{debian_packages, evaluate_modules, evaluate_modules_raw};
use serde_json::Value;

fn strings(v: &Value) -> Vec<&str> {
    v.as_array().map(|a| a.iter().map(|s| s.as_str().unwrap()).collect()).unwrap_or_default()
}

#[test]
#[ignore = "needs nix"]
fn units_are_ordered_and_socket_activated() {
    require_nix();
    let m = evaluate_modules(
        r#"{ pkgs, ... }: { services.snix = { package = pkgs.snix; castore.enable = true; store.enable = true;
              mount.enable = true; nix-daemon.enable = true; localOverlay.enable = true; }; }"#,
    );
    let s = &m["services"];
    let after = |unit: &str| strings(&s[unit]["after"]);
    assert!(after("snix-store").contains(&"snix-castore.socket"));
    assert!(after("snix-mount").contains(&"snix-store.socket"));
    assert!(after("snix-nix-daemon").contains(&"snix-mount.service"));
    let overlay = &m["fileSystems"]["/var/lib/snix-overlay/merged/nix/store"];
    assert!(strings(&overlay["options"]).contains(&"x-systemd.after=snix-mount.service"));
    assert!(strings(&overlay["options"]).contains(&"x-systemd.requires=snix-mount.service"));
    assert!(after("nix-daemon").contains(&"snix-nix-daemon.socket"));
    assert_eq!(
        strings(&s["nix-daemon"]["unitConfig"]["RequiresMountsFor"]),
        ["/var/lib/snix-overlay/merged/nix/store"]
    );
    assert_eq!(m["nixSettings"]["store"].as_str().unwrap().split('?').next(), Some("local-overlay://"));
    assert_eq!(m["environment"]["NIX_REMOTE"], "daemon");

    for unit in ["snix-castore", "snix-store", "snix-mount", "snix-nix-daemon"] {
        assert_eq!(s[unit]["serviceConfig"]["Type"], "notify", "{unit}");
        // the listening daemons get their socket from systemd (restarts keep it)
        if unit != "snix-mount" {
            let exec = s[unit]["serviceConfig"]["ExecStart"].as_str().unwrap();
            assert!(!exec.contains(" -l ") && !exec.contains("--listen"), "{unit} binds its own socket: {exec}");
            assert_eq!(m["sockets"][unit]["socketConfig"]["SocketMode"], "0660", "{unit}");
            assert!(strings(&s[unit]["requires"]).contains(&format!("{unit}.socket").as_str()), "{unit}");
        }
    }
    // a NixOS service's PATH is coreutils, findutils, grep, sed and systemd
    // plus its `path`: the mount's preStart needs umount from util-linux
    let mount_path = s["snix-mount"]["environment"]["PATH"].as_str().unwrap();
    assert!(mount_path.split(':').any(|d| d.ends_with("/util-linux/bin")), "{mount_path}");
    // socket-activated daemons are not stopped while a switch replaces them
    // (their socket holds connections meanwhile), as nixpkgs does for its nix-daemon
    for unit in ["snix-castore", "snix-store", "snix-nix-daemon"] {
        assert_eq!(s[unit]["stopIfChanged"], false, "{unit}");
    }
    // the unit files, as NixOS writes them
    let file = |name: &str| m["unitFiles"][name].as_str().unwrap_or_else(|| panic!("no unit file {name}")).to_string();
    let socket = file("snix-castore.socket");
    assert!(socket.contains("[Socket]\nListenStream=/run/snix/snix-castore.sock\nSocketMode=0660\n"), "{socket}");
    assert!(socket.ends_with("[Install]\nWantedBy=sockets.target\n"), "{socket}");
    let castore = file("snix-castore.service");
    assert!(
        castore.contains("\nRequires=snix-castore.socket\n") && castore.contains("\nX-StopIfChanged=false\n"),
        "{castore}"
    );
    let mount = file("snix-mount.service");
    let pre = mount.lines().find_map(|l| l.strip_prefix("ExecStartPre=")).expect("the mount's preStart");
    let script = m["scripts"][pre.split("/unit-scripts/").nth(1).unwrap()].as_str().unwrap();
    assert!(script.starts_with("#!/bin/bash\nset -e\n") && script.contains("umount -l"), "{script}");
    assert!(mount.contains("Environment=\"PATH=") && mount.contains("/util-linux/sbin:"), "{mount}");
    // the daemons' clients find the store daemon wherever its socket is
    for unit in ["snix-mount", "snix-nix-daemon"] {
        assert_eq!(s[unit]["environment"]["PATH_INFO_SERVICE_ADDR"], "grpc+unix:///run/snix/snix-store.sock");
    }
}

/// What the module system says about `settings`, which it must refuse.
fn refused(settings: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let pkgs = debian_packages(dir.path(), &dir.path().join("snix"));
    let out = evaluate_modules_raw(settings, &pkgs, &dir.path().join("unit-scripts"));
    assert!(!out.status.success(), "accepted: {settings}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
#[ignore = "needs nix"]
fn wrong_types_and_unknown_options_are_refused_by_the_module_system() {
    require_nix();
    // a string is not a package (the stand-in this replaced let it pass)
    let e = refused(r#"{ services.snix = { package = "/pkg"; castore.enable = true; }; }"#);
    assert!(e.contains("is not of type `package'"), "{e}");
    let e = refused(
        r#"{ pkgs, ... }: { services.snix = { package = pkgs.snix; nix-daemon = { enable = true; socketMode = "rw-rw----"; }; }; }"#,
    );
    assert!(e.contains("services.snix.nix-daemon.socketMode") && e.contains("is not of type"), "{e}");
    let e = refused(r#"{ pkgs, ... }: { services.snix = { package = pkgs.snix; mount.threds = 4; }; }"#);
    assert!(e.contains("The option `services.snix.mount.threds' does not exist"), "{e}");
    let e = refused(
        r#"{ pkgs, ... }: { services.snix = { package = pkgs.snix; mount = { enable = true; threads = 0; }; }; }"#,
    );
    assert!(e.contains("services.snix.mount.threads") && e.contains("is not of type `positive integer"), "{e}");
    // what NixOS options accept is checked too: a unit name must be one
    let e = refused(
        r#"{ pkgs, ... }: { services.snix = { package = pkgs.snix; castore.enable = true; };
             systemd.services.snix-castore.after = [ "not a unit" ]; }"#,
    );
    assert!(e.contains("systemd.services.snix-castore.after"), "{e}");
    // and a directive's value systemd does not know
    let e = refused(
        r#"{ pkgs, lib, ... }: { services.snix = { package = pkgs.snix; castore.enable = true; };
             systemd.services.snix-castore.serviceConfig.Restart = lib.mkForce "sometimes"; }"#,
    );
    assert!(e.contains("Restart=sometimes") && e.contains("serviceConfig"), "{e}");
}

/// The module inside README's NixOS example (the flake's `({ pkgs, ... }: { … })`).
fn readme_module() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let section = readme.split("\n## NixOS\n").nth(1).unwrap().split("\n## ").next().unwrap();
    let start = section.find("({ pkgs, ... }: {").expect("README's NixOS example has a module");
    let end = start + section[start..].find("\n        })").expect("the module ends");
    format!("{}\n}})", &section[start..end])
}

#[test]
#[ignore = "needs nix"]
fn the_readme_example_evaluates() {
    require_nix();
    // as written, plus the package nixpkgs would build from this repository
    let m = evaluate_modules(&format!(
        "[ {} ({{ pkgs, ... }}: {{ services.snix.package = pkgs.snix; }}) ]",
        readme_module()
    ));
    for unit in ["snix-castore", "snix-store", "snix-mount", "snix-nix-daemon", "nix-daemon"] {
        assert!(m["services"][unit].is_object(), "{unit} missing");
    }
    assert_eq!(m["nixSettings"]["store"].as_str().unwrap().split('?').next(), Some("local-overlay://"));
}

#[test]
#[ignore = "needs nix"]
fn the_nar_bridge_unit_listens_where_told_and_keeps_its_key_out_of_the_store() {
    require_nix();
    let m = evaluate_modules(
        r#"{ pkgs, ... }: { services.snix = { package = pkgs.snix; store.enable = true;
              nar-bridge = { enable = true; listen = "127.0.0.1:9000"; signingKeyFile = "/etc/snix/cache.sk";
                             compression = "zstd"; priority = 30; }; }; }"#,
    );
    let unit = &m["services"]["snix-nar-bridge"];
    assert_eq!(strings(&m["sockets"]["snix-nar-bridge"]["listenStreams"]), ["127.0.0.1:9000"]);
    assert!(strings(&unit["requires"]).contains(&"snix-nar-bridge.socket"));
    assert!(strings(&unit["after"]).contains(&"snix-store.socket"));
    assert_eq!(unit["serviceConfig"]["Type"], "notify");
    assert_eq!(unit["stopIfChanged"], false);
    let env = &unit["environment"];
    assert_eq!(env["SNIX_NAR_BRIDGE_SIGNING_KEY"], "/etc/snix/cache.sk");
    assert_eq!(env["SNIX_NAR_BRIDGE_COMPRESSION"], "zstd");
    assert_eq!(env["PATH_INFO_SERVICE_ADDR"], "grpc+unix:///run/snix/snix-store.sock");
    let exec = unit["serviceConfig"]["ExecStart"].as_str().unwrap();
    assert!(exec.ends_with("/bin/nar-bridge --priority 30 "), "{exec}");
    // the default: a unix socket for a reverse proxy, and no key
    let m =
        evaluate_modules(r#"{ pkgs, ... }: { services.snix = { package = pkgs.snix; nar-bridge.enable = true; }; }"#);
    assert_eq!(strings(&m["sockets"]["snix-nar-bridge"]["listenStreams"]), ["/run/snix/nar-bridge.sock"]);
    assert_eq!(m["sockets"]["snix-nar-bridge"]["socketConfig"]["SocketMode"], "0660");
    assert!(m["services"]["snix-nar-bridge"]["environment"].get("SNIX_NAR_BRIDGE_SIGNING_KEY").is_none());

    // a key in the world-readable store is refused, and so is an unknown compression
    let dir = tempfile::tempdir().unwrap();
    let pkgs = debian_packages(dir.path(), &dir.path().join("snix"));
    let out = evaluate_modules_raw(
        r#"{ pkgs, ... }: { services.snix = { package = pkgs.snix;
              nar-bridge = { enable = true; signingKeyFile = "/nix/store/aaaa-key"; }; }; }"#,
        &pkgs,
        &dir.path().join("unit-scripts"),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let failed = json["failedAssertions"].to_string();
    assert!(failed.contains("signingKeyFile must not be in the Nix store"), "{failed}");
    let e = refused(
        r#"{ pkgs, ... }: { services.snix = { package = pkgs.snix; nar-bridge = { enable = true; compression = "gzip"; }; }; }"#,
    );
    assert!(e.contains("services.snix.nar-bridge.compression") && e.contains("is not of type"), "{e}");
}

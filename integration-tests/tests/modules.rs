//! The NixOS modules' units, as evaluated (`nix/eval-units.nix`): the
//! ordering the deployment promises — castore → store → mount → our
//! nix-daemon → overlay mount → Nix's daemon — and the properties the
//! other tests rely on but cannot see, since they start the units
//! themselves. (Running them is `tests/restarts.rs` and `tests/compat.rs`.)
#![allow(clippy::unwrap_used)]

use integration_tests::judge::require_nix;
use integration_tests::units::evaluate_modules;
use serde_json::Value;

fn strings(v: &Value) -> Vec<&str> {
    v.as_array().map(|a| a.iter().map(|s| s.as_str().unwrap()).collect()).unwrap_or_default()
}

#[test]
#[ignore = "needs nix"]
fn units_are_ordered_and_socket_activated() {
    require_nix();
    let m = evaluate_modules(
        r#"{ services.snix = { package = "/pkg"; castore.enable = true; store.enable = true;
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
    // the daemons' clients find the store daemon wherever its socket is
    for unit in ["snix-mount", "snix-nix-daemon"] {
        assert_eq!(s[unit]["environment"]["PATH_INFO_SERVICE_ADDR"], "grpc+unix:///run/snix/snix-store.sock");
    }
}

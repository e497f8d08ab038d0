//! The exportReferencesGraph closure JSON, as a structured-attrs build of the
//! real Nix writes it. The builder ends with `exit 0` rather than exec'ing
//! `cp` as its last command: with the exec, Nix 2.8 intermittently reports
//! the builder "Killed" (signal 9) after it saw EOF on the build log.
#![allow(clippy::unwrap_used)]

use std::io::Read;

use integration_tests::judge::{build_closure, nix_stdout, path_str, require_nix};
use nix_compat::hash::NixHash;

#[test]
#[ignore = "needs nix"]
fn closure_json_from_structured_attrs_build_parses() {
    require_nix();
    let tmp = tempfile::tempdir().unwrap();
    let (top, dep) = build_closure(tmp.path());
    let expr = format!(
        r#"derivation {{ name = "closure-json"; system = builtins.currentSystem; builder = "/bin/bash";
            args = ["-c" ". .attrs.sh; /bin/cp .attrs.json \${{outputs[out]}}; exit 0"];
            __structuredAttrs = true; exportReferencesGraph.closure = [ (builtins.storePath "{top}") ]; }}"#
    );
    let file = tmp.path().join("closure.nix");
    std::fs::write(&file, expr).unwrap();
    let out = nix_stdout(&["nix-build", "--no-out-link", path_str(&file)]);
    let mut json = Vec::new();
    std::fs::File::open(out.lines().last().unwrap()).unwrap().read_to_end(&mut json).unwrap();
    let entries = nix_compat::closure::parse_closure(&json, "closure").unwrap();
    let ordered = nix_compat::closure::dependencies_first(entries).unwrap();
    let paths: Vec<String> = ordered.iter().map(|e| e.path.to_string()).collect();
    assert_eq!(paths, vec![dep.clone(), top.clone()]);
    for e in &ordered {
        let info: serde_json::Value =
            serde_json::from_str(&nix_stdout(&["nix", "path-info", "--json", &e.path.to_string()])).unwrap();
        let h = NixHash::parse(&e.nar_hash, None).unwrap();
        assert_eq!(h.to_sri(), info[0]["narHash"].as_str().unwrap());
        assert_eq!(e.nar_size, info[0]["narSize"].as_u64().unwrap());
    }
}

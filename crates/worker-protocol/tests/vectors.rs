//! Nix's own serialization vectors (libstore-tests, copied into
//! tests/vectors): each `.bin` is what Nix writes for the values in the
//! `.json` beside it. We decode the bytes into those values and encode the
//! values back into the same bytes.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use nix_compat::content_address::ContentAddress;
use nix_compat::hash::NixHash;
use nix_compat::store_path::StorePath;
use serde_json::Value;
use snix_worker_protocol::types::*;
use snix_worker_protocol::wire::{self, WireWriter};

fn vector(dir: &str, name: &str) -> (Vec<u8>, Value) {
    let base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors").join(dir);
    let bin = std::fs::read(base.join(format!("{name}.bin"))).unwrap();
    let json = std::fs::read(base.join(format!("{name}.json")))
        .map(|j| serde_json::from_slice(&j).unwrap())
        .unwrap_or(Value::Null);
    (bin, json)
}

fn store_path(v: &Value) -> StorePath {
    StorePath::from_basename(v.as_str().unwrap().as_bytes()).unwrap()
}

fn sri(v: &Value) -> NixHash {
    NixHash::parse(v.as_str().unwrap(), None).unwrap()
}

fn ca(v: &Value) -> Option<ContentAddress> {
    if v.is_null() {
        return None;
    }
    let h = sri(&v["hash"]);
    Some(match v["method"].as_str().unwrap() {
        "text" => ContentAddress::Text(h),
        "flat" => ContentAddress::Flat(h),
        "nar" => ContentAddress::Nar(h),
        m => panic!("method {m}"),
    })
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn strings_and_store_paths() {
    for dir in ["common-protocol", "worker-protocol"] {
        let (bin, json) = vector(dir, "string");
        let mut w = WireWriter::new();
        let mut r = &bin[..];
        for s in json.as_array().unwrap() {
            w.string(s.as_str().unwrap());
            assert_eq!(wire::read_string(&mut r).await.unwrap(), s.as_str().unwrap());
        }
        assert_eq!(w.buf, bin, "{dir}/string");

        let (bin, json) = vector(dir, "store-path");
        let mut w = WireWriter::new();
        let mut r = &bin[..];
        for p in json.as_array().unwrap() {
            w.path(&store_path(p));
            assert_eq!(wire::read_path(&mut r).await.unwrap(), store_path(p));
        }
        assert_eq!(w.buf, bin, "{dir}/store-path");

        let (bin, json) = vector(dir, "optional-store-path");
        let mut w = WireWriter::new();
        let mut r = &bin[..];
        for p in json.as_array().unwrap() {
            let want = (!p.is_null()).then(|| store_path(p));
            w.opt_path(want.as_ref());
            assert_eq!(wire::read_opt_path(&mut r).await.unwrap(), want);
        }
        assert_eq!(w.buf, bin, "{dir}/optional-store-path");
    }
}

#[tokio::test]
async fn content_addresses() {
    for dir in ["common-protocol", "worker-protocol"] {
        for name in ["content-address", "optional-content-address"] {
            let (bin, json) = vector(dir, name);
            let mut w = WireWriter::new();
            let mut r = &bin[..];
            for v in json.as_array().unwrap() {
                let want = ca(v);
                w.string(&want.as_ref().map(|c| c.to_string()).unwrap_or_default());
                assert_eq!(parse_opt_ca(&wire::read_string(&mut r).await.unwrap()).unwrap(), want);
            }
            assert_eq!(w.buf, bin, "{dir}/{name}");
        }
    }
}

/// Lists and sets of strings, nested one level (`[[...], ...]`) or not.
#[tokio::test]
async fn lists_and_sets() {
    for dir in ["common-protocol", "worker-protocol"] {
        for name in ["set", "vector"] {
            let (bin, json) = vector(dir, name);
            let mut w = WireWriter::new();
            let mut r = &bin[..];
            for v in json.as_array().unwrap() {
                let items = v.as_array().unwrap();
                if items.first().is_some_and(Value::is_array) {
                    w.u64(items.len() as u64);
                    assert_eq!(wire::read_u64(&mut r).await.unwrap(), items.len() as u64);
                    for inner in items {
                        w.strings(strings(inner));
                        assert_eq!(wire::read_strings(&mut r).await.unwrap(), strings(inner));
                    }
                } else {
                    w.strings(strings(v));
                    assert_eq!(wire::read_strings(&mut r).await.unwrap(), strings(v));
                }
            }
            assert_eq!(w.buf, bin, "{dir}/{name}");
        }
    }
}

fn wire_info(v: &Value) -> WirePathInfo {
    WirePathInfo {
        deriver: (!v["deriver"].is_null()).then(|| store_path(&v["deriver"])),
        nar_hash: sri(&v["narHash"]),
        references: v["references"].as_array().unwrap().iter().map(store_path).collect(),
        registration_time: v["registrationTime"].as_u64().unwrap(),
        nar_size: v["narSize"].as_u64().unwrap(),
        ultimate: v["ultimate"].as_bool().unwrap(),
        sigs: v["signatures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| format!("{}:{}", s["keyName"].as_str().unwrap(), s["sig"].as_str().unwrap()))
            .collect(),
        ca: ca(&v["ca"]),
    }
}

#[tokio::test]
async fn path_infos() {
    for (name, version, keyed) in [
        ("valid-path-info-1.15", 0x10f, true),
        ("valid-path-info-1.16", 0x110, true),
        ("unkeyed-valid-path-info-1.15", 0x10f, false),
    ] {
        let (bin, json) = vector("worker-protocol", name);
        let mut w = WireWriter::new();
        let mut r = &bin[..];
        for v in json.as_array().unwrap() {
            let mut info = wire_info(v);
            if version < 0x110 {
                // not on the wire before 1.16
                (info.ultimate, info.sigs, info.ca) = (false, vec![], None);
            }
            if keyed {
                encode_path_info(&mut w, version, &store_path(&v["path"]), &info);
                let (p, got) = read_path_info(&mut r, version).await.unwrap();
                assert_eq!((p, got), (store_path(&v["path"]), info));
            } else {
                encode_unkeyed_path_info(&mut w, version, &info);
                assert_eq!(read_unkeyed_path_info(&mut r, version).await.unwrap(), info);
            }
        }
        assert_eq!(w.buf, bin, "{name}");
        assert!(r.is_empty());
    }
}

#[tokio::test]
async fn derived_paths() {
    let (bin, json) = vector("worker-protocol", "derived-path-1.30");
    let mut w = WireWriter::new();
    let mut r = &bin[..];
    for v in json.as_array().unwrap() {
        let want = match v {
            Value::String(_) => DerivedPath::Opaque(store_path(v)),
            _ => DerivedPath::Built { drv: store_path(&v["drvPath"]), outputs: strings(&v["outputs"]) },
        };
        w.string(&want.to_wire());
        assert_eq!(DerivedPath::parse(&wire::read_string(&mut r).await.unwrap()).unwrap(), want);
    }
    assert_eq!(w.buf, bin);
}

fn status_number(name: &str) -> u64 {
    let all = [
        "Built",
        "Substituted",
        "AlreadyValid",
        "PermanentFailure",
        "InputRejected",
        "OutputRejected",
        "TransientFailure",
        "CachedFailure",
        "TimedOut",
        "MiscFailure",
        "DependencyFailed",
        "LogLimitExceeded",
        "NotDeterministic",
        "ResolvesToAlreadyValid",
        "NoSubstituters",
    ];
    all.iter().position(|s| *s == name).unwrap() as u64
}

#[tokio::test]
async fn build_results() {
    for (name, version) in [
        ("build-result-1.27", 0x11b),
        ("build-result-1.28", 0x11c),
        ("build-result-1.29", 0x11d),
        ("build-result-1.37", 0x125),
    ] {
        let (bin, json) = vector("worker-protocol", name);
        let mut r = &bin[..];
        let mut w = WireWriter::new();
        for v in json.as_array().unwrap() {
            let b = read_build_result(&mut r, version).await.unwrap();
            assert_eq!(b.status, status_number(v["status"].as_str().unwrap()), "{name}");
            assert_eq!(b.error_msg, v["errorMsg"].as_str().unwrap_or(""), "{name}");
            if version >= 0x11d {
                assert_eq!(b.times_built, v["timesBuilt"].as_u64().unwrap(), "{name}");
                assert_eq!(b.start_time, v["startTime"].as_u64().unwrap(), "{name}");
                assert_eq!(b.stop_time, v["stopTime"].as_u64().unwrap(), "{name}");
            }
            if version >= 0x11c {
                let outs = v.get("builtOutputs").and_then(Value::as_object).map(|o| o.len()).unwrap_or(0);
                assert_eq!(b.built_outputs.len(), outs, "{name}");
            }
            encode_build_result(&mut w, version, &b);
        }
        assert!(r.is_empty(), "{name}: trailing bytes");
        assert_eq!(w.buf, bin, "{name}");
    }
}

#[tokio::test]
async fn build_modes_and_trust_flags() {
    let (bin, json) = vector("worker-protocol", "build-mode");
    let mut w = WireWriter::new();
    for v in json.as_array().unwrap() {
        w.u64(v.as_u64().unwrap());
    }
    assert_eq!(w.buf, bin);

    let (bin, json) = vector("worker-protocol", "optional-trusted-flag");
    let mut w = WireWriter::new();
    for v in json.as_array().unwrap() {
        let t = match v.as_bool() {
            None => Trust::Unknown,
            Some(true) => Trust::Trusted,
            Some(false) => Trust::NotTrusted,
        };
        w.u64(t as u64);
    }
    assert_eq!(w.buf, bin);
}

#[test]
fn handshake_pieces() {
    let (bin, _) = vector("worker-protocol", "handshake-to-client");
    assert_eq!(WireWriter::new().u64(WORKER_MAGIC_2).u64(0x10a).buf, bin);

    let (bin, _) = vector("worker-protocol", "client-handshake-info_1_30");
    let mut w = WireWriter::new();
    encode_client_handshake_info(&mut w, 0x11e, "foo", Trust::Unknown);
    assert_eq!(w.buf, bin);

    let (bin, _) = vector("worker-protocol", "client-handshake-info_1_33");
    let mut w = WireWriter::new();
    encode_client_handshake_info(&mut w, 0x121, "foo", Trust::Unknown);
    encode_client_handshake_info(&mut w, 0x121, "bar", Trust::Unknown);
    assert_eq!(w.buf, bin);

    let (bin, _) = vector("worker-protocol", "client-handshake-info_1_35");
    let mut w = WireWriter::new();
    encode_client_handshake_info(&mut w, 0x123, "foo", Trust::NotTrusted);
    encode_client_handshake_info(&mut w, 0x123, "bar", Trust::Trusted);
    assert_eq!(w.buf, bin);
}

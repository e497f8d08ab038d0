//! Any input: parsing never panics, and an accepted path prints back as itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nix_compat::store_path::StorePath;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = StorePath::from_absolute_path(data) {
        let printed = p.to_string();
        assert!(data == printed.as_bytes() || data == format!("{printed}/").as_bytes());
        assert_eq!(StorePath::from_basename(p.basename().as_bytes()).unwrap(), p);
    }
    if let Ok(p) = StorePath::from_basename(data) {
        assert_eq!(p.basename().as_bytes(), data);
    }
    let _ = StorePath::from_absolute_path_full(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = nix_compat::hash::NixHash::parse(s, None);
        let _ = s.parse::<nix_compat::ContentAddress>();
    }
});

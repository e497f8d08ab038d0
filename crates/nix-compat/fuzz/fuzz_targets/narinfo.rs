//! Any input: parsing never panics, and an accepted narinfo renders to text
//! that parses back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nix_compat::narinfo::NarInfo;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(ni) = NarInfo::parse(text) {
        let rendered = ni.to_string();
        let again = NarInfo::parse(&rendered).expect("our rendering must parse");
        assert_eq!(again, ni);
        let _ = ni.fingerprint();
    }
});

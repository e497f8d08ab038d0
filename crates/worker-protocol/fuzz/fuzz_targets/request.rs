//! Any bytes as an operation's arguments, at 1.21, 1.34 and 1.38 (the
//! first byte picks the version, the second the operation): decoding never
//! panics, never reads past its input, and asks for no more memory than the
//! input could describe (libFuzzer's -rss_limit_mb catches that).
#![no_main]

use libfuzzer_sys::fuzz_target;
use snix_worker_protocol::ops::read_request;

const VERSIONS: [u64; 3] = [0x115, 0x122, 0x126];

fuzz_target!(|data: &[u8]| {
    let [v, op, args @ ..] = data else { return };
    let version = VERSIONS[*v as usize % VERSIONS.len()];
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let mut input = args;
    let _ = rt.block_on(read_request(u64::from(*op), version, &mut input));
    assert!(input.len() <= args.len());
});

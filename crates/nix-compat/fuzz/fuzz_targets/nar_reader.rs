//! Any input: the decoder never panics, chunking does not change the outcome,
//! and a NAR it accepts re-encodes to exactly the input bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nix_compat::nar::{NarDecoder, NarEncoder, NarEvent};

fn run(data: &[u8], chunk: usize) -> Result<Vec<u8>, String> {
    let mut dec = NarDecoder::new();
    let mut enc = NarEncoder::new();
    let mut out = Vec::new();
    let mut pieces = data.chunks(chunk).peekable();
    let mut rest: &[u8] = pieces.next().unwrap_or(&[]);
    loop {
        let (n, ev) = dec.decode(rest).map_err(|e| e.to_string())?;
        rest = &rest[n..];
        match ev {
            Some(NarEvent::End) => {
                enc.encode(&NarEvent::End, &mut out).map_err(|e| e.to_string())?;
                if !rest.is_empty() || pieces.peek().is_some() {
                    return Err("trailing".into());
                }
                break;
            }
            Some(ev) => enc.encode(&ev, &mut out).map_err(|e| format!("encoder refused decoded event: {e}"))?,
            None if rest.is_empty() => match pieces.next() {
                Some(p) => rest = p,
                None => {
                    dec.finish().map_err(|e| e.to_string())?;
                    // a root directory's End arrives without more input
                    let (_, ev) = dec.decode(&[]).map_err(|e| e.to_string())?;
                    if ev == Some(NarEvent::End) {
                        continue;
                    }
                    return Err("no End".into());
                }
            },
            None => {}
        }
    }
    enc.finish().map_err(|e| e.to_string())?;
    Ok(out)
}

fuzz_target!(|data: &[u8]| {
    let chunk = 1 + data.first().copied().unwrap_or(0) as usize % 64;
    let whole = run(data, data.len().max(1));
    let chunked = run(data, chunk);
    assert_eq!(whole.is_ok(), chunked.is_ok(), "chunking changed the outcome");
    if let Ok(out) = whole {
        assert_eq!(out, data, "re-encoding an accepted NAR must give the same bytes");
    }
    let _ = nix_compat::nar::reader::validate(data);
});

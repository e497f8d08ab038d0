//! Nix's base-32 encoding ("nixbase32").
//!
//! Not RFC 4648: the alphabet omits `e o t u`, and the output is written
//! from the most significant 5-bit group of the little-endian bit string
//! first, so character k counted from the *end* holds bits `5k..5k+4`.

use thiserror::Error;

const ALPHABET: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";

/// Reverse lookup: byte → 5-bit value, 0xff for bytes outside the alphabet.
const DECODE: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 32 {
        t[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    t
};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum Nixbase32Error {
    #[error("invalid nixbase32 character {0:?}")]
    InvalidCharacter(char),
    #[error("nixbase32 string has length {got}, expected {expected}")]
    WrongLength { got: usize, expected: usize },
    #[error("nixbase32 string has non-zero bits beyond the encoded length")]
    NonZeroPadding,
}

/// Number of characters for `n` bytes: ceil(8n/5).
pub const fn encoded_len(n: usize) -> usize {
    (n * 8).div_ceil(5)
}

/// Number of bytes a string of `len` characters decodes to.
pub const fn decoded_len(len: usize) -> usize {
    len * 5 / 8
}

pub fn encode(input: &[u8]) -> String {
    let len = encoded_len(input.len());
    let mut out = Vec::with_capacity(len);
    for k in (0..len).rev() {
        let bit = k * 5;
        let (i, j) = (bit / 8, bit % 8);
        let lo = input[i] as u16 >> j;
        let hi = if i + 1 < input.len() { (input[i + 1] as u16) << (8 - j) } else { 0 };
        out.push(ALPHABET[((lo | hi) & 0x1f) as usize]);
    }
    // every byte comes from ALPHABET
    String::from_utf8(out).expect("alphabet is ASCII")
}

/// Decodes a nixbase32 string of any valid length.
pub fn decode(input: &[u8]) -> Result<Vec<u8>, Nixbase32Error> {
    let n = decoded_len(input.len());
    if encoded_len(n) != input.len() {
        return Err(Nixbase32Error::WrongLength { got: input.len(), expected: encoded_len(n) });
    }
    let mut out = vec![0u8; n];
    for (pos, &c) in input.iter().enumerate() {
        let digit = DECODE[c as usize];
        if digit == 0xff {
            return Err(Nixbase32Error::InvalidCharacter(c as char));
        }
        let k = input.len() - 1 - pos;
        let bit = k * 5;
        let (i, j) = (bit / 8, bit % 8);
        // bits that fall outside the output must be zero
        let lo = (digit as u16) << j;
        if i < n {
            out[i] |= lo as u8;
        } else if lo as u8 != 0 {
            return Err(Nixbase32Error::NonZeroPadding);
        }
        let hi = (lo >> 8) as u8;
        if i + 1 < n {
            out[i + 1] |= hi;
        } else if hi != 0 {
            return Err(Nixbase32Error::NonZeroPadding);
        }
    }
    Ok(out)
}

/// Decodes into a fixed-size array, checking the length.
pub fn decode_fixed<const N: usize>(input: &[u8]) -> Result<[u8; N], Nixbase32Error> {
    if input.len() != encoded_len(N) {
        return Err(Nixbase32Error::WrongLength { got: input.len(), expected: encoded_len(N) });
    }
    let v = decode(input)?;
    Ok(v.try_into().expect("length checked"))
}

/// Whether `c` is in the nixbase32 alphabet.
pub fn is_valid_char(c: u8) -> bool {
    DECODE[c as usize] != 0xff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // `nix hash to-base32 --type sha256` of the empty-string sha256
        let sha256_empty: [u8; 32] = [
            0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24, 0x27, 0xae,
            0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
        ];
        assert_eq!(encode(&sha256_empty), "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73");
        assert_eq!(encode(&[]), "");
        assert_eq!(encode(&[0x1f]), "0z");
        assert_eq!(encode(&[0xff]), "7z");
    }

    #[test]
    fn roundtrip_all_lengths() {
        for n in 0..70usize {
            let data: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            let s = encode(&data);
            assert_eq!(s.len(), encoded_len(n));
            assert_eq!(decode(s.as_bytes()).unwrap(), data);
        }
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(decode(b"0e"), Err(Nixbase32Error::InvalidCharacter('e')));
        // "7z" decodes to 0xff; "8z" would need a 9th bit
        assert_eq!(decode(b"8z"), Err(Nixbase32Error::NonZeroPadding));
        assert!(matches!(decode(b"000"), Err(Nixbase32Error::WrongLength { .. })));
        assert!(decode_fixed::<20>(b"00").is_err());
    }
}

//! ed25519 signatures over path fingerprints, with keys in Nix's file format
//! (`name:base64(secret 64 bytes)` / `name:base64(public 32 bytes)`).

use std::fmt;
use std::str::FromStr;

use data_encoding::BASE64;
use ed25519_dalek::{Signer, Verifier};
use thiserror::Error;

use crate::hash::NixHash;
use crate::store_path::StorePath;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SigningError {
    #[error("key or signature {0:?} lacks the 'name:' prefix")]
    MissingName(String),
    #[error("key or signature named {0:?} has an empty or invalid name")]
    BadName(String),
    #[error("{what} {name:?} is not valid base64")]
    BadBase64 { what: &'static str, name: String },
    #[error("{what} {name:?} has {got} bytes, expected {expected}")]
    WrongLength { what: &'static str, name: String, got: usize, expected: usize },
    #[error("secret key {0:?}: its public half does not match its seed")]
    InconsistentKey(String),
    #[error("public key {0:?} is not a valid ed25519 point")]
    BadPublicKey(String),
}

fn split_named<'a>(s: &'a str, what: &'static str, len: usize) -> Result<(&'a str, Vec<u8>), SigningError> {
    let s = s.trim();
    let (name, b64) = s.split_once(':').ok_or_else(|| SigningError::MissingName(s.chars().take(40).collect()))?;
    if !valid_name(name) {
        return Err(SigningError::BadName(name.to_string()));
    }
    let bytes = BASE64.decode(b64.as_bytes()).map_err(|_| SigningError::BadBase64 { what, name: name.into() })?;
    if bytes.len() != len {
        return Err(SigningError::WrongLength { what, name: name.into(), got: bytes.len(), expected: len });
    }
    Ok((name, bytes))
}

/// A key name as Nix writes it before the `:`: not empty, no whitespace or
/// control characters (and, being before the first `:`, no `:`).
fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(|c: char| c.is_whitespace() || c.is_control() || c == ':')
}

/// `1;<path>;<narHash sha256:nix32>;<narSize>;<comma-separated sorted reference paths>`
pub fn fingerprint<'a>(
    path: &StorePath,
    nar_hash: &NixHash,
    nar_size: u64,
    references: impl IntoIterator<Item = &'a StorePath>,
) -> String {
    let mut refs: Vec<String> = references.into_iter().map(|r| r.to_absolute_path()).collect();
    refs.sort();
    format!("1;{path};{};{nar_size};{}", nar_hash.to_nix32_prefixed(), refs.join(","))
}

/// A signature: `keyname:base64(64 bytes)`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Signature {
    pub name: String,
    pub bytes: [u8; 64],
}

impl Signature {
    /// Whether its text form `name:base64` parses back as itself: a
    /// signature built from other sources (a database, a gRPC peer) may have
    /// a name that does not.
    pub fn is_well_formed(&self) -> bool {
        valid_name(&self.name)
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, BASE64.encode(&self.bytes))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({self})")
    }
}

impl FromStr for Signature {
    type Err = SigningError;
    fn from_str(s: &str) -> Result<Self, SigningError> {
        let (name, bytes) = split_named(s, "signature", 64)?;
        Ok(Signature { name: name.to_string(), bytes: bytes.try_into().expect("length checked") })
    }
}

serde_via_text!(Signature);

/// A secret key as `nix-store --generate-binary-cache-key` writes it.
pub struct SigningKey {
    pub name: String,
    key: ed25519_dalek::SigningKey,
}

impl SigningKey {
    pub fn generate(name: &str) -> Self {
        let key = ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng);
        SigningKey { name: name.to_string(), key }
    }

    pub fn sign(&self, fingerprint: &str) -> Signature {
        Signature { name: self.name.clone(), bytes: self.key.sign(fingerprint.as_bytes()).to_bytes() }
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey { name: self.name.clone(), key: self.key.verifying_key() }
    }
}

impl FromStr for SigningKey {
    type Err = SigningError;
    fn from_str(s: &str) -> Result<Self, SigningError> {
        let (name, bytes) = split_named(s, "secret key", 64)?;
        let seed: [u8; 32] = bytes[..32].try_into().expect("length checked");
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        if key.verifying_key().as_bytes() != &bytes[32..] {
            return Err(SigningError::InconsistentKey(name.to_string()));
        }
        Ok(SigningKey { name: name.to_string(), key })
    }
}

impl fmt::Display for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, BASE64.encode(&self.key.to_keypair_bytes()))
    }
}

/// A public key: `name:base64(32 bytes)`.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    pub name: String,
    key: ed25519_dalek::VerifyingKey,
}

impl VerifyingKey {
    /// Whether `sig` is this key's valid signature of `fingerprint`.
    pub fn verify(&self, fingerprint: &str, sig: &Signature) -> bool {
        sig.name == self.name
            && self.key.verify(fingerprint.as_bytes(), &ed25519_dalek::Signature::from_bytes(&sig.bytes)).is_ok()
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyingKey({self})")
    }
}

impl fmt::Display for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, BASE64.encode(self.key.as_bytes()))
    }
}

impl FromStr for VerifyingKey {
    type Err = SigningError;
    fn from_str(s: &str) -> Result<Self, SigningError> {
        let (name, bytes) = split_named(s, "public key", 32)?;
        let arr: [u8; 32] = bytes.try_into().expect("length checked");
        let key = ed25519_dalek::VerifyingKey::from_bytes(&arr).map_err(|_| SigningError::BadPublicKey(name.into()))?;
        Ok(VerifyingKey { name: name.to_string(), key })
    }
}

/// Whether any of `keys` made a valid one of `sigs` over `fingerprint`.
pub fn any_valid<'a>(keys: &[VerifyingKey], fingerprint: &str, sigs: impl IntoIterator<Item = &'a Signature>) -> bool {
    sigs.into_iter().any(|s| keys.iter().any(|k| k.verify(fingerprint, s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key pair, path and signature made by Nix 2.8 (`nix-store
    /// --generate-binary-cache-key`, `nix store sign`, `nix copy --to file://`).
    const SK: &str = "test1:g+j4HdPSyHEx4Ygri98BuQafo0n7gUGh++1HqAhQ6U0dMCN+9nW5gZVDgwvDgAynH6Y0GQnnXile07/JGN1+ZQ==";
    const PK: &str = "test1:HTAjfvZ1uYGVQ4MLw4AMpx+mNBkJ514pXtO/yRjdfmU=";
    const SIG: &str = "test1:z++rxEFDD0eBLH/jYy91x5wSRPmmaleNGK7syNPrKAV6cayQjLj1Eb3lpnTXK1m1r96BD4h9CqDRDB2nC6NSCA==";

    fn fp() -> String {
        let p: StorePath = "/nix/store/wipdr80wxxrlc00qzxc0qi5s6wwdkais-t1".parse().unwrap();
        let h = NixHash::parse("sha256:19l59z9nbs59axnhw6iqsz5bdagqb22kf0dp2zhkiq5m4b6k5247", None).unwrap();
        fingerprint(&p, &h, 288, [])
    }

    #[test]
    fn nix_made_signature_verifies_and_ours_is_identical() {
        let sk: SigningKey = SK.parse().unwrap();
        let pk: VerifyingKey = PK.parse().unwrap();
        assert_eq!(sk.verifying_key(), pk);
        assert_eq!(sk.to_string(), SK);
        assert_eq!(pk.to_string(), PK);
        let sig: Signature = SIG.parse().unwrap();
        assert!(pk.verify(&fp(), &sig));
        // ed25519 is deterministic: our signature must be byte-identical
        assert_eq!(sk.sign(&fp()), sig);
        assert!(!pk.verify(&(fp() + "x"), &sig));
    }

    #[test]
    fn rejects_bad_keys() {
        assert!(matches!("nocolon".parse::<VerifyingKey>(), Err(SigningError::MissingName(_))));
        assert!(matches!("k:!!!".parse::<VerifyingKey>(), Err(SigningError::BadBase64 { .. })));
        assert!(matches!("k:AAAA".parse::<VerifyingKey>(), Err(SigningError::WrongLength { .. })));
        let mut bad = SK.to_string();
        bad.replace_range(bad.len() - 6..bad.len() - 2, "AAAA");
        assert!(matches!(bad.parse::<SigningKey>(), Err(SigningError::InconsistentKey(_))));
    }

    #[test]
    fn only_names_that_print_back_are_well_formed() {
        let sig: Signature = SIG.parse().unwrap();
        assert!(sig.is_well_formed());
        for bad in ["", "a:b", "with space", "tab\there", "nl\n"] {
            let s = Signature { name: bad.into(), bytes: sig.bytes };
            assert!(!s.is_well_formed(), "{bad:?}");
            // and its text form indeed does not parse back as itself
            assert_ne!(s.to_string().parse::<Signature>().ok(), Some(s.clone()), "{bad:?}");
        }
    }
}

//! PathInfo: what the store knows about one store path — its root node in the
//! castore, references, NAR hash and size, signatures, deriver, content
//! address — and its validation against the wire form.

use bytes::Bytes;
use nix_compat::content_address::ContentAddress;
use nix_compat::hash::{HashAlgo, NixHash};
use nix_compat::path_info_json::PathInfoJson;
use nix_compat::signing::{fingerprint, Signature};
use nix_compat::store_path::StorePath;
use snix_castore::{directory::DirectoryError, Node};
use thiserror::Error;

use crate::proto;
use crate::proto::nar_info::ca::Hash as CaHash;

#[derive(Debug, Error, PartialEq, Eq, Clone)]
pub enum PathInfoError {
    #[error("PathInfo has no root node")]
    MissingEntry,
    #[error("root node: {0}")]
    InvalidNode(#[from] DirectoryError),
    #[error("root node name {0:?} is not a store path basename: {1}")]
    InvalidName(String, String),
    #[error("PathInfo has no narinfo")]
    MissingNarInfo,
    #[error("nar_sha256 has {0} bytes, expected 32")]
    InvalidNarSha256(usize),
    #[error("reference #{0} has {1} bytes, expected 20")]
    InvalidReferenceDigest(usize, usize),
    #[error("{0} references but {1} reference names")]
    ReferenceCountMismatch(usize, usize),
    #[error("reference name {0:?}: {1}")]
    InvalidReferenceName(String, String),
    #[error("reference name {0:?} does not match its digest")]
    ReferenceDigestMismatch(String),
    #[error("signature #{0}: {1}")]
    InvalidSignature(usize, String),
    #[error("deriver: {0}")]
    InvalidDeriver(String),
    #[error("content address: {0}")]
    InvalidCa(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathInfo {
    pub store_path: StorePath,
    pub node: Node,
    pub references: Vec<StorePath>,
    pub nar_size: u64,
    pub nar_sha256: [u8; 32],
    pub signatures: Vec<Signature>,
    pub deriver: Option<StorePath>,
    pub ca: Option<ContentAddress>,
}

impl PathInfo {
    pub fn nar_hash(&self) -> NixHash {
        NixHash::sha256(self.nar_sha256)
    }

    /// The fingerprint signatures are made over.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.store_path, &self.nar_hash(), self.nar_size, &self.references)
    }

    /// The signatures whose text form Nix parses back as themselves; any
    /// other (it can only come from a database or a peer that did not check
    /// it) is left out with a warning, never handed to a client.
    pub fn well_formed_signatures(&self) -> Vec<Signature> {
        self.signatures
            .iter()
            .filter(|s| {
                let ok = s.is_well_formed();
                if !ok {
                    tracing::warn!(path = %self.store_path, key = ?s.name, "dropping a malformed signature");
                }
                ok
            })
            .cloned()
            .collect()
    }

    /// As `nix path-info --json` shows it (references sorted; this store
    /// keeps no registration time and no `ultimate` flag).
    pub fn to_json(&self) -> PathInfoJson {
        let mut references = self.references.clone();
        references.sort_by_cached_key(StorePath::to_string);
        PathInfoJson {
            nar_hash: self.nar_hash(),
            nar_size: self.nar_size,
            references,
            ca: self.ca.clone(),
            closure_size: None,
            deriver: self.deriver.clone(),
            registration_time: None,
            ultimate: false,
            signatures: self.well_formed_signatures(),
        }
    }

    pub fn to_proto(&self) -> proto::PathInfo {
        proto::PathInfo {
            entry: Some(self.node.to_entry(Bytes::from(self.store_path.basename()))),
            references: self.references.iter().map(|r| Bytes::copy_from_slice(r.digest())).collect(),
            narinfo: Some(proto::NarInfo {
                nar_size: self.nar_size,
                nar_sha256: Bytes::copy_from_slice(&self.nar_sha256),
                signatures: self
                    .signatures
                    .iter()
                    .map(|s| proto::nar_info::Signature {
                        name: s.name.clone(),
                        data: Bytes::copy_from_slice(&s.bytes),
                    })
                    .collect(),
                reference_names: self.references.iter().map(|r| r.basename()).collect(),
                deriver: self.deriver.as_ref().map(|d| proto::StorePath {
                    name: d.name().to_string(),
                    digest: Bytes::copy_from_slice(d.digest()),
                }),
                ca: self.ca.as_ref().map(ca_to_proto),
            }),
        }
    }
}

fn ca_to_proto(ca: &ContentAddress) -> proto::nar_info::Ca {
    let t = match (ca, ca.hash().algo()) {
        (ContentAddress::Nar(_), HashAlgo::Sha256) => CaHash::NarSha256,
        (ContentAddress::Nar(_), HashAlgo::Sha1) => CaHash::NarSha1,
        (ContentAddress::Nar(_), HashAlgo::Sha512) => CaHash::NarSha512,
        (ContentAddress::Nar(_), HashAlgo::Md5) => CaHash::NarMd5,
        (ContentAddress::Text(_), _) => CaHash::TextSha256,
        (ContentAddress::Flat(_), HashAlgo::Sha1) => CaHash::FlatSha1,
        (ContentAddress::Flat(_), HashAlgo::Md5) => CaHash::FlatMd5,
        (ContentAddress::Flat(_), HashAlgo::Sha256) => CaHash::FlatSha256,
        (ContentAddress::Flat(_), HashAlgo::Sha512) => CaHash::FlatSha512,
    };
    proto::nar_info::Ca { r#type: t as i32, digest: Bytes::copy_from_slice(ca.hash().digest()) }
}

fn ca_from_proto(ca: &proto::nar_info::Ca) -> Result<ContentAddress, PathInfoError> {
    let t = CaHash::try_from(ca.r#type).map_err(|_| PathInfoError::InvalidCa(format!("unknown type {}", ca.r#type)))?;
    let (algo, wrap): (HashAlgo, fn(NixHash) -> ContentAddress) = match t {
        CaHash::NarSha256 => (HashAlgo::Sha256, ContentAddress::Nar),
        CaHash::NarSha1 => (HashAlgo::Sha1, ContentAddress::Nar),
        CaHash::NarSha512 => (HashAlgo::Sha512, ContentAddress::Nar),
        CaHash::NarMd5 => (HashAlgo::Md5, ContentAddress::Nar),
        CaHash::TextSha256 => (HashAlgo::Sha256, ContentAddress::Text),
        CaHash::FlatSha1 => (HashAlgo::Sha1, ContentAddress::Flat),
        CaHash::FlatMd5 => (HashAlgo::Md5, ContentAddress::Flat),
        CaHash::FlatSha256 => (HashAlgo::Sha256, ContentAddress::Flat),
        CaHash::FlatSha512 => (HashAlgo::Sha512, ContentAddress::Flat),
    };
    let h = NixHash::from_digest(algo, &ca.digest).map_err(|e| PathInfoError::InvalidCa(e.to_string()))?;
    Ok(wrap(h))
}

impl TryFrom<proto::PathInfo> for PathInfo {
    type Error = PathInfoError;

    fn try_from(p: proto::PathInfo) -> Result<Self, PathInfoError> {
        let entry = p.entry.ok_or(PathInfoError::MissingEntry)?;
        let (name, node) = Node::from_entry(&entry)?;
        let store_path = StorePath::from_basename(&name)
            .map_err(|e| PathInfoError::InvalidName(String::from_utf8_lossy(&name).into_owned(), e.to_string()))?;
        let ni = p.narinfo.ok_or(PathInfoError::MissingNarInfo)?;
        let nar_sha256: [u8; 32] =
            ni.nar_sha256[..].try_into().map_err(|_| PathInfoError::InvalidNarSha256(ni.nar_sha256.len()))?;
        if p.references.len() != ni.reference_names.len() {
            return Err(PathInfoError::ReferenceCountMismatch(p.references.len(), ni.reference_names.len()));
        }
        let mut references = Vec::with_capacity(p.references.len());
        for (i, (digest, name)) in p.references.iter().zip(&ni.reference_names).enumerate() {
            if digest.len() != 20 {
                return Err(PathInfoError::InvalidReferenceDigest(i, digest.len()));
            }
            let r = StorePath::from_basename(name.as_bytes())
                .map_err(|e| PathInfoError::InvalidReferenceName(name.clone(), e.to_string()))?;
            if r.digest()[..] != digest[..] {
                return Err(PathInfoError::ReferenceDigestMismatch(name.clone()));
            }
            references.push(r);
        }
        let signatures = ni
            .signatures
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let bytes: [u8; 64] = s.data[..]
                    .try_into()
                    .map_err(|_| PathInfoError::InvalidSignature(i, format!("{} bytes, expected 64", s.data.len())))?;
                if s.name.is_empty() {
                    return Err(PathInfoError::InvalidSignature(i, "empty key name".into()));
                }
                Ok(Signature { name: s.name.clone(), bytes })
            })
            .collect::<Result<_, _>>()?;
        let deriver = ni
            .deriver
            .map(|d| {
                let digest: [u8; 20] = d.digest[..]
                    .try_into()
                    .map_err(|_| PathInfoError::InvalidDeriver(format!("digest has {} bytes", d.digest.len())))?;
                if !d.name.ends_with(".drv") {
                    return Err(PathInfoError::InvalidDeriver(format!("{:?} does not end in .drv", d.name)));
                }
                StorePath::from_parts(digest, &d.name).map_err(|e| PathInfoError::InvalidDeriver(e.to_string()))
            })
            .transpose()?;
        let ca = ni.ca.as_ref().map(ca_from_proto).transpose()?;
        Ok(PathInfo { store_path, node, references, nar_size: ni.nar_size, nar_sha256, signatures, deriver, ca })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use snix_castore::B3Digest;

    fn sample() -> PathInfo {
        PathInfo {
            store_path: "/nix/store/g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q-foo".parse().unwrap(),
            node: Node::File { digest: B3Digest::of(b"x"), size: 1, executable: false },
            references: vec!["/nix/store/n5wkd9frr45pa74if5gpz9j7mifg27fh-bar".parse().unwrap()],
            nar_size: 120,
            nar_sha256: [3; 32],
            signatures: vec![Signature { name: "k".into(), bytes: [9; 64] }],
            deriver: Some("/nix/store/g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q-foo.drv".parse().unwrap()),
            ca: Some(ContentAddress::Flat(NixHash::compute(HashAlgo::Sha1, b"x"))),
        }
    }

    #[test]
    fn malformed_signatures_are_never_handed_out() {
        let mut pi = sample();
        let good = pi.signatures[0].clone();
        pi.signatures.push(Signature { name: "has:colon".into(), bytes: [7; 64] });
        pi.signatures.push(Signature { name: "white space".into(), bytes: [8; 64] });
        // such names survive the wire form (a database or a peer may hold them)
        assert_eq!(PathInfo::try_from(pi.to_proto()).unwrap(), pi);
        assert_eq!(pi.well_formed_signatures(), vec![good.clone()]);
        assert_eq!(pi.to_json().signatures, vec![good]);
    }

    #[test]
    fn roundtrip() {
        let pi = sample();
        assert_eq!(PathInfo::try_from(pi.to_proto()).unwrap(), pi);
        let mut no_extras = sample();
        no_extras.deriver = None;
        no_extras.ca = None;
        no_extras.signatures.clear();
        assert_eq!(PathInfo::try_from(no_extras.to_proto()).unwrap(), no_extras);
    }

    #[test]
    fn rejects_invalid() {
        let check = |f: fn(&mut proto::PathInfo)| {
            let mut p = sample().to_proto();
            f(&mut p);
            PathInfo::try_from(p).unwrap_err()
        };
        assert_eq!(check(|p| p.entry = None), PathInfoError::MissingEntry);
        assert!(matches!(
            check(|p| p.entry = Some(Node::Symlink { target: "t".into() }.to_entry("not-a-store-path".into()))),
            PathInfoError::InvalidName(..)
        ));
        assert!(matches!(
            check(|p| p.narinfo.as_mut().unwrap().nar_sha256 = Bytes::new()),
            PathInfoError::InvalidNarSha256(0)
        ));
        assert!(matches!(
            check(|p| p.references[0] = Bytes::from_static(&[1; 19])),
            PathInfoError::InvalidReferenceDigest(0, 19)
        ));
        assert!(matches!(
            check(|p| p.references[0] = Bytes::from_static(&[1; 20])),
            PathInfoError::ReferenceDigestMismatch(_)
        ));
        assert!(matches!(
            check(|p| p.narinfo.as_mut().unwrap().reference_names.clear()),
            PathInfoError::ReferenceCountMismatch(1, 0)
        ));
        assert!(matches!(
            check(|p| p.narinfo.as_mut().unwrap().deriver.as_mut().unwrap().name = "foo".into()),
            PathInfoError::InvalidDeriver(_)
        ));
        assert!(matches!(
            check(|p| p.narinfo.as_mut().unwrap().signatures[0].data = Bytes::from_static(&[0; 10])),
            PathInfoError::InvalidSignature(0, _)
        ));
        assert!(matches!(
            check(|p| p.narinfo.as_mut().unwrap().ca.as_mut().unwrap().r#type = 99),
            PathInfoError::InvalidCa(_)
        ));
    }
}

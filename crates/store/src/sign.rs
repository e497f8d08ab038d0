//! Signing registered paths with a Nix secret key (`snix-store sign`): the
//! key's signature over each path's fingerprint is added to its path info,
//! where the nix-daemon (`nix path-info --sigs`) and nar-bridge (narinfo
//! `Sig:`) serve it.

use std::collections::{HashSet, VecDeque};

use nix_compat::signing::SigningKey;
use nix_compat::store_path::StorePath;

use crate::pathinfoservice::{get_path, PathInfoService};
use crate::Error;

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("path '{0}' is not valid")]
    NotValid(StorePath),
    #[error(transparent)]
    Store(#[from] Error),
}

/// What signing did to one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub store_path: StorePath,
    /// False when the path already had this signature.
    pub added: bool,
}

/// Adds `key`'s signature to each of `paths` (with `recursive`, to every
/// path of their closures), once. Stops at the first path not registered,
/// having signed those before it.
pub async fn sign_paths(
    infos: &dyn PathInfoService,
    key: &SigningKey,
    paths: &[StorePath],
    recursive: bool,
) -> Result<Vec<Signed>, SignError> {
    let mut queue: VecDeque<StorePath> = paths.iter().cloned().collect();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    while let Some(p) = queue.pop_front() {
        if !seen.insert(p.clone()) {
            continue;
        }
        let mut info = get_path(infos, &p).await?.ok_or_else(|| SignError::NotValid(p.clone()))?;
        if recursive {
            queue.extend(info.references.iter().filter(|r| !seen.contains(*r)).cloned());
        }
        let sig = key.sign(&info.fingerprint());
        let added = !info.signatures.contains(&sig);
        if added {
            info.signatures.push(sig);
            infos.put(info).await?;
        }
        out.push(Signed { store_path: p, added });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pathinfoservice::MemoryPathInfoService;
    use crate::PathInfo;
    use snix_castore::Node;

    fn info(n: u8, references: Vec<StorePath>) -> PathInfo {
        PathInfo {
            store_path: StorePath::from_parts([n; 20], &format!("p{n}")).unwrap(),
            node: Node::Symlink { target: format!("target-{n}").into() },
            references,
            nar_size: 100,
            nar_sha256: [n; 32],
            signatures: vec![],
            deriver: None,
            ca: None,
        }
    }

    #[tokio::test]
    async fn signs_closures_once_and_refuses_unknown_paths() {
        let infos = MemoryPathInfoService::default();
        let dep = info(1, vec![]);
        let top = info(2, vec![dep.store_path.clone()]);
        infos.put(dep.clone()).await.unwrap();
        infos.put(top.clone()).await.unwrap();
        let key = SigningKey::generate("test-1");

        let signed = sign_paths(&infos, &key, std::slice::from_ref(&top.store_path), false).await.unwrap();
        assert_eq!(signed, vec![Signed { store_path: top.store_path.clone(), added: true }]);
        let dep_now = infos.get(*dep.store_path.digest()).await.unwrap().unwrap();
        assert!(dep_now.signatures.is_empty(), "signed a reference without --recursive");

        let signed = sign_paths(&infos, &key, std::slice::from_ref(&top.store_path), true).await.unwrap();
        let added: Vec<bool> = signed.iter().map(|s| s.added).collect();
        assert_eq!(added, vec![false, true], "{signed:?}");
        for p in [&top, &dep] {
            let i = infos.get(*p.store_path.digest()).await.unwrap().unwrap();
            assert_eq!(i.signatures.len(), 1);
            assert!(key.verifying_key().verify(&i.fingerprint(), &i.signatures[0]));
        }

        let unknown = info(3, vec![]).store_path;
        assert!(matches!(
            sign_paths(&infos, &key, std::slice::from_ref(&unknown), false).await,
            Err(SignError::NotValid(p)) if p == unknown
        ));
    }
}

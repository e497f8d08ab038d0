//! The closure description `exportReferencesGraph` writes (and structured-attrs
//! builds see under a key of `NIX_ATTRS_JSON_FILE`): a JSON list of
//! `{ path, narHash, narSize, references, closureSize? }`.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::store_path::StorePath;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClosureEntry {
    pub path: StorePath,
    /// As Nix writes it: `sha256:<nix32>` (any text form is accepted on input).
    pub nar_hash: String,
    pub nar_size: u64,
    pub references: Vec<StorePath>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closure_size: Option<u64>,
}

#[derive(Debug, Error)]
pub enum ClosureError {
    #[error("closure JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("closure JSON: no list under key {0:?}")]
    MissingKey(String),
    #[error("closure JSON: {path} refers to {reference}, which is not in the closure")]
    Incomplete { path: StorePath, reference: StorePath },
    #[error("closure JSON: reference cycle through {0}")]
    Cycle(StorePath),
}

/// Parses a closure: either a bare list, or an object (structured attrs) holding
/// the list under `key`.
pub fn parse_closure(json: &[u8], key: &str) -> Result<Vec<ClosureEntry>, ClosureError> {
    let v: serde_json::Value = serde_json::from_slice(json)?;
    let list = match v {
        serde_json::Value::Array(_) => v,
        serde_json::Value::Object(mut m) => m.remove(key).ok_or_else(|| ClosureError::MissingKey(key.to_string()))?,
        _ => return Err(ClosureError::MissingKey(key.to_string())),
    };
    Ok(serde_json::from_value(list)?)
}

/// Orders entries so every path comes after all it refers to (self-references
/// aside), checking the closure is complete.
pub fn dependencies_first(entries: Vec<ClosureEntry>) -> Result<Vec<ClosureEntry>, ClosureError> {
    let index: HashMap<StorePath, usize> = entries.iter().enumerate().map(|(i, e)| (e.path.clone(), i)).collect();
    for e in &entries {
        for r in &e.references {
            if !index.contains_key(r) {
                return Err(ClosureError::Incomplete { path: e.path.clone(), reference: r.clone() });
            }
        }
    }
    // iterative DFS post-order; `on_stack` detects cycles
    let mut order = Vec::with_capacity(entries.len());
    let mut done = HashSet::new();
    let mut on_stack = HashSet::new();
    for start in 0..entries.len() {
        if done.contains(&start) {
            continue;
        }
        let mut stack = vec![(start, 0usize)];
        on_stack.insert(start);
        while let Some((i, next_ref)) = stack.pop() {
            let refs = &entries[i].references;
            if next_ref < refs.len() {
                stack.push((i, next_ref + 1));
                let j = index[&refs[next_ref]];
                if j == i || done.contains(&j) {
                    continue;
                }
                if !on_stack.insert(j) {
                    return Err(ClosureError::Cycle(entries[j].path.clone()));
                }
                stack.push((j, 0));
            } else {
                on_stack.remove(&i);
                done.insert(i);
                order.push(i);
            }
        }
    }
    let mut slots: Vec<Option<ClosureEntry>> = entries.into_iter().map(Some).collect();
    Ok(order.into_iter().map(|i| slots[i].take().expect("each once")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "/nix/store/g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q-a";
    const B: &str = "/nix/store/n5wkd9frr45pa74if5gpz9j7mifg27fh-b";

    #[test]
    fn parse_and_order() {
        let json = format!(
            r#"{{"closure":[{{"path":"{A}","narHash":"sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73","narSize":8,"references":["{A}","{B}"]}},
            {{"path":"{B}","narHash":"sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73","narSize":8,"references":[]}}]}}"#
        );
        let entries = parse_closure(json.as_bytes(), "closure").unwrap();
        let ordered = dependencies_first(entries).unwrap();
        assert_eq!(ordered[0].path.to_string(), B);
        assert_eq!(ordered[1].path.to_string(), A);
        assert!(matches!(parse_closure(json.as_bytes(), "other"), Err(ClosureError::MissingKey(_))));
    }

    #[test]
    fn incomplete_and_cycles() {
        let e = |p: &str, r: &[&str]| ClosureEntry {
            path: p.parse().unwrap(),
            nar_hash: String::new(),
            nar_size: 0,
            references: r.iter().map(|s| s.parse().unwrap()).collect(),
            closure_size: None,
        };
        assert!(matches!(dependencies_first(vec![e(A, &[B])]), Err(ClosureError::Incomplete { .. })));
        assert!(matches!(dependencies_first(vec![e(A, &[B]), e(B, &[A])]), Err(ClosureError::Cycle(_))));
    }
}

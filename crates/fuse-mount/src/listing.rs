//! The order the mount's root lists store paths in: every path before the
//! paths it refers to (referrers first), ties by name. Pure.
//!
//! Nix's local-overlay store (2.34) collects garbage walking the store
//! directory in its listing order, and that overlay lists the lower layer's
//! entries first, in our order. When a path is reached after one it refers
//! to was collected, Nix copies its metadata up with a reference it has
//! already invalidated and fails ("path '…' is not valid"): see
//! docs/local-overlay-gc-order.md. Listing referrers first keeps every
//! path's reference alive until the path itself has been dealt with.

use std::collections::{BTreeSet, HashMap};

/// `paths` as (name, names it refers to) in listing order: a path comes
/// before every path it refers to; among paths free to come next, the
/// smallest name first. References to paths not in `paths`, and a path's
/// reference to itself, are ignored. (Store paths cannot form a cycle; if
/// the data has one anyway, the paths on it come last, by name.)
pub fn referrers_first<N: Ord + Clone + std::hash::Hash>(paths: &[(N, Vec<N>)]) -> Vec<usize> {
    let index: HashMap<&N, usize> = paths.iter().enumerate().map(|(i, (n, _))| (n, i)).collect();
    // in_degree[i]: how many listed paths refer to i
    let mut in_degree = vec![0usize; paths.len()];
    let mut refers_to: Vec<Vec<usize>> = Vec::with_capacity(paths.len());
    for (i, (_, refs)) in paths.iter().enumerate() {
        let mut targets: Vec<usize> = refs.iter().filter_map(|r| index.get(r).copied()).filter(|&t| t != i).collect();
        targets.sort_unstable();
        targets.dedup();
        for &t in &targets {
            in_degree[t] += 1;
        }
        refers_to.push(targets);
    }
    let mut ready: BTreeSet<(&N, usize)> =
        (0..paths.len()).filter(|&i| in_degree[i] == 0).map(|i| (&paths[i].0, i)).collect();
    let mut order = Vec::with_capacity(paths.len());
    while let Some(first) = ready.pop_first() {
        let i = first.1;
        order.push(i);
        for &t in &refers_to[i] {
            in_degree[t] -= 1;
            if in_degree[t] == 0 {
                ready.insert((&paths[t].0, t));
            }
        }
    }
    if order.len() < paths.len() {
        let mut rest: Vec<usize> = (0..paths.len()).filter(|&i| in_degree[i] > 0).collect();
        rest.sort_by(|&a, &b| paths[a].0.cmp(&paths[b].0));
        order.extend(rest);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(paths: &[(&'static str, Vec<&'static str>)]) -> Vec<&'static str> {
        referrers_first(paths).into_iter().map(|i| paths[i].0).collect()
    }

    #[test]
    fn referrers_come_before_what_they_refer_to() {
        // a -> b -> c, d -> c, e alone; x refers to itself and to an unlisted path
        let paths = vec![
            ("c", vec![]),
            ("b", vec!["c"]),
            ("e", vec![]),
            ("a", vec!["b", "c"]),
            ("d", vec!["c", "not-listed"]),
            ("x", vec!["x"]),
        ];
        assert_eq!(names(&paths), vec!["a", "b", "d", "c", "e", "x"]);
    }

    #[test]
    fn every_path_exactly_once_even_on_a_cycle() {
        let paths = vec![("p", vec!["q"]), ("q", vec!["p"]), ("r", vec!["p"])];
        assert_eq!(names(&paths), vec!["r", "p", "q"]);
        assert!(names(&[]).is_empty());
    }
}

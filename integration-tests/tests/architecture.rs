//! ARCHITECTURE.md against the tree, file for file: every file git knows
//! (but crate manifests) is named in the code map — by its path from the
//! section's directory (or that directory's `src/`), or under a directory
//! named there — and every path the code map names exists.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Files git tracks or would track (new, not ignored).
fn files(repo: &Path) -> Vec<String> {
    let out = Command::new("git")
        .args(["ls-files", "--cached", "--others", "--exclude-standard"])
        .current_dir(repo)
        .output()
        .expect("running git");
    assert!(out.status.success(), "git ls-files: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|f| repo.join(f).exists()) // deleted but not yet staged
        .map(str::to_string)
        .collect()
}

/// A section of the code map: the directory its heading names, and the
/// backticked names in its text.
struct Section {
    heading: String,
    dir: String,
    names: Vec<String>,
}

fn backticked(text: &str) -> Vec<String> {
    text.split('`').skip(1).step_by(2).map(str::to_string).collect()
}

/// Whether a backticked name is meant as a path in the tree.
fn path_like(name: &str) -> bool {
    !name.contains(char::is_whitespace)
        && !name.contains("://")
        && !name.contains('<')
        && !name.starts_with('-')
        && (name.contains('/')
            || name.starts_with('.')
            || [".rs", ".nix", ".sh", ".proto", ".md", ".toml", ".lock", ".yaml"].iter().any(|e| name.ends_with(e)))
}

fn sections(doc: &str) -> Vec<Section> {
    let map = doc.split("\n## Code map\n").nth(1).expect("ARCHITECTURE.md has a `## Code map`");
    map.split("\n### ")
        .skip(1)
        .map(|s| {
            let (heading, body) = s.split_once('\n').unwrap_or((s, ""));
            // the heading's first backticked name is the directory; "Top level": the root
            let dir = backticked(heading).into_iter().next().unwrap_or_default();
            Section {
                heading: heading.to_string(),
                dir: dir.trim_end_matches('/').to_string(),
                names: backticked(body),
            }
        })
        .collect()
}

/// What a name in `section` may denote, from the repository root.
fn candidates(section: &Section, name: &str) -> Vec<String> {
    let name = name.trim_end_matches('/');
    let mut out = vec![name.to_string()];
    if !section.dir.is_empty() {
        out.push(format!("{}/{name}", section.dir));
        out.push(format!("{}/src/{name}", section.dir));
    }
    out
}

#[test]
fn the_code_map_names_every_file_and_only_files_that_exist() {
    let repo = repo();
    let doc = std::fs::read_to_string(repo.join("ARCHITECTURE.md")).unwrap();
    let sections = sections(&doc);
    assert!(sections.len() >= 8, "{} code map sections", sections.len());

    let mut missing_names = Vec::new();
    let mut named: BTreeSet<String> = BTreeSet::new();
    for s in &sections {
        for n in s.names.iter().filter(|n| path_like(n)) {
            let found: Vec<String> = candidates(s, n).into_iter().filter(|c| repo.join(c).exists()).collect();
            if found.is_empty() {
                missing_names.push(format!("{}: `{n}`", s.heading));
            }
            named.extend(found);
        }
    }
    assert!(missing_names.is_empty(), "ARCHITECTURE.md names paths that do not exist:\n{}", missing_names.join("\n"));

    let unnamed: Vec<String> = files(&repo)
        .into_iter()
        .filter(|f| !(f.ends_with("/Cargo.toml")))
        .filter(|f| {
            // the file itself, or a directory above it
            let mut p = Some(Path::new(f.as_str()));
            while let Some(q) = p {
                if named.contains(q.to_str().unwrap()) {
                    return false;
                }
                p = q.parent().filter(|d| !d.as_os_str().is_empty());
            }
            true
        })
        .collect();
    assert!(unnamed.is_empty(), "files ARCHITECTURE.md's code map does not name:\n{}", unnamed.join("\n"));
}

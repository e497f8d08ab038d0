#!/usr/bin/env bash
# Prints a directory holding the previous release's binaries (snix-castore,
# snix-store, snix-mount, nix-daemon), building them the first time and
# keeping them under /var/cache/snix-tests/releases/<commit>. The previous
# release is the last tag before HEAD; a clone without tags falls back to
# v0.1.0's commit.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
v0_1_0=9849a010bf3082bf8ac5b3309ad60fe30d098631
rev=$(git describe --tags --abbrev=0 'HEAD^' 2>/dev/null || echo "$v0_1_0")
commit=$(git rev-parse "$rev^{commit}")
out=${SNIX_RELEASES_CACHE:-/var/cache/snix-tests/releases}/$commit
bins=(snix-castore snix-store snix-mount nix-daemon)
if [ -x "$out/bin/nix-daemon" ]; then
    echo "$out/bin"
    exit 0
fi
echo "previous-release.sh: building $rev ($commit)" >&2
src=$repo/target/previous-release/$commit
rm -rf "$src"
mkdir -p "$src"
git archive "$commit" | tar -x -C "$src"
# The same target directory: dependencies already built for the current tree
# are reused; only our crates compile again (under their own hashes). The
# binaries it links into target/debug are replaced by the next cargo build.
(cd "$src" && CARGO_TARGET_DIR=$repo/target cargo build --locked --bins --quiet </dev/null) >&2
rm -rf "$out.partial"
mkdir -p "$out.partial/bin"
for b in "${bins[@]}"; do
    cp "$repo/target/debug/$b" "$out.partial/bin/$b"
    strip --strip-debug "$out.partial/bin/$b"
done
rm -rf "$out" "$src"
mv "$out.partial" "$out"
echo "$out/bin"

#!/usr/bin/env bash
# Prepares, or reuses, a Debian trixie chroot with Nix 2.26 (protocol 1.38,
# local-overlay store) for the tests; prints its path. Recipe:
# ../shared/spec/local-overlay-ci.md. Runs as root.
set -euo pipefail
R=${SNIX_TRIXIE_CHROOT:-/var/cache/snix-tests/trixie}
if [ -x "$R/usr/bin/nix" ]; then
    echo "$R"
    exit 0
fi
if ! command -v debootstrap >/dev/null; then
    apt-get install -y debootstrap >&2 || { apt-get update >&2 && apt-get install -y debootstrap >&2; }
fi
T="$R.partial"
rm -rf "$T"
mkdir -p "$(dirname "$R")"
debootstrap --variant=minbase trixie "$T" http://deb.debian.org/debian >&2
cp /etc/resolv.conf "$T/etc/resolv.conf"
# mounts live in a private namespace: they vanish with it, nothing reaches the host
unshare --mount --propagation private sh -ec "
    mount -t proc proc '$T/proc'
    mount --rbind /dev '$T/dev'
    mount --rbind /sys '$T/sys'
    chroot '$T' sh -ec 'apt-get update && apt-get install -y --no-install-recommends nix-bin && apt-get clean && rm -rf /var/lib/apt/lists/*'
" >&2
mkdir -p "$T/etc/nix"
printf 'experimental-features = nix-command local-overlay-store\nsubstituters =\nsandbox = false\nbuild-users-group =\n' >"$T/etc/nix/nix.conf"
mv "$T" "$R"
echo "$R"

#!/usr/bin/env bash
# Prepares, or reuses, a Debian chroot with that release's Nix (nix-bin) for
# the tests, and prints its path:
#   bullseye  Nix 2.3.7  (worker protocol 1.21)
#   trixie    Nix 2.26.3 (1.38, local-overlay store)
#   sid       Nix 2.34.x (1.38)
# Usage: debian-chroot.sh SUITE. Runs as root; made once under
# /var/cache/snix-tests/SUITE (or $SNIX_CHROOT_CACHE/SUITE) and reused.
# Recipe: ../shared/spec/local-overlay-ci.md.
set -euo pipefail
suite=${1:?usage: debian-chroot.sh bullseye|trixie|sid}
case $suite in
bullseye | trixie | sid) ;;
*)
    echo "debian-chroot.sh: unknown suite $suite (bullseye, trixie or sid)" >&2
    exit 2
    ;;
esac
R=${SNIX_CHROOT_CACHE:-/var/cache/snix-tests}/$suite
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
debootstrap --variant=minbase "$suite" "$T" http://deb.debian.org/debian >&2
cp /etc/resolv.conf "$T/etc/resolv.conf"
# sid's Release file may be past its Valid-Until
echo 'Acquire::Check-Valid-Until "false";' >"$T/etc/apt/apt.conf.d/99snix-no-valid-until"
# mounts live in a private namespace: they vanish with it, nothing reaches the host
unshare --mount --propagation private sh -ec "
    mount -t proc proc '$T/proc'
    mount --rbind /dev '$T/dev'
    mount --rbind /sys '$T/sys'
    chroot '$T' sh -ec 'apt-get update && apt-get install -y --no-install-recommends nix-bin && apt-get clean && rm -rf /var/lib/apt/lists/*'
" >&2
mkdir -p "$T/etc/nix"
# Nix 2.3 knows neither setting of the first line: it warns and goes on
printf 'experimental-features = nix-command local-overlay-store\nsubstituters =\nsandbox = false\nbuild-users-group =\n' >"$T/etc/nix/nix.conf"
mv "$T" "$R"
echo "$R"

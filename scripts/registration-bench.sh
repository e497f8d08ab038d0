#!/usr/bin/env bash
# Registrations per second into a fresh snix-store daemon (embedded
# defaults), with no mount and with a snix-mount watching (which the daemon
# waits for: each registration returns once the mount confirmed it dropped
# its misses). One `snix-store import` of N one-file paths; 3 rounds,
# alternating. Needs root and /dev/fuse. BIN: where the binaries are
# (default target/release).
#   N=1000 bash scripts/registration-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-target/release}
bin=$(cd "$bin" && pwd)
n=${N:-1000}
round() { # $1: no-mount | with-mount
    local d sp mp="" s e
    d=$(mktemp -d /tmp/registration-bench.XXXX)
    mkdir -p "$d/src"
    for i in $(seq "$n"); do mkdir "$d/src/p$i"; echo "$1 $i $d" >"$d/src/p$i/f"; done
    env -u BLOB_SERVICE_ADDR -u DIRECTORY_SERVICE_ADDR -u PATH_INFO_SERVICE_ADDR \
        STATE_DIRECTORY="$d" RUNTIME_DIRECTORY="$d" "$bin/snix-store" daemon -l "$d/s.sock" 2>"$d/store.log" &
    sp=$!
    for _ in $(seq 100); do [ -S "$d/s.sock" ] && break; sleep 0.1; done
    local addr=grpc+unix://$d/s.sock
    if [ "$1" = with-mount ]; then
        mkdir "$d/mnt"
        PATH_INFO_SERVICE_ADDR=$addr BLOB_SERVICE_ADDR=$addr DIRECTORY_SERVICE_ADDR=$addr \
            CACHE_DIRECTORY="$d/cache" "$bin/snix-mount" "$d/mnt" 2>"$d/mount.log" &
        mp=$!
        for _ in $(seq 100); do grep -q "watching the store" "$d/mount.log" 2>/dev/null && break; sleep 0.1; done
    fi
    s=$(date +%s.%N)
    PATH_INFO_SERVICE_ADDR=$addr BLOB_SERVICE_ADDR=$addr DIRECTORY_SERVICE_ADDR=$addr \
        "$bin/snix-store" import "$d"/src/p* >/dev/null
    e=$(date +%s.%N)
    awk -v s="$s" -v e="$e" -v n="$n" -v w="$1" 'BEGIN { printf "%-10s %d paths in %.2f s, %.0f/s\n", w, n, e - s, n / (e - s) }'
    if [ -n "$mp" ]; then kill "$mp"; wait "$mp" 2>/dev/null || true; fi
    kill "$sp"
    wait "$sp" 2>/dev/null || true
    rm -rf "$d"
}
for _ in 1 2 3; do
    round no-mount
    round with-mount
done

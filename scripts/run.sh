#!/usr/bin/env bash
# Runs the stack on the embedded defaults (sled + local files) under ./state,
# in the foreground; Ctrl-C stops everything cleanly.
#
#   snix-castore daemon   blobs (objectstore+file) and directories (sled) in ./state/lib/castore
#   snix-store daemon     path infos (sled) in ./state/lib/store, castore via the daemon above
#   snix-mount            the read-only FUSE view at ./state/mnt (needs root and /dev/fuse),
#                         its content cache in ./state/cache
#   nix-daemon            the worker protocol on ./state/run/nix-daemon.sock
#   sockets               ./state/run/snix-castore.sock, ./state/run/snix-store.sock
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked --workspace
bin=$PWD/target/release
export STATE_DIRECTORY=$PWD/state/lib RUNTIME_DIRECTORY=$PWD/state/run
mkdir -p "$STATE_DIRECTORY" "$RUNTIME_DIRECTORY"

pids=()
stop() {
    trap - INT TERM EXIT
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait
}
trap stop INT TERM EXIT

wait_for() {
    for _ in $(seq 100); do [ -S "$1" ] && return 0; sleep 0.1; done
    echo "run.sh: $1 did not appear" >&2
    exit 1
}

castore=$RUNTIME_DIRECTORY/snix-castore.sock
store=$RUNTIME_DIRECTORY/snix-store.sock

"$bin/snix-castore" daemon &
pids+=($!)
wait_for "$castore"

BLOB_SERVICE_ADDR=grpc+unix://$castore DIRECTORY_SERVICE_ADDR=grpc+unix://$castore \
    "$bin/snix-store" daemon &
pids+=($!)
wait_for "$store"

mnt=$PWD/state/mnt
mkdir -p "$mnt"
if mountpoint -q "$mnt" && ! ls "$mnt/" >/dev/null 2>&1; then
    umount -l "$mnt" # a stale mount from an earlier run that was killed
fi
# its content cache under ./state too (the default, /var/cache/snix-mount, is the unit's)
CACHE_DIRECTORY=$PWD/state/cache "$bin/snix-mount" "$mnt" --allow-other &
pids+=($!)
for _ in $(seq 100); do mountpoint -q "$mnt" && break; sleep 0.1; done

nixd=$RUNTIME_DIRECTORY/nix-daemon.sock
"$bin/nix-daemon" -l "$nixd" --unix-listen-unlink &
pids+=($!)
wait_for "$nixd"

lower="unix://$nixd?real=$mnt"
encoded=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$lower" 2>/dev/null ||
    printf '%s' "$lower" | sed 's|%|%25|g; s|:|%3A|g; s|/|%2F|g; s|?|%3F|g; s|=|%3D|g; s|&|%26|g')
cat <<MSG

The stack is up (state in $STATE_DIRECTORY):
  snix-castore  unix://$castore
  snix-store    unix://$store
  snix-mount    $mnt
  nix-daemon    unix://$nixd
Fill it (Nix as root; --no-check-sigs: unsigned local paths):
  nix copy --no-check-sigs --to unix://$nixd /nix/store/<some path>
  nix path-info -r --json --store '$lower' /nix/store/<some path>
Use it as the lower layer of a local-overlay store (Nix >= 2.22, as root):
  mkdir -p /ovl/upper/nix/store /ovl/work /ovl/merged/nix/store
  mount -t overlay overlay -o lowerdir=$mnt,upperdir=/ovl/upper/nix/store,workdir=/ovl/work /ovl/merged/nix/store
  store URL: local-overlay://?root=/ovl/merged&lower-store=$encoded&upper-layer=/ovl/upper/nix/store
  (needs 'experimental-features = nix-command local-overlay-store' in nix.conf)
Ctrl-C stops everything (and unmounts).
MSG
wait

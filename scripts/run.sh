#!/usr/bin/env bash
# Runs the stack on the embedded defaults (sled + local files) under ./state,
# in the foreground; Ctrl-C stops everything cleanly.
#
#   snix-castore daemon   blobs (objectstore+file) and directories (sled) in ./state/lib/castore
#   snix-store daemon     path infos (sled) in ./state/lib/store, castore via the daemon above
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

cat <<MSG

The stack is up (state in $STATE_DIRECTORY):
  snix-castore  unix://$castore
  snix-store    unix://$store
Try, in another shell:
  export RUNTIME_DIRECTORY=$RUNTIME_DIRECTORY
  $bin/snix-store import /usr/share/doc/bash     # prints the same path as nix-store --add
  $bin/snix-store path-info --json <that path>
  $bin/snix-store dump <that path> | sha256sum
snix-mount and the nix-daemon join this command as they land; it will then
print the local-overlay:// store URL and the overlay mount command.
Ctrl-C stops everything.
MSG
wait

#!/usr/bin/env bash
# Runs the stack on the embedded defaults (sled + local files) under ./state,
# in the foreground; Ctrl-C stops everything cleanly.
#
#   state:   ./state/lib   (blobs: objectstore+file, directories: sled)
#   sockets: ./state/run   (snix-castore.sock)
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

"$bin/snix-castore" daemon &
pids+=($!)

sock=$RUNTIME_DIRECTORY/snix-castore.sock
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
cat <<MSG

snix-castore is serving on unix://$sock (state in $STATE_DIRECTORY).
Try, in another shell:
  export BLOB_SERVICE_ADDR=grpc+unix://$sock DIRECTORY_SERVICE_ADDR=grpc+unix://$sock
  $bin/snix-castore ingest /usr/share/doc
The store daemon, snix-mount and nix-daemon join this command as they land;
it will then print the local-overlay:// store URL and the overlay mount command.
Ctrl-C stops everything.
MSG
wait

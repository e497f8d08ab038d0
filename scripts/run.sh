#!/usr/bin/env bash
# Runs the stack on the embedded defaults (sled + local files) under a local
# state directory, and stops it on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked --workspace

cat <<'MSG'
Built the workspace. The daemons are not there yet; as they land, this
command starts, under ./state:
  snix-castore daemon        blobs (objectstore+file://) and directories (sled://)
  snix-store daemon          path infos (sled://), using that castore
  snix-mount ./state/mnt     the read-only FUSE view of the store
  nix-daemon -l ./state/nix-daemon.sock --unix-listen-unlink
and prints the local-overlay:// store URL and overlay mount command to use.
MSG

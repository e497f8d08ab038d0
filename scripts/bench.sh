#!/usr/bin/env bash
# Runs every component's benchmark (long; not part of the test command) and
# prints one table: metric, ours, baseline, ratio (baseline time / ours, >1:
# faster than the baseline), goal. Every baseline is measured in the same run
# on the same data: the real Nix, Debian's nix-daemon, or the native file
# system. Needs root (FUSE, dropping the page cache), Nix (nix-bin) and
# ~10 GiB free under SCRATCH (default /var/tmp).
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=${1:-/var/tmp}
command -v nix-store >/dev/null || { apt-get update -qq && apt-get install -y -qq nix-bin; }
cargo build --release --locked --workspace --bins --examples
out=$(mktemp)
trap 'rm -f "$out"' EXIT
run() { echo "== $*" >&2; "$@" | tee -a "$out" >&2; }
run target/release/examples/nar_bench /usr/share
run target/release/examples/castore_bench /usr/share
run target/release/examples/store_bench "" "$scratch"
run target/release/examples/mount_bench "$scratch"
run target/release/examples/daemon_bench "$scratch"
run target/release/examples/gc_bench "$scratch"

# each benchmark's rows: METRIC… OURS BASELINE RATIOx [goal text]
awk '
function goal_of(m) {
    if (m ~ /NAR (write|read|sha256)/) return ">=1.0x";
    if (m ~ /^(import|copy|dump)/) return ">=1.0x";
    return "-";
}
{
    r = 0
    for (i = 3; i <= NF; i++) if ($i ~ /^[0-9.]+x$/) { r = i; break }
    if (!r || r < 4) next
    metric = $1; for (j = 2; j <= r - 3; j++) metric = metric " " $j
    rest = ""; for (j = r + 1; j <= NF; j++) rest = rest " " $j
    goal = goal_of(metric)
    if (match(rest, /goal [^)]*/)) goal = substr(rest, RSTART + 5, RLENGTH - 5)
    # ASCII, so that printf (which counts bytes) keeps the column aligned
    gsub(/≥/, ">=", goal); gsub(/≤/, "<=", goal)
    printf "| %-44s | %10s | %10s | %7s | %-28s |\n", metric, $(r - 2), $(r - 1), $r, goal
}' "$out" | {
    printf "| %-44s | %10s | %10s | %7s | %-28s |\n" metric ours baseline ratio goal
    printf "|%s|%s|%s|%s|%s|\n" "----------------------------------------------" "------------" "------------" "---------" "------------------------------"
    cat
}

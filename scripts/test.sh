#!/usr/bin/env bash
# Runs the whole test suite, exactly as CI does (.ci/run calls this).
# On a fresh Debian machine, as root, it first installs what the tests need:
# the real Nix (nix-bin) is the judge of our formats and protocols.
# Works without a terminal (CI=true, no stdin). Root-only tests never skip
# silently under CI=true: a missing prerequisite fails them.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=()
command -v nix-store >/dev/null 2>&1 || apt_packages+=(nix-bin)
command -v npm >/dev/null 2>&1 || apt_packages+=(npm)
command -v debootstrap >/dev/null 2>&1 || apt_packages+=(debootstrap)
command -v curl >/dev/null 2>&1 || apt_packages+=(curl)
if [ ${#apt_packages[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "test.sh: need root to install: ${apt_packages[*]}" >&2
        exit 1
    fi
    echo "test.sh: installing ${apt_packages[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq </dev/null
    apt-get install -y -qq "${apt_packages[@]}" </dev/null >/dev/null
fi
# Nix's database made before the tests run Nix in parallel: on a fresh
# install, concurrent first uses can fail with "database is busy"
nix-store --init
# qemu for the VM test, without its recommends (a desktop's worth)
if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
    echo "test.sh: installing qemu-system-x86"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-x86 </dev/null >/dev/null ||
        { apt-get update -qq </dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-x86 </dev/null >/dev/null; }
fi

# Every Nix expression we ship must at least parse.
for f in flake.nix default.nix nixos-modules/*.nix integration-tests/nix/*.nix; do
    nix-instantiate --parse "$f" >/dev/null
done

# The gRPC APIs only grow compatibly: buf (from the npm registry) lints them
# and compares them with the last release tag, else the first commit that had
# them.
buf_dir=target/buf
[ -x "$buf_dir/node_modules/.bin/buf" ] || npm install --silent --no-save --prefix "$buf_dir" @bufbuild/buf@1 </dev/null >/dev/null
buf=$buf_dir/node_modules/.bin/buf
"$buf" lint proto
against=$(git describe --tags --abbrev=0 'HEAD^' 2>/dev/null ||
    git log --diff-filter=A --format=%H -- proto/snix/castore/v1/castore.proto | tail -1)
"$buf" breaking proto --against ".git#ref=$against,subdir=proto"
echo "test.sh: buf lint and buf breaking (against $against) passed"

# Nix 2.3 (bullseye), 2.26 (trixie; local-overlay store) and 2.34 (sid)
# come from Debian chroots, made once and reused (the tests also make them
# on demand; doing it here keeps their output out of the tests').
for suite in bullseye trixie sid; do
    bash scripts/debian-chroot.sh "$suite" >/dev/null
done
# and the VM test's image (scripts/vm-image.sh), made once
bash scripts/vm-image.sh >/dev/null

# Style and lints first: cheap, and a failure here needs no test run.
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings </dev/null
echo "test.sh: cargo fmt --check and cargo clippy -D warnings passed"

# The previous release's binaries, for the rolling upgrade/downgrade test
# (integration-tests/tests/compat.rs); built once and cached. Built before
# the current tree: both share target/, and cargo test relinks ours. Where
# it cannot be had, the compat test fails and says why.
if SNIX_PREVIOUS_RELEASE_BIN=$(bash scripts/previous-release.sh); then
    export SNIX_PREVIOUS_RELEASE_BIN
    echo "test.sh: previous release's binaries in $SNIX_PREVIOUS_RELEASE_BIN"
else
    echo "test.sh: scripts/previous-release.sh failed (above); the compat test will fail" >&2
    unset SNIX_PREVIOUS_RELEASE_BIN
fi

# Tests that need Nix, root or /dev/fuse are #[ignore = "needs …"] so that
# a plain `cargo test` reports them as ignored; here, with everything they
# need installed, they all run.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
rm -f target/tmp/load-report.txt target/tmp/clients-report.txt
cargo test --workspace --locked --no-fail-fast -- --include-ignored </dev/null 2>&1 | tee "$log" || status=$?
# the mount's tests once more with every cached read served by snix-mount
# itself (pread), as on a kernel or in a unit without passthrough
echo "test.sh: snix-mount's tests with SNIX_MOUNT_PASSTHROUGH=never"
SNIX_MOUNT_PASSTHROUGH=never cargo test -p snix-fuse-mount --locked --test mount -- --include-ignored </dev/null 2>&1 \
    | tee -a "$log" || status=$?
# the stack under a real systemd, in a VM (scripts/vm-test.sh; bounded by
# its own timeout): the binaries cargo test just built, the modules' units
echo "test.sh: the VM test (systemd as PID 1)"
vm_status=0
bash scripts/vm-test.sh target/debug </dev/null 2>&1 | tee -a "$log" || vm_status=$?
[ "$vm_status" -eq 0 ] || status=$vm_status
echo "test result: $([ "$vm_status" -eq 0 ] && echo "ok. 1 passed; 0 failed" || echo "FAILED. 0 passed; 1 failed"); 0 ignored (vm-test.sh)" | tee -a "$log"
# what the client and load tests saw (a passing test's output is not shown)
for report in clients load; do
    if [ -f "target/tmp/$report-report.txt" ]; then
        echo "test.sh: the $report test's report:"
        cat "target/tmp/$report-report.txt"
    fi
done
# One closing line over every test binary (cargo's own last line is often a
# doc-test binary with nothing in it).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     END { printf "tests: %d passed, %d failed, %d ignored\n", p, f, s }' "$log"
exit "$status"

#!/usr/bin/env bash
# The stack under a real systemd: boots a Debian trixie VM (scripts/vm-image.sh;
# systemd as PID 1, Debian's kernel, Nix 2.26) with our binaries and the unit
# files the NixOS modules make (integration-tests/nix/eval-units.nix, nixpkgs'
# module system), and runs the user's how-to through them inside
# (scripts/vm-test-inside.sh): socket activation, Type=notify, the mount unit,
# the overlay mount from fstab, Nix on local-overlay:// with its own daemon,
# Nix copying from nar-bridge on a TCP socket; then each unit killed and
# restarted, and everything stopped.
#
# Usage: vm-test.sh [BIN_DIR]  (default target/debug: snix-castore, snix-store,
# snix-mount, nix-daemon, nar-bridge). Root; qemu with KVM where /dev/kvm works, TCG
# otherwise; at most $SNIX_VM_TIMEOUT seconds (default 840). Exit 0 only if
# the VM reported every check passed.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
bin=$(realpath "${1:-target/debug}")
timeout_s=${SNIX_VM_TIMEOUT:-840}
start=$(date +%s)

for b in snix-castore snix-store snix-mount nix-daemon nar-bridge; do
    [ -x "$bin/$b" ] || { echo "vm-test.sh: $bin/$b is not built" >&2; exit 1; }
done
for tool in qemu-system-x86_64 mkfs.ext4 nix-instantiate python3 strip; do
    command -v "$tool" >/dev/null || { echo "vm-test.sh: $tool is missing" >&2; exit 1; }
done
lib=${SNIX_NIXPKGS_LIB:-}
for candidate in "$repo/../shared/nixpkgs-lib/lib" /work/shared/nixpkgs-lib/lib; do
    [ -n "$lib" ] || { [ -f "$candidate/default.nix" ] && lib=$candidate; } || true
done
[ -n "$lib" ] || { echo "vm-test.sh: nixpkgs' lib not found (set SNIX_NIXPKGS_LIB)" >&2; exit 1; }

image=$(bash scripts/vm-image.sh)
work=$(mktemp -d /var/tmp/snix-vm-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
P=$work/payload
mkdir -p "$P/snix/bin"
for b in snix-castore snix-store snix-mount nix-daemon nar-bridge; do
    # (debug builds carry ~150 MB of debug info each)
    strip --strip-debug -o "$P/snix/bin/$b" "$bin/$b"
done

# nixpkgs' packages the units name, as the image's Debian packages: a
# directory each, with exactly the programs its Debian packages ship
pkgs="{ snix = \"/payload/snix\";"
# (the same list src/units.rs reads)
while read -r name debs; do
    case $name in '#'* | '') continue ;; esac
    mkdir -p "$P/packages/$name/bin" "$P/packages/$name/sbin"
    for d in $debs; do
        dpkg-query --admindir="$image/dpkg" -L "$d" | grep -E '/s?bin/[^/]+$' | while read -r f; do
            sub=$(basename "$(dirname "$f")")
            [ -e "$P/packages/$name/$sub/$(basename "$f")" ] || ln -s "$f" "$P/packages/$name/$sub/$(basename "$f")"
        done
    done
    pkgs+=" \"$name\" = \"/payload/packages/$name\";"
done <integration-tests/nix/debian-packages.txt
pkgs+=" }"

# the deployment, as a NixOS user writes it
settings='{ pkgs, lib, ... }: {
  services.snix = {
    package = pkgs.snix;
    castore.enable = true;
    store.enable = true;
    mount.enable = true;
    nix-daemon = { enable = true; requireSigs = false; };
    localOverlay.enable = true;
    nar-bridge = { enable = true; listen = "127.0.0.1:9000"; signingKeyFile = "/etc/snix/cache.sk"; compression = "zstd"; };
  };
  # no network in the VM, and no build users
  nix.settings = { substituters = lib.mkForce [ ]; sandbox = false; build-users-group = ""; };
}'
nix-instantiate --eval --strict --json integration-tests/nix/eval-units.nix \
    --arg nixpkgsLib "$lib" --arg settings "$settings" --arg pkgs "$pkgs" --argstr scriptDir /payload/unit-scripts \
    >"$work/eval.json"
python3 - "$work/eval.json" "$P" <<'PY'
import json, os, sys
d, out = json.load(open(sys.argv[1])), sys.argv[2]
assert d["failedAssertions"] == [], d["failedAssertions"]
def put(rel, text, mode=0o644):
    path = os.path.join(out, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "w").write(text)
    os.chmod(path, mode)
for name, text in d["unitFiles"].items():
    # Nix's own daemon comes with Debian's nix-bin: ours is a drop-in (as on
    # NixOS, overrideStrategy asDropinIfExists)
    put(("units/nix-daemon.service.d/overrides.conf" if name == "nix-daemon.service" else "units/" + name), text)
for rel, text in d["scripts"].items():
    put("unit-scripts/" + rel, text, 0o755)
put("etc/nix.conf", d["nixConf"])
put("etc/fstab", d["fstab"])
put("etc/tmpfiles.conf", d["tmpfilesConf"])
put("etc/environment", "".join(f"{k}={v}\n" for k, v in d["environment"].items()))
PY
cp scripts/vm-test-inside.sh "$P/vm-test-inside.sh"
mkfs.ext4 -q -L payload -d "$P" "$work/payload.img" "$(($(du -sm "$P" | cut -f1) + 64))M"

# KVM where it works: some hosts (nested virtualisation) offer /dev/kvm yet
# fail to run Debian's kernel in it; a short boot tells (the kernel prints
# its banner within seconds), else TCG
accel=(-machine accel=tcg -cpu qemu64)
if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
    timeout 15 qemu-system-x86_64 -enable-kvm -m 256 -nographic -no-reboot -kernel "$image/vmlinuz" \
        -append "console=ttyS0 panic=-1" -nic none -serial "file:$work/kvm-probe.log" -monitor none \
        </dev/null >/dev/null 2>&1 || true
    if grep -aq "Linux version" "$work/kvm-probe.log" 2>/dev/null; then accel=(-enable-kvm); fi
fi
echo "vm-test.sh: booting ($([ "${accel[0]}" = -enable-kvm ] && echo KVM || echo TCG)), at most ${timeout_s}s"
set +e
timeout "$timeout_s" qemu-system-x86_64 "${accel[@]}" -m 2048 -smp 2 -nographic -no-reboot \
    -kernel "$image/vmlinuz" -initrd "$image/initrd.img" \
    -append "root=/dev/vda rw console=ttyS0 panic=-1 systemd.show_status=false" \
    -drive "file=$image/base.img,if=virtio,format=raw,snapshot=on" \
    -drive "file=$work/payload.img,if=virtio,format=raw" \
    -nic none -serial "file:$work/console.log" -monitor none </dev/null >"$work/qemu.log" 2>&1
qemu=$?
set -e
grep -a 'vm-test' "$work/console.log" | sed 's/^.*\(vm-test\)/\1/' || true
echo "vm-test.sh: $(( $(date +%s) - start ))s in all"
if [ $qemu -ne 0 ] || ! grep -aq 'vm-test: all checks passed' "$work/console.log"; then
    cp "$work/console.log" /var/tmp/snix-vm-test-console.log
    echo "vm-test.sh: FAILED (qemu exit $qemu); the console's end (all of it: /var/tmp/snix-vm-test-console.log):" >&2
    tail -n 60 "$work/console.log" >&2
    cat "$work/qemu.log" >&2
    exit 1
fi

#!/bin/bash
# Runs inside the VM of scripts/vm-test.sh, as a unit, once systemd is up:
# installs what NixOS would write from the modules (units, nix.conf, fstab,
# tmpfiles, environment; from /payload), then the user's how-to through the
# units, each unit killed and restarted, and everything stopped. Every line
# it prints starts with "vm-test:"; the last is "vm-test: all checks passed"
# or a FAIL.
set -euo pipefail
# what commands print on stderr is part of the report
exec 2> >(sed -u 's/^/vm-test: stderr: /')
say() { echo "vm-test: $*"; }
fail() {
    say "FAIL: $*"
    for u in snix-castore snix-store snix-mount snix-nix-daemon snix-nar-bridge nix-daemon nix-daemon.socket; do
        journalctl -u "$u" --no-pager -n 15 -o cat 2>/dev/null | sed "s/^/vm-test: [$u] /"
    done
    exit 1
}
trap 'fail "line $LINENO: $BASH_COMMAND"' ERR
t0=$(date +%s)

# what NixOS writes from the evaluated modules
cp -r /payload/units/. /etc/systemd/system/
cp /payload/etc/nix.conf /etc/nix/nix.conf
cat /payload/etc/fstab >>/etc/fstab
cp /payload/etc/tmpfiles.conf /etc/tmpfiles.d/snix.conf
systemd-tmpfiles --create /etc/tmpfiles.d/snix.conf
set -a # environment.variables, as every login gets them
. /payload/etc/environment
set +a
systemctl daemon-reload
systemctl enable snix-castore.socket snix-store.socket snix-nix-daemon.socket snix-nar-bridge.socket snix-mount.service 2>&1 | sed 's/^/vm-test: /'
overlay=/var/lib/snix-overlay/merged/nix/store
overlay_unit=$(systemd-escape -p --suffix=mount "$overlay")
mnt=/var/lib/snix-mount/store

# sockets first; each daemon starts on its first connection
systemctl start sockets.target
for s in snix-castore snix-store snix-nix-daemon snix-nar-bridge; do
    systemctl is-active -q "$s.socket" || fail "$s.socket is not listening"
    if systemctl is-active -q "$s.service"; then fail "$s.service runs before anyone connected"; fi
done
say "sockets listen, no daemon started yet"
systemctl start snix-mount.service # Type=notify: returns once mounted
mountpoint -q "$mnt" || fail "snix-mount.service is active but $mnt is not a mount"
say "the mount unit mounted $mnt"
systemctl start "$overlay_unit"
findmnt -n -o FSTYPE "$overlay" | grep -qx overlay || fail "no overlay at $overlay"
# (the new nix.conf: Nix's daemon starts again on the next connection; a
# socket whose service still runs would refuse to start)
systemctl stop nix-daemon.socket nix-daemon.service
systemctl start nix-daemon.socket
say "overlay mounted from fstab after the mount unit; Nix's daemon on local-overlay"

# a path from a plain Nix store, copied in through our nix-daemon's socket
seed=/var/tmp/seed
mkdir -p /var/tmp/src/dep
echo "a dependency, $(date +%s%N)" >/var/tmp/src/dep/data
dep=$(nix-store --store "$seed" --add /var/tmp/src/dep)
nix --store "$seed" copy --no-check-sigs --to unix:///run/snix/nix-daemon.sock "$dep"
for s in snix-nix-daemon snix-store snix-castore; do
    systemctl is-active -q "$s.service" || fail "$s.service was not started through its socket"
done
say "copied $dep in through snix-nix-daemon.socket (which started it, the store and the castore)"
# built on local-overlay:// (by Nix's daemon): reads the lower path (and
# refers to it), lands in the upper layer; then copied down into our store
cat >/var/tmp/top.nix <<EOF
derivation { name = "top"; system = builtins.currentSystem; builder = "/bin/sh";
  args = [ "-c" "read -r line < \${builtins.storePath "$dep"}/data; echo \\"\$line, from \${builtins.storePath "$dep"}\\" > \$out" ]; }
EOF
top=$(nix-build --no-out-link /var/tmp/top.nix)
# (the store's paths are under the overlay's root, not at /nix/store)
grep -q "a dependency" "$overlay/${top#/nix/store/}" || fail "the build did not read the lower path"
nix copy --no-check-sigs --to unix:///run/snix/nix-daemon.sock "$top"
say "a build on local-overlay read the lower path; $top copied down"

check_nix() {
    local what=$1
    [ "$(nix-store -qR "$top" | sort)" = "$(printf '%s\n' "$dep" "$top" | sort)" ] || fail "$what: nix-store -qR"
    nix path-info --json "$top" | grep -q '"narHash"' || fail "$what: nix path-info"
    grep -q "a dependency" "$overlay/${dep#/nix/store/}/data" || fail "$what: reading the lower path"
    nix-store --verify --check-contents 2>&1 | sed 's/^/vm-test: verify: /'
    say "$what: Nix works (query, path-info, read, verify)"
}
check_nix "after the copy"

# the same closure from nar-bridge (TCP socket unit), signed, into a fresh
# store; its signing key where services.snix.nar-bridge.signingKeyFile says
# (made now: nix-store opens the configured store, the overlay, first)
mkdir -p /etc/snix
nix-store --generate-binary-cache-key vm-cache-1 /etc/snix/cache.sk /etc/snix/cache.pk
fresh="local?root=/var/tmp/fresh"
nix copy --from http://127.0.0.1:9000 --to "$fresh" --option trusted-public-keys "$(cat /etc/snix/cache.pk)" "$top"
systemctl is-active -q snix-nar-bridge.service || fail "snix-nar-bridge.service was not started through its socket"
nix-store --store "$fresh" --verify --check-contents 2>&1 | sed 's/^/vm-test: verify (fresh): /'
[ "$(nix-store --store "$fresh" -qR "$top" | sort)" = "$(printf '%s\n' "$dep" "$top" | sort)" ] || fail "the copy from nar-bridge is not the closure"
nix --extra-experimental-features nix-command path-info --store "$fresh" --sigs "$top" | grep -q vm-cache-1: || fail "no nar-bridge signature"
say "Nix copied the closure from nar-bridge.socket (http://127.0.0.1:9000, zstd, signed)"

# each unit killed; Restart=on-failure brings it back, and a restart by hand
# works as well (for the mount: its preStart clears the dead FUSE mount)
for u in snix-castore snix-store snix-nix-daemon snix-nar-bridge snix-mount; do
    systemctl kill -s KILL "$u.service"
    sleep 2
    systemctl restart "$u.service"
    systemctl is-active -q "$u.service" || fail "$u.service did not come back"
    if [ "$u" = snix-mount ]; then
        # (a file in it is read)
        grep -q "a dependency" "$mnt/${dep#/nix/store/}/data" || fail "the stale mount was not cleared by preStart"
        # the overlay (and Nix's daemon, which requires it) went down with the mount
        systemctl stop nix-daemon.socket nix-daemon.service
        systemctl restart "$overlay_unit"
        systemctl start nix-daemon.socket
    fi
    check_nix "after killing $u"
    if [ "$u" = snix-nar-bridge ]; then
        out=$(nix --extra-experimental-features nix-command store ping --store http://127.0.0.1:9000 2>&1) ||
            fail "nar-bridge after its restart: $out"
    fi
done

# systemctl stop of everything leaves no mount behind
systemctl stop nix-daemon.socket nix-daemon.service "$overlay_unit" snix-nix-daemon.socket snix-nix-daemon.service \
    snix-nar-bridge.socket snix-nar-bridge.service \
    snix-mount.service snix-store.socket snix-store.service snix-castore.socket snix-castore.service
if findmnt -n "$mnt" >/dev/null || findmnt -n "$overlay" >/dev/null; then fail "a mount is left after stopping"; fi
say "stopped: no mount left"
say "took $(($(date +%s) - t0))s inside"
say "all checks passed"

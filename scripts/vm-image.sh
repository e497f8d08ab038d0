#!/usr/bin/env bash
# Prepares, or reuses, a Debian trixie VM image for scripts/vm-test.sh and
# prints its directory: base.img (ext4, the root file system: systemd as
# PID 1, Debian's kernel and Nix 2.26), vmlinuz and initrd.img. Made once
# under /var/cache/snix-tests/vm-trixie-N (or $SNIX_CHROOT_CACHE/vm-trixie-N)
# from the trixie chroot (scripts/debian-chroot.sh), everything from
# Debian's packages; runs as root.
set -euo pipefail
# the name changes with what the image holds (-2: a 90 s wait for the
# payload disk), so a cached older image is not used
D=${SNIX_CHROOT_CACHE:-/var/cache/snix-tests}/vm-trixie-2
if [ -f "$D/base.img" ] && [ -f "$D/vmlinuz" ] && [ -f "$D/initrd.img" ]; then
    echo "$D"
    exit 0
fi
for tool in mkfs.ext4 unshare; do
    command -v "$tool" >/dev/null || { echo "vm-image.sh: $tool is missing" >&2; exit 1; }
done
T="$D.partial"
rm -rf "$T"
mkdir -p "$T"
R="$T/root"
# the trixie chroot the tests use (Nix 2.26), plus a kernel, systemd and
# Nix's systemd units
cp -a "$(bash "$(dirname "$0")/debian-chroot.sh" trixie)" "$R"
packages="systemd-sysv udev kmod linux-image-amd64 initramfs-tools nix-setup-systemd e2fsprogs procps"
unshare --mount --propagation private sh -ec "
    mount -t proc proc '$R/proc'
    mount --rbind /dev '$R/dev'
    mount --rbind /sys '$R/sys'
    chroot '$R' sh -ec 'apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends -o Dpkg::Options::=--force-confold $packages && apt-get clean && rm -rf /var/lib/apt/lists/*'
" >&2
rm -f "$R/etc/resolv.conf"
# the root file system is the VM's one disk; the test's files come on a second
cat >"$R/etc/fstab" <<'EOF'
/dev/vda / ext4 rw,errors=remount-ro 0 1
/dev/vdb /payload ext4 rw,nofail,x-systemd.device-timeout=90s 0 2
EOF
mkdir -p "$R/payload"
echo snix-vm >"$R/etc/hostname"
# root logs in on the serial console without a password (a test VM, no network)
sed -i 's/^root:[^:]*:/root::/' "$R/etc/shadow"
mkdir -p "$R/etc/nix"
printf 'experimental-features = nix-command local-overlay-store\nsubstituters =\nsandbox = false\nbuild-users-group =\n' >"$R/etc/nix/nix.conf"
# the test runs as a unit once the system is up, then powers the VM off
cat >"$R/etc/systemd/system/snix-vm-test.service" <<'EOF'
[Unit]
Description=snix VM test (from the payload disk)
After=multi-user.target payload.mount
Requires=payload.mount
ConditionPathExists=/payload/vm-test-inside.sh

[Service]
Type=oneshot
ExecStart=/bin/bash /payload/vm-test-inside.sh
StandardOutput=journal+console
StandardError=journal+console
ExecStopPost=/bin/systemctl poweroff --no-block

[Install]
WantedBy=multi-user.target
EOF
ln -sf /etc/systemd/system/snix-vm-test.service "$R/etc/systemd/system/multi-user.target.wants/snix-vm-test.service"
cp "$R"/boot/vmlinuz-* "$T/vmlinuz"
cp "$R"/boot/initrd.img-* "$T/initrd.img"
rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/lib/apt/lists/*
mkfs.ext4 -q -L snix-vm-root -d "$R" "$T/base.img" 3G
# the package lists of the image, for the stand-ins of nixpkgs' packages
mkdir -p "$T/dpkg"
cp -a "$R/var/lib/dpkg/info" "$R/var/lib/dpkg/status" "$T/dpkg/"
rm -rf "$R"
rm -rf "$D"
mv "$T" "$D"
echo "$D"

#!/bin/bash
# Set-up of the Vagrant backend: Debian's vagrant + vagrant-libvirt + libvirt, and on machines
# without systemd (containers, CI) the two libvirt daemons and the /dev/kvm permissions that udev
# would otherwise provide. Idempotent; run as root (or it uses sudo). Called by
# `python3 -m harness.setup test`; on an ordinary desktop run it once by hand.
set -euo pipefail

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

# No dnsmasq/ebtables: kmh never creates a libvirt network (guests use QEMU user-mode networking).
packages=(vagrant vagrant-libvirt libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils
          mmdebstrap e2fsprogs openssh-client ruby)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup-vagrant: installing ${missing[*]}" >&2
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ -d /run/systemd/system ]; then
    # systemd starts the daemons (socket activation); make sure they are enabled.
    $sudo systemctl start libvirtd.service virtlogd.socket >/dev/null 2>&1 || true
    exit 0
fi

# What Debian's udev rule does for /dev/kvm. Without it libvirt probes QEMU as root with KVM but
# checks /dev/kvm as libvirt-qemu, finds its cache "outdated" and re-probes QEMU on every domain
# definition: about 30 s, twice per `vagrant up`.
if [ -c /dev/kvm ] && getent group kvm >/dev/null; then
    $sudo chgrp kvm /dev/kvm
    $sudo chmod 0660 /dev/kvm
fi

if ! pgrep -x virtlogd >/dev/null; then
    echo "setup-vagrant: starting virtlogd" >&2
    $sudo virtlogd -d
fi
if ! pgrep -x libvirtd >/dev/null; then
    echo "setup-vagrant: starting libvirtd" >&2
    $sudo libvirtd -d
fi
for _ in $(seq 50); do
    [ -S /run/libvirt/libvirt-sock ] && [ -S /run/libvirt/virtlogd-sock ] && exit 0
    sleep 0.2
done
echo "setup-vagrant: libvirtd/virtlogd did not come up (see /var/log/libvirt/)" >&2
exit 1

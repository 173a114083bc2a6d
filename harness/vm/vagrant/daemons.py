"""Is libvirt there to drive? A quick, bounded check before anything waits on it.

Without libvirtd, ``vagrant up`` fails only after loading all of Vagrant; without virtlogd it
creates half a domain and then fails with a socket error deep in a Ruby backtrace. Connecting to
the two sockets takes milliseconds and lets kmh say plainly what is missing and how to start it.
Starting them is the job of ``vm/box/setup.sh`` (on machines without systemd) or of systemd.
"""

from __future__ import annotations

import socket
from pathlib import Path

from harness.errors import HarnessError
from harness.resources import guest_dir

RUN_DIR = Path("/run/libvirt")
SOCKETS = {
    "libvirtd": RUN_DIR / "libvirt-sock",
    "virtlogd": RUN_DIR / "virtlogd-sock",
}


def _answers(path: Path, timeout: float = 2.0) -> bool:
    """True when something accepts connections on the unix socket PATH."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def missing_daemons() -> list[str]:
    """Names of the libvirt daemons that do not answer on their sockets."""
    return [name for name, path in SOCKETS.items() if not _answers(path)]


def has_systemd() -> bool:
    """Whether systemd is PID 1 (then it, not kmh, starts the daemons)."""
    return Path("/run/systemd/system").is_dir()


def check_daemons() -> None:
    """Raise a HarnessError naming each libvirt daemon that is not running, with how to start it."""
    missing = missing_daemons()
    if not missing:
        return
    names = " and ".join(missing)
    if has_systemd():
        hint = f"start it with: sudo systemctl start {' '.join(missing)}"
    else:
        setup = guest_dir() / "box" / "setup.sh"
        hint = f"no systemd here: start them with bash {setup} (or: virtlogd -d; libvirtd -d)"
    raise HarnessError(f"{names} not running (no answer on {RUN_DIR}); {hint}")


def kvm_device_mismatch() -> str | None:
    """Why libvirt would re-probe QEMU on every domain definition, or None.

    libvirt probes QEMU's capabilities as root (KVM works) but validates its cache by checking
    /dev/kvm as the QEMU user; where no udev gave /dev/kvm to group kvm (containers, CI) the cache
    is always "outdated" and each define costs ~30 s. ``vm/box/setup.sh`` fixes the permissions.
    """
    kvm = Path("/dev/kvm")
    if not kvm.exists():
        return None
    from harness.vm.vagrant.access import qemu_user, user_can_access

    user = qemu_user()
    if user_can_access(kvm, user, read_write=True):
        return None
    return f"/dev/kvm is not accessible to {user}: libvirt re-probes QEMU (~30 s) on every domain change"

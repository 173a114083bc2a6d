"""Is libvirt there to drive? A quick, bounded check before anything waits on it.

Without libvirtd, ``vagrant up`` fails only after loading all of Vagrant; without virtlogd it
creates half a domain and then fails with a socket error deep in a Ruby backtrace. Connecting to
the two sockets takes milliseconds and lets kmh say plainly what is missing and how to start it.
Starting the daemons is the job of ``scripts/setup-vagrant`` (on machines without systemd) or of
systemd itself; :func:`start_daemons` is what that script calls.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

from plumbum import local

from harness.errors import HarnessError

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
        hint = "no systemd here: start them with scripts/setup-vagrant (or: virtlogd -d; libvirtd -d)"
    raise HarnessError(f"{names} not running (no answer on {RUN_DIR}); {hint}")


def start_daemons(timeout: float = 20.0) -> list[str]:
    """Start the missing daemons as background processes (machines without systemd); return their names."""
    started = []
    for name in missing_daemons():
        local[name]["-d"]()
        started.append(name)
    deadline = time.monotonic() + timeout
    while missing_daemons():
        if time.monotonic() > deadline:
            raise HarnessError(f"{', '.join(missing_daemons())} did not come up within {timeout:.0f} s")
        time.sleep(0.2)
    return started


def main() -> int:
    """``python -m harness.vm.vagrant.daemons``: start what is missing, for the set-up script."""
    for name in start_daemons():
        print(f"started {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Can the QEMU process libvirt starts read a file? Answered before ``vagrant up`` rather than after.

libvirt's system instance runs QEMU as an unprivileged user (``libvirt-qemu`` on Debian). It
re-owns the kernel and initrd it is given, but it cannot walk into a directory that user may not
search: a box under ``/root`` (mode 0700) makes QEMU fail with "Permission denied" only at boot,
buried in a Vagrant backtrace. Checking the path's directories for that user takes microseconds.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import stat
from pathlib import Path

from harness.errors import HarnessError

QEMU_CONF = Path("/etc/libvirt/qemu.conf")
DEFAULT_QEMU_USER = "libvirt-qemu"


def qemu_user() -> str:
    """The user libvirt runs QEMU as (``user =`` in qemu.conf, else Debian's default)."""
    try:
        text = QEMU_CONF.read_text()
    except OSError:
        return DEFAULT_QEMU_USER
    match = re.search(r'^\s*user\s*=\s*"([^"]+)"', text, re.MULTILINE)
    name = match.group(1) if match else DEFAULT_QEMU_USER
    return name.lstrip("+")


def _identity(user: str) -> tuple[int, set[int]] | None:
    try:
        entry = pwd.getpwnam(user) if not user.isdigit() else pwd.getpwuid(int(user))
    except KeyError:
        return None
    groups = {entry.pw_gid} | {g.gr_gid for g in grp.getgrall() if entry.pw_name in g.gr_mem}
    return entry.pw_uid, groups


def _allowed(path: Path, uid: int, groups: set[int], bit: int) -> bool:
    """Whether UID (in GROUPS) has permission BIT (4 read, 1 search) on PATH."""
    info = os.stat(path)
    if uid == 0:
        return True
    if info.st_uid == uid:
        return bool(stat.S_IMODE(info.st_mode) & (bit << 6))
    if info.st_gid in groups:
        return bool(stat.S_IMODE(info.st_mode) & (bit << 3))
    return bool(stat.S_IMODE(info.st_mode) & bit)


def blocking_directory(path: Path, user: str | None = None) -> Path | None:
    """The first directory on the way to PATH that USER cannot search, or None if it gets through."""
    identity = _identity(user or qemu_user())
    if identity is None:
        return None  # a libvirt without that user (session mode): nothing to check
    uid, groups = identity
    for directory in reversed(path.resolve().parents):
        if not _allowed(directory, uid, groups, 1):
            return directory
    return None


def check_qemu_can_reach(*paths: Path) -> None:
    """Raise a HarnessError when libvirt's QEMU user could not open one of PATHS."""
    user = qemu_user()
    for path in paths:
        blocked = blocking_directory(path, user)
        if blocked is not None:
            raise HarnessError(
                f"QEMU runs as '{user}' and cannot read {path}: it may not enter {blocked}; "
                "point KMH_VAGRANT_HOME (or TMPDIR for VMs) at a directory that user can search, "
                f"or allow it with: chmod o+x {blocked}"
            )


def user_can_access(path: Path, user: str, *, read_write: bool = False) -> bool:
    """Whether USER may open PATH for reading (and writing with READ_WRITE), by its mode bits."""
    identity = _identity(user)
    if identity is None:
        return True
    uid, groups = identity
    if blocking_directory(path, user) is not None:
        return False
    return _allowed(path, uid, groups, 4) and (not read_write or _allowed(path, uid, groups, 2))

"""Entering a build environment: bubblewrap, not hand-rolled mount code.

The environment's system directories (/usr, /etc, /var and the /bin, /lib links) are mounted
read-only on an empty root, with its own /proc, /dev and /tmp and no network
(``--unshare-net``); home directories are not, so the host paths below can be created there.
The kernel target's tree is bound read-only and the build directory read-write *at the same
paths as on the host*, so make's and gcc's messages name the host's files and the diagnostics
map back to the user's sources unchanged.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from harness.errors import HarnessError

PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
#: Top-level entries of an environment that make it a system (the rest, /root, /home, /tmp, ...
#: is left out so host paths under them can be bound).
SYSTEM_ENTRIES = ("usr", "etc", "var", "opt", "bin", "sbin", "lib", "lib32", "lib64", "libx32")


def bwrap() -> str:
    found = shutil.which("bwrap")
    if not found:
        raise HarnessError(
            "bubblewrap (bwrap) is not installed; it enters the per-suite build environments",
            details="On Debian: apt-get install bubblewrap",
        )
    return found


def wrap(
    root: Path,
    argv: Sequence[str],
    *,
    readonly: Sequence[Path] = (),
    writable: Sequence[Path] = (),
    cwd: Path | None = None,
) -> list[str]:
    """ARGV to run inside the environment at ROOT, with host paths bound at their own paths."""
    hosts = [Path(path) for path in (*readonly, *writable)]
    command = [bwrap(), "--tmpfs", "/"]
    for name in SYSTEM_ENTRIES:
        entry = root / name
        if entry.is_symlink():
            command += ["--symlink", os.readlink(entry), f"/{name}"]
        elif entry.is_dir() and not any(host.parts[1:2] == (name,) for host in hosts):
            command += ["--ro-bind", str(entry), f"/{name}"]
    command += [
        "--dev", "/dev",
        "--proc", "/proc",
        "--tmpfs", "/tmp",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-pid",
        "--die-with-parent",
        "--setenv", "PATH", PATH,
        "--setenv", "HOME", "/tmp",
    ]  # fmt: skip
    for path in readonly:
        command += ["--ro-bind", str(path), str(path)]
    for path in writable:
        command += ["--bind", str(path), str(path)]
    if cwd is not None:
        command += ["--chdir", str(cwd)]
    return [*command, "--", *argv]

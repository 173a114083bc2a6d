"""Reading module state inside the guest: /proc/modules lines, holders, insmod's errors.

Small parsers over what the guest's real tools print, kept apart from the steps so they can be
tested on real output without a VM.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass

#: strerror text → errno name, to name the error insmod/modprobe/rmmod printed; kmod words a
#: few errors of init_module its own way (libkmod's mod_strerror).
_ERRNO_BY_MESSAGE = {
    **{os.strerror(code): name for code, name in errno.errorcode.items()},
    "Invalid module format": "ENOEXEC",
    "Unknown symbol in module": "ENOENT",
    "Invalid parameters": "EINVAL",
}


@dataclass(frozen=True)
class ProcModule:
    """One line of /proc/modules: ``name size refcount deps state address [taint]``."""

    name: str
    size: int
    refcount: int
    used_by: tuple[str, ...]
    state: str
    taint: str

    @classmethod
    def parse(cls, line: str) -> ProcModule:
        fields = line.split()
        used_by = tuple(name for name in fields[3].rstrip(",").split(",") if name and name != "-")
        taint = fields[6].strip("()") if len(fields) > 6 else ""
        return cls(fields[0], int(fields[1]), int(fields[2]), used_by, fields[4], taint)

    def describe(self) -> str:
        users = f", used by {', '.join(self.used_by)}" if self.used_by else ""
        taint = f", taint {self.taint}" if self.taint else ""
        return f"{self.name}: state {self.state}, refcount {self.refcount}{users}{taint}"


def find_module(proc_modules: str, name: str) -> ProcModule | None:
    """The /proc/modules entry of ``name`` (dashes and underscores are the same module)."""
    wanted = name.replace("-", "_")
    for line in proc_modules.splitlines():
        if line.split(" ", 1)[0] == wanted:
            return ProcModule.parse(line)
    return None


def errno_name(message: str) -> str:
    """The errno name behind a kmod error message ('... No such device' → 'ENODEV'), or ''."""
    for text, name in _ERRNO_BY_MESSAGE.items():
        if message.rstrip().endswith(text):
            return name
    names = set(errno.errorcode.values())
    return next((word for word in re.findall(r"\bE[A-Z0-9]+\b", message) if word in names), "")


def explain_error(stderr: str) -> str:
    """insmod/rmmod/modprobe's last error line, with the errno name when it names one."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    if not lines:
        return "no message"
    last = lines[-1]
    name = errno_name(last)
    return f"{last} ({name})" if name and name not in last else last

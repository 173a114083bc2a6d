"""A writer for uncompressed newc cpio archives, the format the kernel unpacks as initramfs.

Written here rather than shelling out to ``cpio`` so a layer's bytes depend only on its inputs
(fixed mtimes, uid 0, sorted entries): the same inputs give the same layer, which is what makes
caching and snapshot reuse sound. Uncompressed because concatenated uncompressed pieces boot
fastest under TCG and concatenate trivially.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from typing import BinaryIO

_TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class Entry:
    """One archive member: a directory, a regular file, or a symlink."""

    path: str  # inside the guest, without a leading slash
    mode: int  # full st_mode (type and permissions)
    data: bytes = b""  # file contents, or the target of a symlink


def directory(path: str, perm: int = 0o755) -> Entry:
    return Entry(path.strip("/"), stat.S_IFDIR | perm)


def regular(path: str, data: bytes, perm: int = 0o644) -> Entry:
    return Entry(path.strip("/"), stat.S_IFREG | perm, data)


def symlink(path: str, target: str) -> Entry:
    return Entry(path.strip("/"), stat.S_IFLNK | 0o777, target.encode())


def _header(ino: int, entry: Entry, name: bytes) -> bytes:
    fields = (ino, entry.mode, 0, 0, 1, 0, len(entry.data), 0, 0, 0, 0, len(name) + 1, 0)
    return b"070701" + b"".join(b"%08X" % value for value in fields)


def _pad(out: BinaryIO, written: int) -> int:
    padding = -written % 4
    out.write(b"\0" * padding)
    return written + padding


def write_archive(out: BinaryIO, entries: list[Entry], *, first_inode: int = 1) -> None:
    """Write ENTRIES (parents are added when missing) followed by the trailer.

    ``first_inode`` keeps inode numbers of concatenated layers apart: the kernel links entries
    with equal inode numbers and nlink > 1, so distinct ranges avoid surprises.
    """
    by_path: dict[str, Entry] = {}
    for entry in entries:
        parts = entry.path.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            by_path.setdefault(parent, directory(parent))
        by_path[entry.path] = entry
    written = 0
    for ino, path in enumerate(sorted(by_path), start=first_inode):
        entry = by_path[path]
        name = path.encode()
        written += out.write(_header(ino, entry, name) + name + b"\0")
        written = _pad(out, written)
        written += out.write(entry.data)
        written = _pad(out, written)
    trailer = Entry(_TRAILER, 0)
    written += out.write(_header(0, trailer, _TRAILER.encode()) + _TRAILER.encode() + b"\0")
    _pad(out, written)

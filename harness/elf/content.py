"""The bytes of a module file, whether plain (``.ko``), xz (``.ko.xz``) or zstd (``.ko.zst``).

Like kmod, the format is told by the leading magic bytes, not by the file name, so a renamed file
still reads. Plain files are memory-mapped: reading a tree of 4000 modules touches only the pages
the headers, symbol tables and signatures live in, not the 400 MB of code around them.
"""

from __future__ import annotations

import lzma
import mmap
import os
from pathlib import Path

from harness.errors import HarnessError

XZ_MAGIC = b"\xfd7zXZ\x00"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"

#: The file name endings depmod (kmod 30, built with xz and zstd) treats as modules.
MODULE_SUFFIXES = (".ko", ".ko.xz", ".ko.zst")


def read_content(path: Path | str) -> tuple[bytes | mmap.mmap, str]:
    """(uncompressed content, compression: "" / "xz" / "zstd") of the module file at PATH.

    A user mistake (missing file, directory, corrupt compressed data) raises HarnessError.
    """
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size < 64:
                head = handle.read()
                if head.startswith(XZ_MAGIC) or head.startswith(ZSTD_MAGIC):
                    return _decompress(path, head)
                return head, ""
            head = handle.read(6)
            if head.startswith(XZ_MAGIC) or head.startswith(ZSTD_MAGIC):
                handle.seek(0)
                return _decompress(path, handle.read())
            if head.startswith(GZIP_MAGIC):
                raise HarnessError(
                    f"{path}: gzip-compressed modules are not supported (use .ko.xz or .ko.zst)"
                )
            return mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ), ""
    except FileNotFoundError:
        raise HarnessError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise HarnessError(f"{path}: is a directory, not a module file") from None
    except PermissionError:
        raise HarnessError(f"{path}: permission denied") from None
    except OSError as error:
        raise HarnessError(f"{path}: cannot read: {error.strerror or error}") from None


def _decompress(path: Path | str, data: bytes) -> tuple[bytes, str]:
    if data.startswith(XZ_MAGIC):
        try:
            return lzma.decompress(data, format=lzma.FORMAT_XZ), "xz"
        except (lzma.LZMAError, EOFError) as error:
            raise HarnessError(f"{path}: corrupt xz data: {error}") from None
    import zstandard  # a dependency; imported here because most modules read are not zstd

    try:
        return zstandard.ZstdDecompressor().stream_reader(data).read(), "zstd"
    except zstandard.ZstdError as error:
        raise HarnessError(f"{path}: corrupt zstd data: {error}") from None


def strip_module_suffix(name: str) -> str | None:
    """NAME without its module suffix (``usb-storage.ko.xz`` -> ``usb-storage``), None if it has none."""
    for suffix in MODULE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None

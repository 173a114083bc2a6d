"""The ``__versions`` section: the CRC of every symbol the module was built against.

``struct modversion_info { unsigned long crc; char name[64 - sizeof(unsigned long)]; }`` — 64-byte
entries. The kernel compares each CRC with the exporter's before linking a symbol, and always
checks ``module_layout`` (listed here though it is never an undefined symbol). A trailing partial
entry is ignored, as kmod and the kernel ignore it.
"""

from __future__ import annotations

import struct

from harness.elf.image import ElfImage
from harness.elf.model import VersionEntry, decode_text

_ENTRY = struct.Struct("<Q56s")


def read_versions(image: ElfImage) -> tuple[VersionEntry, ...]:
    """The entries of __versions in file order (empty without CONFIG_MODVERSIONS)."""
    section = image.section("__versions")
    if section is None:
        return ()
    data = image.content(section)
    usable = len(data) - len(data) % _ENTRY.size
    return tuple(
        VersionEntry(decode_text(name.partition(b"\0")[0]), crc)
        for crc, name in _ENTRY.iter_unpack(data[:usable])
    )


def crc_by_name(versions: tuple[VersionEntry, ...]) -> dict[str, int]:
    """Name -> CRC; with a name listed twice the first entry counts, as in kmod and the kernel."""
    crcs: dict[str, int] = {}
    for entry in versions:
        crcs.setdefault(entry.name, entry.crc)
    return crcs


_NAME = struct.Struct("<8x56s")


def version_names(image: ElfImage) -> list[bytes]:
    """Just the raw names of __versions, for the dependency scan of whole trees."""
    section = image.section("__versions")
    if section is None:
        return []
    data = image.content(section)
    usable = len(data) - len(data) % _ENTRY.size
    return [name.partition(b"\0")[0] for (name,) in _NAME.iter_unpack(data[:usable])]

"""The ``.modinfo`` section: NUL-separated ``key=value`` strings, in the order the source declared them.

Split exactly as kmod does (runs of NULs separate strings, empty strings are skipped, a string
without ``=`` is a key with an empty value), so ``kmh modinfo`` lists the same fields in the same
order as ``modinfo``.
"""

from __future__ import annotations

from harness.elf.image import ElfImage
from harness.elf.model import ModinfoField, decode_text


def raw_modinfo(image: ElfImage) -> list[tuple[bytes, bytes]]:
    """The (key, value) byte pairs of .modinfo, in file order."""
    pairs = []
    for string in image.content(image.require(".modinfo")).split(b"\0"):
        if string:
            key, _, value = string.partition(b"=")
            pairs.append((key, value))
    return pairs


def read_modinfo(image: ElfImage) -> tuple[ModinfoField, ...]:
    """The .modinfo fields as text."""
    return tuple(ModinfoField(decode_text(key), decode_text(value)) for key, value in raw_modinfo(image))

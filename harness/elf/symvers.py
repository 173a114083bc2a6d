"""Module.symvers: every symbol a kernel build exports, with CRC, owner, GPL flag and namespace.

One line per export: ``0xCRC<TAB>symbol<TAB>module<TAB>EXPORT_SYMBOL[_GPL]<TAB>namespace``; the
module column is ``vmlinux`` for the kernel itself, else the in-tree path without ``.ko``
(``drivers/usb/storage/usb-storage``). It is how a load-ability check knows what the running
kernel exports without booting it.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from harness.errors import HarnessError

VMLINUX = "vmlinux"


class SymversEntry(NamedTuple):
    """One exported symbol of a kernel build."""

    name: str
    crc: int
    #: ``vmlinux`` or the module path without ``.ko``.
    module: str
    gpl_only: bool
    namespace: str = ""


def read_symvers(path: Path | str) -> dict[str, SymversEntry]:
    """Symbol name -> entry for the Module.symvers at PATH."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as error:
        raise HarnessError(f"{path}: cannot read Module.symvers: {error.strerror}") from None
    entries: dict[str, SymversEntry] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) < 4:
            raise HarnessError(f"{path}:{number}: not a Module.symvers line: {line[:80]!r}")
        try:
            crc = int(fields[0], 16)
        except ValueError:
            raise HarnessError(f"{path}:{number}: bad CRC {fields[0]!r}") from None
        namespace = fields[4] if len(fields) > 4 else ""
        entries[fields[1]] = SymversEntry(fields[1], crc, fields[2], fields[3].endswith("_GPL"), namespace)
    return entries

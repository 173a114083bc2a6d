"""The symbol table (``.symtab``/``.strtab``): what a module needs and what it exports.

This is the hot table: a tree of 4000 modules holds ~830,000 symbols, and pyelftools' per-symbol
objects (``iter_symbols``) cost ~9 ms a module. Here the 24-byte ``Elf64_Sym`` entries are read
as columns (``memoryview.cast`` with a stride: one C-level pass per field) and only the names that
matter are decoded: undefined symbols, and the ``__ksymtab_``/``__kstrtabns_``/``__crc_`` markers.

How exports are recognised (kernel 6.1 and 6.12 alike): each ``EXPORT_SYMBOL*(name)`` leaves the
local symbols ``__ksymtab_<name>`` (its section, ``__ksymtab`` or ``__ksymtab_gpl``, tells whether
it is GPL-only), ``__kstrtabns_<name>`` (points at the namespace string) and, with modversions,
``__crc_<name>`` (points at the CRC in ``__kcrctab*``; older kernels made it an absolute symbol
whose value is the CRC). Reading these names needs no relocation decoding, and unlike splitting
``__ksymtab_strings`` it does not mistake namespace strings for symbols.
"""

from __future__ import annotations

import operator
import struct
import sys
from itertools import compress
from typing import NamedTuple

from harness.elf.image import SHN_LORESERVE, SHN_UNDEF, ElfImage, Section, cstring
from harness.elf.model import ExportedSymbol, UndefinedSymbol, decode_text

_SYM_SIZE = 24
_SHN_ABS = 0xFFF1
_STB_WEAK = 2
_KSYMTAB = b"__ksymtab_"
_MARKERS = (b"__ksymtab_", b"__kstrtabns_", b"__crc_")
_U32 = struct.Struct("<I")
_NATIVE_LITTLE = sys.byteorder == "little"


class _Columns(NamedTuple):
    """The symbol table as parallel lists (index 0, the null symbol, included)."""

    names: list[int]
    info: list[int]
    shndx: list[int]
    values: list[int]


class SymbolTable:
    """Decoded views of one module's .symtab, computed on demand."""

    def __init__(self, image: ElfImage) -> None:
        self.image = image
        symtab = image.require(".symtab")
        if not 0 < symtab.link < image.section_count:
            raise image.corrupt(".symtab links to a missing string table")
        strtab = image.content(image.section_at(symtab.link))
        # A final NUL guarantees every find(b"\0") below succeeds, even in a corrupt table.
        self.strtab = strtab if strtab.endswith(b"\0") else strtab + b"\0"
        raw = image.content(symtab)
        self.columns = _columns(raw[: len(raw) - len(raw) % _SYM_SIZE])

    def name(self, offset: int) -> bytes:
        if offset >= len(self.strtab):
            raise self.image.corrupt(f"symbol name offset {offset} outside the string table")
        return cstring(self.strtab, offset)

    def _check_names(self) -> None:
        """Every name offset lies inside .strtab (checked once, so the fast paths need not)."""
        if self.columns.names and max(self.columns.names) >= len(self.strtab):
            raise self.image.corrupt("a symbol name lies outside the string table")

    def undefined(self) -> list[tuple[bytes, bool]]:
        """(name, weak) of each undefined symbol, in table order; unnamed entries skipped (as kmod).

        ``itertools.compress`` over the st_shndx column selects them at C speed: only the ~20%
        of symbols that are undefined reach Python code.
        """
        self._check_names()
        cols, strtab = self.columns, self.strtab
        find = strtab.find
        is_undefined = list(map(operator.not_, cols.shndx))
        is_undefined[:1] = [False]
        found = []
        selected = zip(compress(cols.names, is_undefined), compress(cols.info, is_undefined), strict=True)
        for offset, info in selected:
            name = strtab[offset : find(b"\0", offset)]
            if name:
                found.append((name, info >> 4 == _STB_WEAK))
        return found

    def _marker_offsets(self, marker: bytes) -> set[int]:
        """Offsets in .strtab where a name starting with MARKER could begin (every occurrence)."""
        strtab = self.strtab
        offsets = set()
        at = strtab.find(marker)
        while at >= 0:
            offsets.add(at)
            at = strtab.find(marker, at + 1)
        return offsets

    def export_names(self) -> list[bytes]:
        """Names of the ``__ksymtab_*`` symbols, prefix removed: kmod's export list (in .strtab order).

        Only offsets where ``__ksymtab_`` occurs in .strtab can name one, so a set intersection
        (C speed) replaces a per-symbol prefix test.
        """
        self._check_names()
        strtab = self.strtab
        find = strtab.find
        hits = self._marker_offsets(_KSYMTAB).intersection(self.columns.names)
        return [strtab[offset + len(_KSYMTAB) : find(b"\0", offset)] for offset in sorted(hits)]

    def exports(self) -> list[ExportedSymbol]:
        """Every export with its GPL flag, namespace and CRC, in table order."""
        self._check_names()
        cols, image = self.columns, self.image
        markers = set().union(*(self._marker_offsets(marker) for marker in _MARKERS))
        ksymtab: list[tuple[bytes, int]] = []
        namespaces: dict[bytes, int] = {}
        crcs: dict[bytes, int] = {}
        for i, offset in enumerate(cols.names):
            if offset not in markers:
                continue
            full = self.name(offset)
            if not full.startswith(_MARKERS):
                continue
            if full.startswith(b"__ksymtab_"):
                ksymtab.append((full[10:], cols.shndx[i]))
            elif full.startswith(b"__kstrtabns_"):
                namespaces[full[12:]] = i
            else:
                crcs[full[6:]] = i
        result = []
        for name, shndx in ksymtab:
            section_name = image.section_at(shndx).name if 0 < shndx < image.section_count else ""
            result.append(
                ExportedSymbol(
                    name=decode_text(name),
                    gpl_only=section_name == "__ksymtab_gpl",
                    namespace=decode_text(self._namespace(namespaces.get(name))),
                    crc=self._crc(crcs.get(name)),
                )
            )
        return result

    def _namespace(self, index: int | None) -> bytes:
        if index is None:
            return b""
        section = self._section_of(index)
        if section is None:
            return b""
        return cstring(self.image.content(section), self.columns.values[index])

    def _crc(self, index: int | None) -> int | None:
        if index is None:
            return None
        value = self.columns.values[index]
        if self.columns.shndx[index] == _SHN_ABS:
            return value & 0xFFFFFFFF
        section = self._section_of(index)
        if section is None or value + 4 > section.size:
            raise self.image.corrupt("a __crc_ symbol points outside its section")
        return _U32.unpack_from(self.image.data, section.offset + value)[0]

    def _section_of(self, index: int) -> Section | None:
        shndx = self.columns.shndx[index]
        if shndx == SHN_UNDEF or shndx >= SHN_LORESERVE or shndx >= self.image.section_count:
            return None
        return self.image.section_at(shndx)


def _columns(raw: bytes) -> _Columns:
    if _NATIVE_LITTLE:
        view = memoryview(raw)
        return _Columns(
            names=view.cast("I")[0::6].tolist(),
            info=view[4::_SYM_SIZE].tolist(),
            shndx=view.cast("H")[3::12].tolist(),
            values=view.cast("Q")[1::3].tolist(),
        )
    rows = list(struct.iter_unpack("<IBBHQQ", raw))
    return _Columns(
        names=[row[0] for row in rows],
        info=[row[1] for row in rows],
        shndx=[row[3] for row in rows],
        values=[row[4] for row in rows],
    )


def undefined_symbols(table: SymbolTable, crcs: dict[str, int]) -> tuple[UndefinedSymbol, ...]:
    """The undefined symbols as data objects, each with its __versions CRC."""
    result = []
    for raw, weak in table.undefined():
        name = decode_text(raw)
        result.append(UndefinedSymbol(name, weak, crcs.get(name)))
    return tuple(result)

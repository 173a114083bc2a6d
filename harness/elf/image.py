"""ElfImage: one module's ELF structure, validated, with its sections addressable by name.

pyelftools parses and names the ELF header (its ``ELFStructs`` are built once per ELF class and
shared by every file: building them costs more than parsing a header). The section header table
is decoded with one ``struct.iter_unpack`` call: it is read for every module of a tree, and
pyelftools' per-section objects would cost ~0.3 ms a file (1.2 s over a 4000-module tree).

Every check that can fail on a bad file happens here, up front, so that the section readers
built on top can index the bytes without re-checking: a non-ELF file, a truncated or corrupt one,
a 32-bit, big-endian or foreign-architecture object, or an object that is not a module all end in
one :class:`~harness.errors.HarnessError` line.
"""

from __future__ import annotations

import mmap
import struct
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

from elftools.construct import ConstructError
from elftools.elf.enums import ENUM_SH_TYPE_BASE
from elftools.elf.structs import ELFStructs

from harness.elf.content import read_content
from harness.errors import HarnessError

SHT_NOBITS = 8
SHN_UNDEF = 0
SHN_LORESERVE = 0xFF00
SHN_XINDEX = 0xFFFF
_SECTION_HEADER = struct.Struct("<IIQQQQIIQQ")
_SH_TYPE_NAMES = {value: name.removeprefix("SHT_") for name, value in ENUM_SH_TYPE_BASE.items()}

#: Sections every loadable module has; a file without them is some other relocatable object.
REQUIRED_SECTIONS = (".modinfo", ".gnu.linkonce.this_module", ".symtab", ".strtab")

_structs_cache: dict[bool, ELFStructs] = {}


def _header_structs(little_endian: bool) -> ELFStructs:
    """pyelftools' 64-bit struct set for one byte order, built once per process."""
    structs = _structs_cache.get(little_endian)
    if structs is None:
        structs = ELFStructs(little_endian=little_endian, elfclass=64)
        structs.create_basic_structs()
        _structs_cache[little_endian] = structs
    return structs


class Section(NamedTuple):
    """One section header: where the section's bytes are and what kind of section it is."""

    index: int  # type: ignore[assignment]  # shadows tuple.index(); the ELF's word for it
    name: str
    type: int
    flags: int
    offset: int
    size: int
    link: int
    info: int
    entsize: int

    @property
    def type_name(self) -> str:
        """``PROGBITS``, ``SYMTAB``, ... (or the number, for types ELF does not name)."""
        return _SH_TYPE_NAMES.get(self.type, hex(self.type))


class ElfImage:
    """A validated x86-64 relocatable ELF object (a kernel module) held in memory."""

    def __init__(self, path: Path | str, data: bytes | mmap.mmap, compression: str = "") -> None:
        #: The file the image was read from (as given, for messages).
        self.path = path
        #: The whole uncompressed file (an mmap for plain files).
        self.data = data
        #: How the file is compressed on disk: "", "xz" or "zstd".
        self.compression = compression
        self._by_name: dict[bytes, int] = {}
        self._read_header()
        self._read_sections()

    @classmethod
    def open(cls, path: Path | str) -> ElfImage:
        """Read and validate the module at PATH (plain, .xz or .zst)."""
        data, compression = read_content(path)
        return cls(path, data, compression)

    # -- lookups -------------------------------------------------------------------------------

    @cached_property
    def sections(self) -> list[Section]:
        """Every section header, index 0 (the null section) included."""
        return [self._make(index) for index in range(len(self._raw))]

    def section(self, name: str) -> Section | None:
        """The first section called NAME (as kmod picks it), or None."""
        index = self._by_name.get(name.encode())
        return None if index is None else self._make(index)

    def require(self, name: str) -> Section:
        """The section NAME; its absence means the file is not a usable module."""
        index = self._by_name.get(name.encode())
        if index is None:
            raise HarnessError(f"{self.path}: not a kernel module: it has no {name} section")
        return self._make(index)

    @property
    def section_count(self) -> int:
        return len(self._raw)

    def section_at(self, index: int) -> Section:
        """Section number INDEX (the caller checks 0 <= INDEX < section_count)."""
        return self._make(index)

    def has(self, name: str) -> bool:
        return name.encode() in self._by_name

    def _make(self, index: int) -> Section:
        name_at, kind, flags, _addr, offset, size, link, info, _align, entsize = self._raw[index]
        name = self._names[index].decode("utf-8", "surrogateescape")
        return Section(index, name, kind, flags, offset, size, link, info, entsize)

    def content(self, section: Section) -> bytes:
        """The bytes of SECTION (empty for NOBITS sections such as .bss)."""
        if section.type == SHT_NOBITS:
            return b""
        return self.data[section.offset : section.offset + section.size]

    def require_module(self) -> None:
        """Check the sections every kernel module has, so readers can rely on them."""
        for name in REQUIRED_SECTIONS:
            if name.encode() not in self._by_name:
                self.require(name)

    def corrupt(self, what: str) -> HarnessError:
        """The error for a structure inside the file that contradicts itself."""
        return HarnessError(f"{self.path}: corrupt module: {what}")

    # -- parsing -------------------------------------------------------------------------------

    def _read_header(self) -> None:
        data, path = self.data, self.path
        if not data:
            raise HarnessError(f"{path}: empty file, not a kernel module")
        if len(data) < 16 or data[:4] != b"\x7fELF":
            raise HarnessError(f"{path}: not an ELF file (a kernel module is an ELF object)")
        if data[4] == 1:
            raise HarnessError(f"{path}: a 32-bit ELF object; x86-64 kernel modules are 64-bit")
        if data[4] != 2:
            raise HarnessError(f"{path}: corrupt ELF header: unknown class {data[4]}")
        if data[5] not in (1, 2):
            raise HarnessError(f"{path}: corrupt ELF header: unknown byte order {data[5]}")
        little_endian = data[5] == 1
        if len(data) < 64:
            raise HarnessError(f"{path}: truncated: {len(data)} bytes, shorter than an ELF header")
        try:
            header = _header_structs(little_endian).Elf_Ehdr.parse(bytes(data[:64]))
        except ConstructError as error:
            raise HarnessError(f"{path}: corrupt ELF header: {error}") from None
        machine = header["e_machine"]
        if machine != "EM_X86_64" or not little_endian:
            raise HarnessError(f"{path}: built for {_describe_machine(machine, little_endian)}, not x86-64")
        if header["e_type"] != "ET_REL":
            kind = {"ET_EXEC": "an executable", "ET_DYN": "a shared object", "ET_CORE": "a core dump"}
            raise HarnessError(
                f"{path}: not a kernel module: it is {kind.get(header['e_type'], header['e_type'])}, "
                "and modules are relocatable objects (ET_REL)"
            )
        self.header = header

    def _read_sections(self) -> None:
        data, header = self.data, self.header
        offset, count, entsize = header["e_shoff"], header["e_shnum"], header["e_shentsize"]
        if offset == 0:
            raise self.corrupt("no section header table")
        if entsize != _SECTION_HEADER.size:
            raise self.corrupt(f"section header size {entsize}, expected {_SECTION_HEADER.size}")
        if offset + _SECTION_HEADER.size > len(data):
            raise self._truncated("the section header table", offset + _SECTION_HEADER.size)
        if count == 0:  # extended numbering: the count is in section 0's sh_size
            count = _SECTION_HEADER.unpack_from(data, offset)[5]
        end = offset + count * entsize
        if end > len(data):
            raise self._truncated("the section header table", end)
        raw = list(_SECTION_HEADER.iter_unpack(data[offset:end]))
        strndx = header["e_shstrndx"]
        if strndx == SHN_XINDEX:
            strndx = raw[0][6]
        if not 0 < strndx < count:
            raise self.corrupt(f"section name table index {strndx} out of range")
        names = self._checked_bytes(raw[strndx], "the section name table")
        if not names.endswith(b"\0"):
            names += b"\0"
        size = len(data)
        if max((row[4] + row[5] for row in raw if row[1] != SHT_NOBITS), default=0) > size:
            index, row = next((i, r) for i, r in enumerate(raw) if r[1] != SHT_NOBITS and r[4] + r[5] > size)
            raise self._truncated(f"section {index}", row[4] + row[5])
        if max((row[0] for row in raw), default=0) >= len(names):
            raise self.corrupt("a section name lies outside the section name table")
        find = names.find
        section_names = [names[row[0] : find(b"\0", row[0])] for row in raw]
        by_name = self._by_name
        for index, name in enumerate(section_names):
            if name not in by_name:
                by_name[name] = index
        self._raw = raw
        self._names = section_names

    def _checked_bytes(self, raw: tuple[int, ...], what: str) -> bytes:
        offset, size = raw[4], raw[5]
        if offset + size > len(self.data):
            raise self._truncated(what, offset + size)
        return self.data[offset : offset + size]

    def _truncated(self, what: str, needed: int) -> HarnessError:
        return HarnessError(
            f"{self.path}: truncated or corrupt: {what} ends at byte {needed}, "
            f"but the file has {len(self.data)} bytes"
        )


def cstring(buffer: bytes, offset: int) -> bytes:
    """The NUL-terminated string at OFFSET of BUFFER (up to the end if it has no NUL)."""
    end = buffer.find(b"\0", offset)
    return buffer[offset:] if end < 0 else buffer[offset:end]


def _describe_machine(machine: str | int, little_endian: bool) -> str:
    from elftools.elf.descriptions import describe_e_machine

    described = describe_e_machine(machine) if isinstance(machine, str) else f"machine {machine}"
    return described if little_endian else f"{described} (big-endian)"

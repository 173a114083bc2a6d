"""KernelModule: one opened .ko, with each kind of fact read on first use.

``open_module`` validates the file once (ELF header, section table, required sections) and keeps
it; the section readers run only when asked, so ``kmh modinfo`` never decodes the symbol table and
``kmh deps`` never parses signatures. ``read_module`` gathers everything into a plain
:class:`~harness.elf.model.ModuleInfo`.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from harness.elf.image import ElfImage
from harness.elf.model import ModinfoField, ModuleInfo, SectionInfo, Signature, VersionEntry, decode_text
from harness.elf.modinfo import raw_modinfo, read_modinfo
from harness.elf.signature import read_signature
from harness.elf.symbols import SymbolTable, undefined_symbols
from harness.elf.versions import crc_by_name, read_versions


def module_name_from_path(path: Path | str) -> str:
    """The module name a file name implies: up to the first dot, dashes as underscores (kmod)."""
    return Path(path).name.split(".", 1)[0].replace("-", "_")


class KernelModule:
    """A validated kernel module file and lazy readers for its sections."""

    def __init__(self, image: ElfImage) -> None:
        image.require_module()
        self.image = image
        self.path = Path(image.path)

    @cached_property
    def raw_modinfo(self) -> list[tuple[bytes, bytes]]:
        return raw_modinfo(self.image)

    @cached_property
    def modinfo(self) -> tuple[ModinfoField, ...]:
        return read_modinfo(self.image)

    @cached_property
    def symbols(self) -> SymbolTable:
        return SymbolTable(self.image)

    @cached_property
    def versions(self) -> tuple[VersionEntry, ...]:
        return read_versions(self.image)

    @cached_property
    def signature(self) -> Signature | None:
        return read_signature(self.image.data)

    @property
    def name(self) -> str:
        for key, value in self.raw_modinfo:
            if key == b"name":
                return decode_text(value)
        return module_name_from_path(self.path)

    def info(self) -> ModuleInfo:
        """Every fact about the module as one plain data object."""
        image = self.image
        crcs = crc_by_name(self.versions)
        return ModuleInfo(
            path=self.path,
            name=self.name,
            modinfo=self.modinfo,
            exports=tuple(self.symbols.exports()),
            undefined=undefined_symbols(self.symbols, crcs),
            versions=self.versions,
            sections=tuple(SectionInfo(s.name, s.type_name, s.size) for s in image.sections[1:]),
            signature=self.signature,
            size=len(image.data),
            compression=image.compression,
        )


def open_module(path: Path | str) -> KernelModule:
    """Open and validate the module file at PATH (.ko, .ko.xz, .ko.zst); HarnessError if unusable."""
    return KernelModule(ElfImage.open(path))


def read_module(path: Path | str) -> ModuleInfo:
    """Everything about the module at PATH: modinfo fields, symbols, CRCs, sections, signature."""
    return open_module(path).info()

"""A stand-in for a shared library that the guest's programs link but never need to call.

kmod links libcrypto (4.7 MB, ~17,000 relocations) only to print the signer of a PKCS#7 module
signature in ``modinfo``; insmod, rmmod, modprobe and depmod never call it, and kmh's modules
are not signed. Yet every kmod start maps and relocates it, which under TCG costs ~5 ms per
insmod/rmmod, and it is 40% of the guest image (more to unpack at boot, more RAM in every boot
snapshot). So the image carries a stub with the same soname and symbol versions whose every
function returns 0 (NULL): kmod's signature reader then finds no signature, and ``modinfo`` in
the guest prints every field except the signer's (``sig_id``, ``signer``, ``sig_key``,
``sig_hashalgo``, ``signature``).

The stub is made from what the programs actually import (read from their ELF dynamic symbol
and version tables with pyelftools), so a newer kmod importing other functions gets them too,
and a program that imports a *data* object from the library keeps the real one.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerNeedSection, GNUVerSymSection
from elftools.elf.sections import SymbolTableSection

from harness.errors import HarnessError

#: Libraries replaced by a stub in the guest image (soname prefix).
STUBBED = ("libcrypto.so",)


def imports_from(program: Path, soname: str) -> dict[str, str] | None:
    """Function name → symbol version that PROGRAM imports from SONAME; None if it imports a
    non-function (a data object cannot be stubbed) or the binary has no version information."""
    with program.open("rb") as handle:
        elf = ELFFile(handle)
        dynsym = elf.get_section_by_name(".dynsym")
        versym = elf.get_section_by_name(".gnu.version")
        verneed = elf.get_section_by_name(".gnu.version_r")
        if not isinstance(dynsym, SymbolTableSection) or not isinstance(versym, GNUVerSymSection):
            return None
        if not isinstance(verneed, GNUVerNeedSection):
            return None
        versions: dict[int, str] = {}
        for needed, auxiliaries in verneed.iter_versions():
            if needed.name == soname:
                versions.update({aux["vna_other"]: aux.name for aux in auxiliaries})
        imported: dict[str, str] = {}
        for index, symbol in enumerate(dynsym.iter_symbols()):
            version = versions.get(versym.get_symbol(index)["ndx"])
            if version is None or not symbol.name:
                continue
            # A data object is copied into the program (a defined symbol with the library's
            # version): only undefined functions can be stubbed.
            if symbol["st_info"]["type"] != "STT_FUNC" or symbol["st_shndx"] != "SHN_UNDEF":
                return None
            imported[symbol.name] = version
        return imported


def stub_source(imported: dict[str, str]) -> tuple[str, str]:
    """(C source, linker version script) of a library exporting IMPORTED, each returning 0."""
    lines = ["/* kmh guest stub: every function fails cleanly (returns 0 / NULL). */"]
    lines += [f"long {name}(void) {{ return 0; }}" for name in sorted(imported)]
    script = []
    for version in sorted(set(imported.values())):
        names = " ".join(f"{name};" for name, v in sorted(imported.items()) if v == version)
        script.append(f"{version} {{ global: {names} local: *; }};")
    return "\n".join(lines) + "\n", "\n".join(script) + "\n"


def build_stub(gcc: Path, soname: str, programs: Iterable[Path]) -> bytes | None:
    """The stub of SONAME for PROGRAMS, or None when one of them needs the real library."""
    imported: dict[str, str] = {}
    for program in programs:
        found = imports_from(program, soname)
        if found is None:
            return None
        imported.update(found)
    if not imported:
        return None
    source, script = stub_source(imported)
    with tempfile.TemporaryDirectory() as tmp:
        c_file, map_file, out = Path(tmp) / "stub.c", Path(tmp) / "stub.map", Path(tmp) / soname
        c_file.write_text(source)
        map_file.write_text(script)
        argv = [str(gcc), "-shared", "-fPIC", "-O2", "-nostdlib", f"-Wl,-soname,{soname}"]
        argv += [f"-Wl,--version-script={map_file}", "-o", str(out), str(c_file)]
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode != 0:
            raise HarnessError(f"could not build the guest's {soname} stub", details=result.stderr)
        return out.read_bytes()


def stubbed(library: Path) -> bool:
    return library.name.startswith(STUBBED)

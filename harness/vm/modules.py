"""Pick a kernel target's own modules by name, with their dependencies, for the guest image.

The guest needs a few of the target's modules before the harness can talk to it (the virtio
console, pvpanic). Dependencies come from each module's ``.modinfo`` ``depends=`` field, the same
data depmod reads, so no modules.dep is needed in the unpacked tree. Module files are read by
:mod:`harness.elf` (one reader, so both agree on which compressions exist); compressed modules
are stored decompressed so the guest can load them with a plain ``finit_module``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.elf.content import MODULE_SUFFIXES, read_content, strip_module_suffix
from harness.elf.image import ElfImage
from harness.elf.modinfo import raw_modinfo
from harness.errors import HarnessError


def module_name(path: Path) -> str:
    """The module name the kernel uses: file name without suffix, dashes as underscores."""
    return (strip_module_suffix(path.name) or path.name).replace("-", "_")


def read_module(path: Path) -> bytes:
    """The uncompressed ELF bytes of a module file (read as :mod:`harness.elf` reads it)."""
    data, _compression = read_content(path)
    return bytes(data)


def modinfo_depends(elf_bytes: bytes, path: Path | str = "<module>") -> list[str]:
    """The ``depends=`` list from a module's .modinfo section."""
    image = ElfImage(path, elf_bytes)
    if not image.has(".modinfo"):
        return []
    for key, value in raw_modinfo(image):
        if key == b"depends":
            return [name.replace("-", "_") for name in value.decode().split(",") if name]
    return []


@dataclass(frozen=True)
class GuestModule:
    """A target module chosen for the guest: its name, path in the tree and uncompressed bytes."""

    name: str
    relpath: str  # relative to lib/modules/<release>, with the compression suffix dropped
    data: bytes


class ModuleTree:
    """Index of a target's ``lib/modules/<release>`` by module name."""

    def __init__(self, modules_dir: Path) -> None:
        self.modules_dir = modules_dir
        self.paths: dict[str, Path] = {}
        for path in (modules_dir / "kernel").rglob("*.ko*"):
            if path.name.endswith(MODULE_SUFFIXES):
                self.paths.setdefault(module_name(path), path)
        self.builtin = self._builtin_names()

    def _builtin_names(self) -> set[str]:
        listing = self.modules_dir / "modules.builtin"
        if not listing.is_file():
            return set()
        return {module_name(Path(line.strip())) for line in listing.read_text().splitlines() if line}

    def resolve(self, names: list[str], *, optional: bool = False) -> list[GuestModule]:
        """NAMES and everything they depend on, dependencies first (load order).

        Built-in names are skipped. Unknown names raise HarnessError unless ``optional``.
        """
        ordered: list[GuestModule] = []
        seen: set[str] = set()

        def visit(name: str, chain: tuple[str, ...]) -> None:
            name = name.replace("-", "_")
            if name in seen or name in self.builtin:
                return
            if name in chain:
                raise HarnessError(f"module dependency cycle: {' -> '.join((*chain, name))}")
            path = self.paths.get(name)
            if path is None:
                if optional and not chain:
                    return
                raise HarnessError(f"module {name!r} is neither built in nor in {self.modules_dir}")
            data = read_module(path)
            for dep in modinfo_depends(data, path):
                visit(dep, (*chain, name))
            seen.add(name)
            rel = path.relative_to(self.modules_dir).as_posix()
            rel = (strip_module_suffix(rel) or rel) + ".ko"
            ordered.append(GuestModule(name, rel, data))

        for name in names:
            visit(name, ())
        return ordered

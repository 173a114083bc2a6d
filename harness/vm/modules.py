"""Pick a kernel target's own modules by name, with their dependencies, for the guest image.

The guest needs a few of the target's modules before the harness can talk to it (the virtio
console, pvpanic). Dependencies come from each module's ``.modinfo`` ``depends=`` field, the same
data depmod reads, so no modules.dep is needed in the unpacked tree. Module files are read by
:mod:`harness.elf` (one reader, so both agree on which compressions exist); compressed modules
are stored decompressed so the guest can load them with a plain ``finit_module``.
"""

from __future__ import annotations

import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.elf.content import MODULE_SUFFIXES, read_content, strip_module_suffix
from harness.elf.image import ElfImage
from harness.elf.modinfo import raw_modinfo
from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.vm.backend import VMBackend


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


def modinfo_softdeps(elf_bytes: bytes, path: Path | str = "<module>") -> tuple[list[str], list[str]]:
    """(pre, post) names of a module's ``softdep=`` fields (``pre: a b post: c``), as modprobe reads them.

    modprobe loads ``pre`` modules before the module and ``post`` ones after it; the names may be
    aliases (libcrc32c's ``pre: crc32c`` is matched by crc32c_generic and crc32c_intel).
    """
    image = ElfImage(path, elf_bytes)
    if not image.has(".modinfo"):
        return [], []
    pre: list[str] = []
    post: list[str] = []
    for key, value in raw_modinfo(image):
        if key != b"softdep":
            continue
        current = pre
        for word in value.decode(errors="replace").split():
            if word in ("pre:", "post:"):
                current = pre if word == "pre:" else post
            else:
                current.append(word)
    return pre, post


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
        self._aliases: dict[str, list[str]] | None = None

    def _builtin_names(self) -> set[str]:
        listing = self.modules_dir / "modules.builtin"
        if not listing.is_file():
            return set()
        return {module_name(Path(line.strip())) for line in listing.read_text().splitlines() if line}

    def alias_targets(self, alias: str) -> list[str]:
        """Modules whose ``alias=`` is exactly ALIAS (read from every module once: ~2 s for 4000)."""
        if self._aliases is None:
            self._aliases = {}
            for name, path in sorted(self.paths.items()):
                image = ElfImage(path, read_module(path))
                if not image.has(".modinfo"):
                    continue
                for key, value in raw_modinfo(image):
                    if key == b"alias":
                        self._aliases.setdefault(value.decode(errors="replace"), []).append(name)
        return self._aliases.get(alias, [])

    def softdep_names(self, name: str) -> list[str]:
        """What a softdep entry NAME means here: the module itself, else the modules aliased so."""
        name = name.replace("-", "_")
        if name in self.paths or name in self.builtin:
            return [name]
        return self.alias_targets(name)

    def resolve(self, names: list[str], *, optional: bool = False) -> list[GuestModule]:
        """NAMES and everything they depend on, dependencies first (load order).

        Soft dependencies (``softdep=pre:``/``post:``) come along too, as modprobe loads them:
        without them e.g. libcrc32c cannot find its crc32c transform. A softdep the tree lacks is
        skipped, as modprobe skips it. Built-in names are skipped. Unknown names raise
        HarnessError unless ``optional``.
        """
        ordered: list[GuestModule] = []
        seen: set[str] = set()

        def visit(name: str, chain: tuple[str, ...], soft: bool = False) -> None:
            name = name.replace("-", "_")
            if name in seen or name in self.builtin:
                return
            if name in chain:
                if soft:
                    return  # softdeps may point back (modprobe ignores such loops too)
                raise HarnessError(f"module dependency cycle: {' -> '.join((*chain, name))}")
            path = self.paths.get(name)
            if path is None:
                if soft or (optional and not chain):
                    return
                raise HarnessError(f"module {name!r} is neither built in nor in {self.modules_dir}")
            data = read_module(path)
            pre, post = modinfo_softdeps(data, path)
            for soft_name in pre:
                for target in self.softdep_names(soft_name):
                    visit(target, (*chain, name), soft=True)
            for dep in modinfo_depends(data, path):
                visit(dep, (*chain, name))
            seen.add(name)
            rel = path.relative_to(self.modules_dir).as_posix()
            rel = (strip_module_suffix(rel) or rel) + ".ko"
            ordered.append(GuestModule(name, rel, data))
            for soft_name in post:
                for target in self.softdep_names(soft_name):
                    visit(target, (*chain, name), soft=True)

        for name in names:
            visit(name, ())
        return ordered


def guest_path(module: GuestModule, release: str) -> str:
    return f"/lib/modules/{release}/{module.relpath}"


def missing_command(modules: list[GuestModule], release: str) -> str:
    """A guest shell command printing the guest paths of MODULES the guest does not have yet.

    A full distribution box (Vagrant) has the whole tree, possibly compressed; the QEMU guest
    has only its boot modules and what earlier runs in it added.
    """
    paths = " ".join(shlex.quote(guest_path(module, release)) for module in modules)
    return f'for f in {paths}; do [ -e "$f" ] || [ -e "$f.xz" ] || [ -e "$f.zst" ] || echo "$f"; done'


def install_in_guest(vm: VMBackend, modules: list[GuestModule], release: str) -> None:
    """Copy target modules into a running guest's ``/lib/modules/RELEASE`` at their tree paths.

    The guest image carries only its boot modules; modules a run finds it needs after the guest
    booted (the kernel-tree dependencies of freshly built modules) come this way, and a
    ``depmod -a`` in the guest then lets modprobe find them, softdeps included. Pass only the
    ones :func:`missing_command` reported.
    """
    if not modules:
        return
    with tempfile.TemporaryDirectory(prefix="kmh-tree-") as tmp:
        for module in modules:
            local = Path(tmp) / f"{module.name}.ko"
            local.write_bytes(module.data)
            vm.put(local, guest_path(module, release))

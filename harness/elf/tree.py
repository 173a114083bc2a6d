"""ModuleTree: the modules of a ``lib/modules/<release>`` directory, in depmod's order.

What depmod (kmod 30) does, and this reproduces:

* it walks the directory (readdir order, following symlinks, skipping ``build`` and ``source``)
  and takes every ``.ko``, ``.ko.xz`` and ``.ko.zst`` file;
* two files with one module name: the one under ``updates/`` wins (depmod's default search
  order), otherwise the first one found;
* the module list is built by walking kmod's name hash table, then stably sorted by each module's
  line in ``modules.order`` (matched on the path without compression suffix); modules missing
  from modules.order share one sort index, so they come last, in hash-table order; a
  modules.order whose last line lacks its newline is ignored, as depmod ignores it.

Each module's dependency facts (export names, undefined symbols, __versions names) are read with
the fast symbol-table decoder; compressed trees are decoded by a process pool, since xz
decompression is most of their cost.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from harness.elf.content import strip_module_suffix
from harness.elf.image import ElfImage
from harness.elf.kmodhash import MODULES_BY_NAME_BUCKETS, iteration_order
from harness.elf.symbols import SymbolTable
from harness.elf.versions import version_names
from harness.errors import HarnessError

#: depmod's default search order: a module under updates/ overrides one elsewhere.
PRIORITY_DIRS = ("updates",)
_PARALLEL_MIN = 64


@dataclass(slots=True)
class TreeModule:
    """One module file of a tree and the symbol facts dependencies are computed from."""

    #: Normalised module name (dashes as underscores): the key depmod and modprobe use.
    name: str
    #: Path relative to the tree, as written in modules.dep (compression suffix kept).
    relpath: str
    #: The file's path as a string (a Path is built on demand: thousands of them cost ~50 ms).
    location: str
    #: Exported symbol names (kmod's list: ``__ksymtab_*`` symbols, in table order).
    exports: list[bytes] = field(default_factory=list)
    #: (symbol, weak) for each undefined symbol, then __versions names with no undefined symbol.
    needs: list[tuple[bytes, bool]] = field(default_factory=list)
    #: Why the file could not be read (empty, truncated, not ELF): it then has no symbols and,
    #: as with depmod, still gets its (empty) modules.dep line.
    error: str = ""

    @property
    def path(self) -> Path:
        return Path(self.location)

    @property
    def uncompressed_relpath(self) -> str:
        """The relpath as modules.order spells it (``.ko``, no compression suffix)."""
        directory, _, base = self.relpath.rpartition("/")
        stem = strip_module_suffix(base) or base
        return f"{directory}/{stem}.ko" if directory else f"{stem}.ko"


def module_facts(path: Path | str) -> tuple[list[bytes], list[tuple[bytes, bool]]]:
    """(exports, needs) of the module file at PATH, as depmod reads them."""
    image = ElfImage.open(path)
    image.require_module()
    table = SymbolTable(image)
    undefined = table.undefined()
    seen = {name for name, _weak in undefined}
    needs = list(undefined)
    for raw in version_names(image):
        if raw not in seen:
            seen.add(raw)
            needs.append((raw, False))
    return table.export_names(), needs


def _facts_or_error(path: str) -> tuple[list[bytes], list[tuple[bytes, bool]], str]:
    """module_facts, or no facts and the reason: one bad file must not hide a whole tree."""
    try:
        exports, needs = module_facts(path)
    except HarnessError as error:
        return [], [], error.message
    return exports, needs, ""


class ModuleTree:
    """The modules of one tree directory, in depmod's order, with their symbol facts."""

    def __init__(self, root: Path, modules: list[TreeModule]) -> None:
        self.root = root
        #: In depmod's order (the order of modules.dep lines).
        self.modules = modules
        self.by_name = {module.name: module for module in modules}

    def __iter__(self) -> Iterator[TreeModule]:
        return iter(self.modules)

    def __len__(self) -> int:
        return len(self.modules)

    @property
    def unreadable(self) -> list[TreeModule]:
        """Module files whose symbols could not be read (depmod: "failed to load symbols")."""
        return [module for module in self.modules if module.error]

    def find(self, name_or_path: str) -> TreeModule:
        """The module called NAME (dashes or underscores), or with that relative path."""
        key = Path(name_or_path).name
        stem = strip_module_suffix(key)
        if stem is not None:
            for module in self.modules:
                if module.relpath == name_or_path:
                    return module
            key = stem
        found = self.by_name.get(key.replace("-", "_"))
        if found is None:
            raise HarnessError(f"no module {name_or_path!r} in {self.root}")
        return found

    @classmethod
    def scan(cls, root: Path | str, *, read_symbols: bool = True) -> ModuleTree:
        """Find the modules under ROOT (a lib/modules/<release> directory) and read their symbols."""
        root = Path(root)
        if not root.is_dir():
            raise HarnessError(f"{root}: not a directory (expected a lib/modules/<release> tree)")
        chosen: dict[str, TreeModule] = {}
        base_dir = os.fspath(root)
        for relpath in _walk(base_dir, ""):
            base = relpath.rpartition("/")[2]
            name = base.split(".", 1)[0].replace("-", "_")
            previous = chosen.get(name)
            if previous is not None and not _overrides(relpath, previous.relpath):
                continue
            chosen[name] = TreeModule(name, relpath, os.path.join(base_dir, relpath))
        if not chosen:
            raise HarnessError(f"{root}: no kernel modules (.ko, .ko.xz, .ko.zst) found")
        order = iteration_order([name.encode() for name in chosen], MODULES_BY_NAME_BUCKETS)
        modules = [chosen[key.decode()] for key in order]
        modules = _sort_by_modules_order(root, modules)
        if read_symbols:
            read_symbols_of(modules)
        return cls(root, modules)


def walk_module_files(root: str) -> Iterator[str]:
    """Relative paths of the module files under ROOT, in readdir order, as depmod walks it."""
    return _walk(root, "")


def _walk(root: str, prefix: str) -> Iterator[str]:
    """Relative paths of module files, in readdir order, as depmod walks the tree."""
    directory = os.path.join(root, prefix) if prefix else root
    try:
        entries = list(os.scandir(directory))
    except OSError as error:
        raise HarnessError(f"{directory}: cannot list: {error.strerror}") from None
    for entry in entries:
        if entry.name in ("build", "source"):
            continue
        relpath = f"{prefix}{entry.name}"
        try:
            is_dir = entry.is_dir()
        except OSError:
            continue
        if is_dir:
            yield from _walk(root, relpath + "/")
        elif strip_module_suffix(entry.name) is not None:
            yield relpath


def _priority(relpath: str) -> int:
    top = relpath.partition("/")[0]
    return PRIORITY_DIRS.index(top) if top in PRIORITY_DIRS else -1


def _overrides(new: str, old: str) -> bool:
    """Whether the module file NEW replaces OLD of the same name (depmod: updates/ beats the rest)."""
    return _priority(new) > _priority(old)


def _sort_by_modules_order(root: Path, modules: list[TreeModule]) -> list[TreeModule]:
    try:
        text = (root / "modules.order").read_bytes()
    except OSError:
        return modules
    if not text:
        return modules
    if not text.endswith(b"\n"):
        return modules  # depmod: "corrupted line misses '\n'", and skips the sort
    lines = text.split(b"\n")[:-1]
    total = len(lines) + 1
    by_uncompressed = {module.uncompressed_relpath: module for module in modules}
    sort_index = {id(module): 1 for module in modules}
    for number, line in enumerate(lines, start=1):
        module = by_uncompressed.get(os.fsdecode(line))
        if module is not None:
            sort_index[id(module)] = number - total
    return sorted(modules, key=lambda module: sort_index[id(module)])


def read_symbols_of(modules: list[TreeModule]) -> None:
    """Fill in exports and needs of MODULES (a process pool decodes compressed files)."""
    compressed = [m for m in modules if not m.relpath.endswith(".ko")]
    workers = min(os.cpu_count() or 1, 8)
    if len(compressed) >= _PARALLEL_MIN and workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers) as pool:
            chunk = max(1, len(compressed) // (workers * 8))
            for module, facts in zip(
                compressed,
                pool.map(_facts_or_error, [m.location for m in compressed], chunksize=chunk),
                strict=True,
            ):
                module.exports, module.needs, module.error = facts
        remaining = [m for m in modules if m.relpath.endswith(".ko")]
    else:
        remaining = modules
    for module in remaining:
        module.exports, module.needs, module.error = _facts_or_error(module.location)

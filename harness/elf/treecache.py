"""A per-file cache of a tree's symbol facts, so repeated checks against a target are quick.

Reading a target's 4000 modules takes ~1 s when they are plain and ~7 s when they are .ko.xz
(Debian's 6.12 packages): decompression dominates. ``kmh check`` needs those facts every time,
so they are kept in the user's cache, one entry per module file keyed by (size, mtime, inode):
a changed or added file is re-read, an unchanged one never. ``kmh deps`` does not use it; its
output is compared byte for byte with depmod and is always computed from the files.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

from harness.elf.tree import ModuleTree, TreeModule, read_symbols_of, walk_module_files
from harness.errors import HarnessError
from harness.paths import cache_root

_VERSION = 2  # 2: entries carry the read error of an unreadable file


def _cache_file(root: Path, kind: str = "tree") -> Path:
    """Where the KIND ("tree" or "index") cache of the tree at ROOT is kept."""
    digest = hashlib.sha256(os.fsencode(root.resolve())).hexdigest()[:16]
    return cache_root() / "elf" / f"{kind}-{digest}.pickle"


def _dump(path: Path, data: object) -> None:
    """Pickle DATA to PATH atomically: a reader sees the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    with open(temporary, "wb") as handle:
        pickle.dump(data, handle, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(temporary, path)


def _stamp(path: str) -> tuple[int, int, int]:
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns, stat.st_ino


def cached_tree(root: Path | str) -> ModuleTree:
    """ModuleTree.scan(ROOT), re-reading only the module files that changed since last time."""
    root = Path(root)
    tree = ModuleTree.scan(root, read_symbols=False)
    cache_file = _cache_file(root)
    try:
        with open(cache_file, "rb") as handle:
            version, entries = pickle.load(handle)
        if version != _VERSION:
            entries = {}
    except (OSError, pickle.PickleError, EOFError, ValueError, TypeError):
        entries = {}
    stale: list[TreeModule] = []
    stamps = {}
    for module in tree.modules:
        stamp = _stamp(module.location)
        stamps[module.relpath] = stamp
        entry = entries.get(module.relpath)
        if entry is not None and entry[0] == stamp:
            module.exports, module.needs, module.error = entry[1], entry[2], entry[3]
        else:
            stale.append(module)
    if stale or len(entries) != len(tree.modules):
        read_symbols_of(stale)
        fresh = {m.relpath: (stamps[m.relpath], m.exports, m.needs, m.error) for m in tree.modules}
        _dump(cache_file, (_VERSION, fresh))
    return tree


_INDEX_VERSION = 1


@dataclass(frozen=True)
class TreeIndex:
    """Who exports what in a tree, without what each module needs.

    Most load-ability checks ask only that: does any module of the target export a symbol this
    module needs or exports? Debian's 6.1 tree holds 14,000 exports but 189,000 needed-symbol
    entries, and loading those made every ``kmh run`` read the whole tree for ~0.2-0.3 s where
    this index loads in ~5 ms; the whole tree is read only when a tree module is a provider.
    """

    root: Path
    #: (name, relpath, path) of each module, in depmod's order.
    modules: tuple[tuple[str, str, str], ...]
    #: Exported symbol -> positions in MODULES of its exporters, in depmod's order.
    exporters: dict[bytes, tuple[int, ...]]

    @functools.cached_property
    def position(self) -> dict[str, int]:
        """Module name -> its position in MODULES."""
        return {name: at for at, (name, _relpath, _path) in enumerate(self.modules)}

    def owner(self, symbol: bytes) -> str | None:
        """The module depmod makes the symbol's owner (the later exporter wins), if any."""
        found = self.exporters.get(symbol)
        return self.modules[found[-1]][0] if found else None

    @classmethod
    def of(cls, tree: ModuleTree) -> TreeIndex:
        exporters: dict[bytes, list[int]] = {}
        for at, module in enumerate(tree.modules):
            for symbol in module.exports:
                found = exporters.setdefault(symbol, [])
                if at not in found[-1:]:
                    found.append(at)
        return cls(
            tree.root,
            tuple((m.name, m.relpath, m.location) for m in tree.modules),
            {symbol: tuple(found) for symbol, found in exporters.items()},
        )


def _tree_stamp(root: Path) -> str:
    """A digest of every module file's (path, size, mtime, inode) and of modules.order: what
    the tree's module list and symbol facts are derived from."""
    digest = hashlib.sha256(os.fsencode(root.resolve()))
    base = os.fspath(root)
    for relpath in sorted(walk_module_files(base)):
        digest.update(f"{relpath}\0{_stamp(os.path.join(base, relpath))}\n".encode(errors="surrogateescape"))
    try:
        digest.update(repr(_stamp(os.path.join(base, "modules.order"))).encode())
    except OSError:
        digest.update(b"no modules.order")
    return digest.hexdigest()


def tree_index(root: Path | str) -> TreeIndex:
    """The TreeIndex of ROOT, from the cache when no module file changed since it was made."""
    root = Path(root)
    if not root.is_dir():
        raise HarnessError(f"{root}: not a directory (expected a lib/modules/<release> tree)")
    index_file = _cache_file(root, "index")
    stamp = _tree_stamp(root)
    try:
        with open(index_file, "rb") as handle:
            version, saved_stamp, index = pickle.load(handle)
        if version == _INDEX_VERSION and saved_stamp == stamp and isinstance(index, TreeIndex):
            return index
    except (OSError, pickle.PickleError, EOFError, ValueError, TypeError, AttributeError):
        pass
    index = TreeIndex.of(cached_tree(root))
    _dump(index_file, (_INDEX_VERSION, stamp, index))
    return index

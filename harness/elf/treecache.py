"""A per-file cache of a tree's symbol facts, so repeated checks against a target are quick.

Reading a target's 4000 modules takes ~1 s when they are plain and ~7 s when they are .ko.xz
(Debian's 6.12 packages): decompression dominates. ``kmh check`` needs those facts every time,
so they are kept in the user's cache, one entry per module file keyed by (size, mtime, inode):
a changed or added file is re-read, an unchanged one never. ``kmh deps`` does not use it; its
output is compared byte for byte with depmod and is always computed from the files.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

from harness.elf.tree import ModuleTree, TreeModule, read_symbols_of
from harness.paths import cache_root

_VERSION = 2  # 2: entries carry the read error of an unreadable file


def _cache_file(root: Path) -> Path:
    digest = hashlib.sha256(os.fsencode(root.resolve())).hexdigest()[:16]
    return cache_root() / "elf" / f"tree-{digest}.pickle"


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
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        temporary = cache_file.with_suffix(f".{os.getpid()}.tmp")
        with open(temporary, "wb") as handle:
            pickle.dump((_VERSION, fresh), handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(temporary, cache_file)
    return tree

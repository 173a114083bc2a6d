"""Module source directories travel with their cell, so a worker needs no copy of the user's tree.

Templates are rendered and the kernel's own modules found on the worker, but a spec whose module
(or companion) is a source directory names a path on the client's machine. The client packs each
such directory into the cell (without build products, as kbuild's private copy would skip them);
the worker unpacks it into the cell's scratch directory and points the specs there. Module
sources are small; a directory too big to send is a clear error rather than a slow run.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import io
import tarfile
from pathlib import Path

from harness.cluster.cells import Cell
from harness.errors import HarnessError
from harness.kbuild.kbuild import BUILD_PRODUCTS
from harness.lifecycle.spec import ModuleDef, ModuleSpec

#: The most a source directory may weigh once packed.
MAX_PACKED = 32 * 1024 * 1024


def pack_sources(cell: Cell) -> Cell:
    """``cell`` carrying the packed contents of every source directory its specs name."""
    packed: dict[str, bytes] = dict(cell.sources)
    for item in cell.items:
        for definition in _definitions(item.spec):
            if definition.source is not None and str(definition.source) not in packed:
                packed[str(definition.source)] = _pack(definition.source)
    return dataclasses.replace(cell, sources=tuple(packed.items()))


def unpack_sources(cell: Cell, scratch: Path) -> Cell:
    """``cell`` with its specs pointing at unpacked copies under ``scratch`` (no-op without sources)."""
    if not cell.sources:
        return cell
    moved: dict[Path, Path] = {}
    for number, (original, data) in enumerate(cell.sources):
        directory = scratch / f"src{number}" / Path(original).name
        directory.mkdir(parents=True)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            # The "data" filter (no absolute paths, links out or devices) where Python has it;
            # the archive comes from the client, which the worker trusts with code anyway.
            if hasattr(tarfile, "data_filter"):
                archive.extractall(directory, filter="data")
            else:  # pragma: no cover - Python before 3.11.4
                archive.extractall(directory)
        moved[Path(original)] = directory
    items = tuple(dataclasses.replace(item, spec=_moved(item.spec, moved)) for item in cell.items)
    return dataclasses.replace(cell, items=items, sources=())


def _definitions(spec: ModuleSpec) -> tuple[ModuleDef, ...]:
    return (*spec.companions, spec.module)


def _moved(spec: ModuleSpec, moved: dict[Path, Path]) -> ModuleSpec:
    def move(definition: ModuleDef) -> ModuleDef:
        if definition.source is None or definition.source not in moved:
            return definition
        return dataclasses.replace(definition, source=moved[definition.source])

    return dataclasses.replace(
        spec, module=move(spec.module), companions=tuple(move(d) for d in spec.companions)
    )


def _pack(directory: Path) -> bytes:
    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        name = Path(info.name).name
        return None if any(fnmatch.fnmatch(name, pattern) for pattern in BUILD_PRODUCTS) else info

    buffer = io.BytesIO()
    try:
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            archive.add(directory, arcname=".", filter=keep)
    except OSError as error:
        raise HarnessError(f"--cluster: cannot pack the module source {directory}: {error}") from None
    if buffer.tell() > MAX_PACKED:
        raise HarnessError(
            f"--cluster: the module source {directory} is {buffer.tell() // 2**20} MiB packed; "
            f"a cell carries at most {MAX_PACKED // 2**20} MiB (remove build output or large files)"
        )
    return buffer.getvalue()


__all__ = ["pack_sources", "unpack_sources"]

"""kbuild inside a guest that has its own compiler and headers (the Vagrant box), as BuildResults.

The guest builds all directories in one batched ``make`` (see ``VagrantVM.build``); failures are
handled by the same batch-and-blame algorithm as the host's kbuild
(:mod:`harness.kbuild.batching`), with the compiler's diagnostics mapped from the guest's paths
back to the user's files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from harness.errors import HarnessError
from harness.kbuild.batching import batch_and_blame
from harness.kbuild.diagnostics import Diagnostic, modpost_diagnostics, parse_diagnostics
from harness.kbuild.kbuild import BuildResult, BuiltModule, module_files
from harness.kernels.target import KernelTarget
from harness.paths import cache_root


class BuildingGuest(Protocol):
    def build(self, sources: list[Path], out_dir: Path | None = None) -> list[Path]: ...


#: Where the guest unpacks the sources (``<root>/batch/<dir name>``); see VagrantVM.build.
GUEST_BATCH = Path("/root/kmh-build/batch")


def build_in_guest(vm: BuildingGuest, directories: list[Path], kernel: KernelTarget) -> list[BuildResult]:
    """Build DIRECTORIES in the guest; like the host's batched kbuild, a module that fails does
    not take the others down: the batch is built again without the modules the compiler or
    modpost named, and only failures nobody can be blamed for fall back to one build each."""
    out = cache_root() / "guest-build" / kernel.release
    for directory in directories:
        if (directory / "dkms.conf").is_file():
            raise HarnessError(
                f"{directory}: a DKMS tree is built on the host with its own MAKE[0]; "
                "run it without building in the VM"
            )
        module_files(directory.resolve())  # FIFOs, devices, symlinks out of the tree: refused by name
    results = [
        BuildResult(source_dir=d.resolve(), kernel=kernel, build_dir=out / d.name) for d in directories
    ]

    def make(batch: list[BuildResult]) -> set[Path]:
        try:
            _collect(vm.build([r.source_dir for r in batch], out), batch)
            return set()
        except HarnessError as error:
            log = f"{error.message}\n{error.details}"
        grouped = _diagnostics(log, batch)
        for result in batch:
            result.log = log
            result.diagnostics = grouped.get(result.source_dir, [])
        return {result.source_dir for result in batch if result.errors}

    batch_and_blame(results, make)  # type: ignore[arg-type]
    return results


def _collect(kos: list[Path], results: list[BuildResult]) -> None:
    for result in results:
        mine = [ko for ko in kos if ko.is_relative_to(result.build_dir)]
        result.modules = [BuiltModule(ko.stem, ko, result.kernel, result.source_dir) for ko in mine]


def _diagnostics(log: str, results: list[BuildResult]) -> dict[Path, list[Diagnostic]]:
    """Compiler diagnostics (guest paths mapped back) and modpost's, per source directory."""
    grouped = parse_diagnostics(log, {GUEST_BATCH / r.source_dir.name: r.source_dir for r in results})

    def owner_of(module: str) -> Path | None:
        for result in results:
            if any(f"{module}.o" in p.read_text() for p in _build_files(result.source_dir)):
                return result.source_dir
        return None

    for source, found in modpost_diagnostics(log, owner_of).items():
        grouped.setdefault(source, []).extend(found)
    return grouped


def _build_files(directory: Path) -> list[Path]:
    return [path for path in (directory / "Kbuild", directory / "Makefile") if path.is_file()]

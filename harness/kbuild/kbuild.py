"""Batched out-of-tree kbuild: many module directories, one ``make``.

kbuild's per-invocation cost (reading the kernel's Makefiles, the config, modpost over all of
Module.symvers) dwarfs compiling a small module, so building N modules with N ``make`` runs is
slow. Here every module directory gets a private copy under the build root, and one umbrella
directory whose Kbuild says ``obj-y += m0/ m1/ ...`` (symlinks to the copies) is built with
``make -C KDIR M=umbrella``. One modpost sees all modules, so a consumer links against an
exporter built in the same batch with no KBUILD_EXTRA_SYMBOLS.

When one module fails to compile, modpost does not run for anyone; the batch is then built again
without the modules that failed (their objects are already there, so this is quick) and, if
failures cannot be attributed, each module alone, so one bad module never hides the others.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from plumbum import local

from harness.buildenv import command_for
from harness.errors import HarnessError
from harness.kbuild.diagnostics import Diagnostic, modpost_diagnostics, parse_diagnostics
from harness.kernels.target import KernelTarget
from harness.paths import cache_root

#: Files of a previous build that must not be copied into the build tree.
BUILD_PRODUCTS = (
    "*.o", "*.ko", "*.mod", "*.mod.c", "*.cmd", ".*.cmd", "Module.symvers", "modules.order",
    ".tmp_versions", "*.ko.*", ".cache.mk",
)  # fmt: skip
FAILED_TARGET = re.compile(r"\*\*\* \[[^\]]*?(?P<path>/\S+?)\] Error \d+")


@dataclass(frozen=True)
class BuiltModule:
    """A ``.ko`` produced for one kernel from one source directory."""

    name: str
    path: Path
    kernel: KernelTarget
    source_dir: Path


@dataclass
class BuildResult:
    """The outcome of building one source directory for one kernel."""

    source_dir: Path
    kernel: KernelTarget
    build_dir: Path
    modules: list[BuiltModule] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    log: str = ""
    #: The build environment make ran in: ``host`` or a per-suite one (see harness.buildenv).
    environment: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.modules) and not any(
            d.severity in ("error", "fatal error") for d in self.diagnostics
        )

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity in ("error", "fatal error")]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]


def default_build_root() -> Path:
    return cache_root() / "build"


def build_modules(
    sources: Sequence[Path],
    kernel: KernelTarget,
    *,
    jobs: int | None = None,
    werror: bool = False,
    build_root: Path | None = None,
) -> list[BuildResult]:
    """Build each source directory for ``kernel`` in as few kbuild runs as possible.

    Returns one result per source directory, in the order given; never raises for C that does
    not compile (that is a result), only for unusable input (a missing directory, no Kbuild).
    """
    if not kernel.kbuild_dir.is_dir():
        raise HarnessError(f"kernel {kernel.release} has no headers at {kernel.kbuild_dir}")
    root = (build_root or default_build_root()) / kernel.release
    results = [_prepare(Path(source).resolve(), kernel, root) for source in sources]
    try:
        command_for(kernel, ["make"], writable=[root])  # creates the environment once, if missing
    except HarnessError as error:
        # This kernel's modules cannot be built; other kernels' results are unaffected.
        for result in results:
            result.log = f"no build environment for {kernel.release}: {error.message}\n{error.details}"
        return results
    pending = list(results)
    rounds = 0
    while pending:
        rounds += 1
        log, failed = _make(pending, kernel, jobs=jobs, werror=werror, root=root)
        for result in pending:
            result.log = log
        built = [result for result in pending if _collect(result)]
        if len(built) == len(pending):
            break
        unfinished = [result for result in pending if result not in built]
        attributed = [result for result in unfinished if result.source_dir in failed]
        if attributed and len(pending) > 1:
            # The failing modules are final; the others only lost their modpost step. Modules
            # that did link stay in the batch: they may export what the others need (5.10's and
            # 7.x's modpost stop all linking at a GPL-only or undefined-symbol error).
            pending = [result for result in pending if result not in attributed]
        elif len(pending) > 1:
            # Failure without an owner: build each remaining module alone.
            for result in unfinished:
                log, _ = _make([result], kernel, jobs=jobs, werror=werror, root=root)
                result.log = log
                _collect(result)
            break
        else:
            break
        if rounds > len(results):
            break
    return results


def _prepare(source: Path, kernel: KernelTarget, root: Path) -> BuildResult:
    if not source.is_dir():
        raise HarnessError(f"{source}: not a module directory")
    if not (source / "Kbuild").is_file() and not (source / "Makefile").is_file():
        raise HarnessError(f"{source}: no Kbuild or Makefile, so kbuild cannot build it")
    digest = hashlib.sha256(str(source).encode()).hexdigest()[:10]
    build_dir = root / f"{_safe(source.name)}-{digest}"
    _sync_tree(source, build_dir)
    return BuildResult(source_dir=source, kernel=kernel, build_dir=build_dir)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "module"


def _sync_tree(source: Path, destination: Path) -> None:
    """Mirror the sources into the build copy, keeping mtimes so make stays incremental."""
    ignore = shutil.ignore_patterns(*BUILD_PRODUCTS)
    destination.mkdir(parents=True, exist_ok=True)
    for stale in destination.rglob("*.ko"):
        stale.unlink()
    wanted = set()
    for directory, dirnames, filenames in os.walk(source):
        relative = Path(directory).relative_to(source)
        dirnames[:] = [d for d in dirnames if d not in ignore(directory, [d])]
        for name in set(filenames) - ignore(directory, filenames):
            wanted.add(relative / name)
            source_file = Path(directory) / name
            target_file = destination / relative / name
            if target_file.exists() and target_file.stat().st_mtime_ns == source_file.stat().st_mtime_ns:
                continue
            target_file.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source_file, target_file)
    for existing in destination.rglob("*"):
        relative = existing.relative_to(destination)
        if (
            existing.is_file()
            and relative not in wanted
            and not ignore(str(existing.parent), [existing.name])
        ):
            existing.unlink()


def _make(
    batch: list[BuildResult], kernel: KernelTarget, *, jobs: int | None, werror: bool, root: Path
) -> tuple[str, set[Path]]:
    """One kbuild run over ``batch``; returns its log and the source dirs it saw fail."""
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="batch-", dir=root) as umbrella_name:
        umbrella = Path(umbrella_name)
        mapping: dict[Path, Path] = {}
        subdirs = []
        for index, result in enumerate(batch):
            link = umbrella / f"m{index}"
            link.symlink_to(result.build_dir)
            mapping[link] = result.source_dir
            mapping[result.build_dir] = result.source_dir
            subdirs.append(f"m{index}/")
        (umbrella / "Kbuild").write_text(f"obj-y += {' '.join(subdirs)}\n")
        arguments = [
            "-k",
            f"-j{jobs or os.cpu_count() or 1}",
            "-C",
            str(kernel.kbuild_dir),
            f"M={umbrella}",
            "modules",
        ]
        if werror:
            arguments.append("KCFLAGS=-Werror")
        argv, environment = command_for(kernel, ["make", *arguments], writable=[root])
        for result in batch:
            result.environment = environment
        make = local[argv[0]][argv[1:]]
        _code, stdout, stderr = make.run(retcode=None)
        log = _absolute(stdout + stderr, umbrella, len(batch))
        grouped = parse_diagnostics(log, mapping)
        for result in batch:
            result.diagnostics = grouped.get(result.source_dir, [])
        failed = set()
        for match in FAILED_TARGET.finditer(log):
            for link, source in mapping.items():
                if match.group("path").startswith(f"{link}/"):
                    failed.add(source)

        def owner_of(module: str) -> Path | None:
            owner = next((r for r in batch if any(r.build_dir.rglob(f"{module}.o"))), None)
            return owner.source_dir if owner else None

        for source, found in modpost_diagnostics(log, owner_of).items():
            next(r for r in batch if r.source_dir == source).diagnostics.extend(found)
        failed |= {result.source_dir for result in batch if result.errors}
        return log, failed


def _absolute(log: str, umbrella: Path, count: int) -> str:
    """From 6.13 kbuild builds external modules from inside M= and names their files relative
    to it (``m0/hello.c:3:1: error``); make those the absolute paths older kbuilds print, which
    the diagnostics map back to the user's files."""
    relative = re.compile(rf"(?<![\w./-])(m(?:{'|'.join(str(i) for i in range(count))})/)")
    return relative.sub(lambda match: f"{umbrella}/{match.group(1)}", log)


def _collect(result: BuildResult) -> bool:
    kos = sorted(result.build_dir.rglob("*.ko"))
    result.modules = [
        BuiltModule(name=ko.stem, path=ko, kernel=result.kernel, source_dir=result.source_dir) for ko in kos
    ]
    return bool(kos)

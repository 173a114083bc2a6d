"""Batched out-of-tree kbuild: many module directories, one ``make``.

kbuild's per-invocation cost (reading the kernel's Makefiles, the config, modpost over all of
Module.symvers) dwarfs compiling a small module, so building N modules with N ``make`` runs is
slow. Here every module directory gets a private copy under the build root, and one umbrella
directory whose Kbuild says ``obj-y += m0/ m1/ ...`` (symlinks to the copies) is built with
``make -C KDIR M=umbrella``. One modpost sees all modules, so a consumer links against an
exporter built in the same batch with no KBUILD_EXTRA_SYMBOLS.

When one module fails to compile, modpost does not run for anyone: :mod:`harness.kbuild.batching`
(shared with the in-guest build) builds the batch again without the modules that failed and, if
failures cannot be attributed, each module alone, so one bad module never hides the others.

A directory named twice (or by two paths to the same place) is built once and its result is
reported for each name: two umbrella entries for one copy would compile the same files
concurrently and race (``fixdep: error opening file``). Only regular files and directories are
copied; a symlink to a regular file inside the module directory is copied as that file, and
anything else (a FIFO, a device, a symlink out of the directory or to ``/dev/zero``) is refused by
name before anything is copied, since copying it can block, never end or leak host files.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from plumbum import local
from plumbum.commands.base import BoundCommand

from harness.buildenv import HOST, command_for
from harness.errors import HarnessError, ToolMissing
from harness.kbuild.batching import batch_and_blame
from harness.kbuild.diagnostics import Diagnostic, modpost_diagnostics, parse_diagnostics
from harness.kernels.target import KernelTarget
from harness.paths import cache_root

#: Files of a previous build that must not be copied into the build tree.
BUILD_PRODUCTS = (
    "*.o", "*.ko", "*.mod", "*.mod.c", "*.cmd", ".*.cmd", "Module.symvers", "modules.order",
    ".tmp_versions", "*.ko.*", ".cache.mk",
)  # fmt: skip
FAILED_TARGET = re.compile(r"\*\*\* \[[^\]]*?(?P<path>/\S+?)\] Error \d+")
#: The shell's word for a program that is not on PATH, as make's recipes report it.
MISSING_TOOL = re.compile(r"^/bin/sh: \d+: (?P<tool>[\w.+-]+): not found$", re.M)
#: Debian packages of the programs kbuild runs whose package has another name.
TOOL_PACKAGES = {"pahole": "dwarves", "cc": "gcc", "ld": "binutils", "as": "binutils"}


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
    if shutil.which("make") is None:
        raise ToolMissing("make", "make", "kbuild runs it")
    root = (build_root or default_build_root()) / kernel.release
    unique: dict[Path, BuildResult] = {}
    for source in sources:
        resolved = Path(source).resolve()
        if resolved not in unique:
            unique[resolved] = _prepare(resolved, kernel, root)
    results = list(unique.values())
    try:
        command_for(kernel, ["make"], writable=[root])  # creates the environment once, if missing
    except HarnessError as error:
        # This kernel's modules cannot be built; other kernels' results are unaffected.
        for result in results:
            result.log = f"no build environment for {kernel.release}: {error.message}\n{error.details}"
        return [unique[Path(source).resolve()] for source in sources]

    def make(batch: list[BuildResult]) -> set[Path]:
        log, failed = _make(batch, kernel, jobs=jobs, werror=werror, root=root)
        for result in batch:
            result.log = log
            _collect(result)
        return failed

    batch_and_blame(results, make)  # type: ignore[arg-type]
    return [unique[Path(source).resolve()] for source in sources]


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


def module_files(source: Path) -> list[Path]:
    """The files to copy (relative to SOURCE); HarnessError naming the first entry that is not
    a regular file, a directory, or a symlink to a regular file inside SOURCE."""
    ignore = shutil.ignore_patterns(*BUILD_PRODUCTS)
    files: list[Path] = []
    for directory, dirnames, filenames in os.walk(source):
        relative = Path(directory).relative_to(source)
        for name in sorted(set(dirnames) - ignore(directory, dirnames)):
            if (Path(directory) / name).is_symlink():
                _refuse(source, relative / name, "is a symlink to a directory")
        dirnames[:] = sorted(set(dirnames) - ignore(directory, dirnames))
        for name in sorted(set(filenames) - ignore(directory, filenames)):
            entry = Path(directory) / name
            mode = entry.lstat().st_mode
            if stat.S_ISLNK(mode):
                target = entry.resolve()
                if not target.exists():
                    _refuse(source, relative / name, f"is a dangling symlink (to {os.readlink(entry)})")
                mode = target.stat().st_mode
                if not stat.S_ISREG(mode):
                    _refuse(
                        source,
                        relative / name,
                        f"is a symlink to a {_kind(mode)} ({target}), not a regular file",
                    )
                if not target.is_relative_to(source):
                    _refuse(
                        source, relative / name, f"is a symlink to {target}, outside the module directory"
                    )
            if not stat.S_ISREG(mode):
                _refuse(source, relative / name, f"is a {_kind(mode)}, not a regular file")
            files.append(relative / name)
    return files


def _refuse(source: Path, relative: Path, why: str) -> None:
    raise HarnessError(
        f"{source}: {relative} {why}; a module directory may hold only regular files, directories "
        "and symlinks to files inside it"
    )


def _kind(mode: int) -> str:
    kinds = (
        (stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"), (stat.S_ISDIR, "directory"),
    )  # fmt: skip
    return next((name for test, name in kinds if test(mode)), "special file")


def _sync_tree(source: Path, destination: Path) -> None:
    """Mirror the sources into the build copy, keeping mtimes so make stays incremental."""
    ignore = shutil.ignore_patterns(*BUILD_PRODUCTS)
    files = module_files(source)  # everything checked before anything is copied
    destination.mkdir(parents=True, exist_ok=True)
    for stale in destination.rglob("*.ko"):
        stale.unlink()
    wanted = set(files)
    for relative in files:
        source_file = source / relative
        target_file = destination / relative
        if target_file.exists() and target_file.stat().st_mtime_ns == source_file.stat().st_mtime_ns:
            continue
        target_file.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copy2(source_file, target_file)
        except OSError as error:
            raise HarnessError(
                f"{source}: cannot copy {relative} to {target_file}: {error.strerror}"
            ) from None
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
        log = _absolute(_run_make(local[argv[0]][argv[1:]]), umbrella, len(batch))
        missing = MISSING_TOOL.search(log)
        if missing and environment == HOST:
            # The host lacks a program kbuild runs (gcc-12, pahole...): no module is at fault.
            tool = missing.group("tool")
            raise ToolMissing(tool, TOOL_PACKAGES.get(tool, tool), f"kbuild for {kernel.release} runs it")
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


def _run_make(make: BoundCommand) -> str:
    """Run make in its own session; if the harness is interrupted, the whole make (cc1, ld,
    modpost) is killed with it rather than left running."""
    process = make.popen(start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    pid = cast(int, process.pid)
    try:
        stdout, stderr = cast("tuple[bytes, bytes]", process.communicate())
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        process.wait()
        raise
    return stdout.decode("utf-8", "replace") + stderr.decode("utf-8", "replace")


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

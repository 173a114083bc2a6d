"""Batched, incremental out-of-tree kbuild: many module directories, one ``make``.

kbuild's per-invocation cost (reading the kernel's Makefiles, the config, modpost over all of
Module.symvers) dwarfs compiling a small module, so building N modules with N ``make`` runs is
slow. Here every module directory gets a private copy under the build root, and one umbrella
directory whose Kbuild says ``obj-y += a-1f2e/ b-3c4d/ ...`` (symlinks to the copies) is built with
``make -C KDIR M=umbrella``. One modpost sees all modules, so a consumer links against an
exporter built in the same batch with no KBUILD_EXTRA_SYMBOLS.

The copies and the umbrella have stable paths per (source directory, kernel), and the sources are
mirrored with their mtimes, so kbuild's own dependency tracking makes a second identical build a
no-op and a one-file change recompiles one file. Diagnostics of objects make did not need to
touch again are remembered from the build that produced them. A build tree is used by one
harness process at a time (a lock next to it).

kbuild before 7.x cannot put an external module's objects outside its source tree (``MO=`` is
new in 7.x), and the user's tree stays clean, so the build works on a copy: of the module
directory, or of the project root above it when its Kbuild or sources reach up
(``ccflags-y := -I$(src)/../include``), with the layout preserved so every path relative to
``$(src)`` stays valid.

When one module fails to compile, modpost does not run for anyone: :mod:`harness.kbuild.batching`
(shared with the in-guest build) builds the batch again without the modules that failed and, if
failures cannot be attributed, each module alone, so one bad module never hides the others.

Before any make, each directory's inputs are looked up in the build cache
(:mod:`harness.kbuild.cache`): a module whose every input is unchanged since a stored build gets
that build's ``.ko`` and diagnostics and is left out of make; make runs for the rest, exactly as
without the cache, and their successful results are stored.

A directory named twice (or by two paths to the same place, or inside another named directory's
project) is built once and its result is reported for each name: two umbrella entries for one
copy would compile the same files concurrently and race (``fixdep: error opening file``). Only
regular files and directories are copied; a symlink to a regular file inside the module directory
is copied as that file, and anything else (a FIFO, a device, a symlink out of the directory or to
``/dev/zero``) is refused by name before anything is copied, since copying it can block, never
end or leak host files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from plumbum import local
from plumbum.commands.base import BoundCommand

from harness.buildenv import HOST, command_for
from harness.errors import HarnessError, ToolMissing
from harness.kbuild.batching import batch_and_blame
from harness.kbuild.cache import BuildCache, Entry
from harness.kbuild.diagnostics import Diagnostic, modpost_diagnostics, parse_diagnostics
from harness.kbuild.prune import due
from harness.kernels.target import KernelTarget
from harness.locking import exclusive
from harness.paths import cache_root

#: Files of a previous build that must not be copied into the build tree.
BUILD_PRODUCTS = (
    "*.o", "*.ko", "*.mod", "*.mod.c", "*.cmd", ".*.cmd", "Module.symvers", "modules.order",
    ".tmp_versions", "*.ko.*", ".cache.mk", ".kmh-*",
)  # fmt: skip
FAILED_TARGET = re.compile(r"\*\*\* \[[^\]]*?(?P<path>/\S+?)\] Error \d+")
#: kbuild's progress line for one compiled object (``.mod.o`` files are modpost's, not the user's).
COMPILED = re.compile(r"^\s+CC \[M\]\s+(?P<object>\S+?(?<!\.mod)\.o)$", re.M)
#: kbuild's progress line for modpost's run over all modules.
MODPOST_RAN = re.compile(r"^\s+MODPOST\s", re.M)
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
    #: ``--werror``: gcc gets -Werror, and objtool's and modpost's warnings (which no compiler
    #: flag turns into errors) fail the build too.
    werror: bool = False
    #: The directory copied into the build tree: the source directory itself, or the project
    #: root above it when its Kbuild or sources reach out of it (``-I$(src)/../include``).
    project_root: Path | None = None
    #: True when the result came from the build cache (see :mod:`harness.kbuild.cache`): make
    #: did not run, the ``.ko`` files and diagnostics are those of an identical earlier build.
    cached: bool = False

    @property
    def ok(self) -> bool:
        return bool(self.modules) and not self.errors

    @property
    def errors(self) -> list[Diagnostic]:
        failing = ("error", "fatal error", "warning") if self.werror else ("error", "fatal error")
        return [d for d in self.diagnostics if d.severity in failing]

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
    # One kbuild at a time per build tree: the copies and the umbrella are stable (that is what
    # makes a second build a no-op), so two harness processes must not rewrite them at once.
    with exclusive(root):
        unique: dict[Path, BuildResult] = {}
        inputs: dict[Path, list[Path]] = {}
        projects = _projects([Path(source).resolve() for source in sources])
        for resolved, project in projects.items():
            unique[resolved], inputs[resolved] = _prepare(resolved, project, kernel, root, werror=werror)
        results = list(unique.values())
        try:
            # Creates the environment once, if missing.
            _argv, environment = command_for(kernel, ["make"], writable=[root])
        except HarnessError as error:
            # This kernel's modules cannot be built; other kernels' results are unaffected.
            for result in results:
                result.log = f"no build environment for {kernel.release}: {error.message}\n{error.details}"
            return [unique[Path(source).resolve()] for source in sources]
        cache = _cache(kernel, environment, werror=werror, directory=build_root)
        keys = {
            result.source_dir: cache.key(
                cast(Path, result.project_root), result.source_dir, inputs[result.source_dir]
            )
            for result in results
        }
        hits = _hits(results, cache, keys)
        for result in results:
            if result.source_dir in hits:
                _replay(result, hits[result.source_dir], environment)
        pending = [result for result in results if not result.cached]

        def make(batch: list[BuildResult]) -> set[Path]:
            started = time.time()
            log, failed, status = _make(batch, kernel, jobs=jobs, werror=werror, root=root)
            for result in batch:
                result.log = log
                _collect(result, fresh_since=None if status == 0 else started)
            return failed

        if pending:
            batch_and_blame(pending, make)  # type: ignore[arg-type]
            _store(cache, pending, results, keys, hits)
        _prune(root, keep={root / r.build_dir.relative_to(root).parts[0] for r in results})
        cache.prune()
    return [unique[Path(source).resolve()] for source in sources]


def _cache(kernel: KernelTarget, environment: str, *, werror: bool, directory: Path | None) -> BuildCache:
    """The build cache for this run: next to an explicit build root, else in the kmh store."""
    from harness.buildenv import EnvironmentStore

    env = EnvironmentStore().for_kernel(kernel) if environment != HOST else None
    return BuildCache(
        directory / "cache" if directory is not None else cache_root() / "build-cache",
        kernel,
        environment=environment,
        environment_root=env.root if env is not None else None,
        werror=werror,
    )


def _hits(results: list[BuildResult], cache: BuildCache, keys: dict[Path, str | None]) -> dict[Path, Entry]:
    """The results the cache can give: intact entries whose batch dependencies (exporters whose
    symbols they used) are in this batch with the same key. When make runs for any module, the
    exporters are built too: modpost needs their symbols for the modules it links."""
    present = set(keys.values())
    hits = {}
    for result in results:
        entry = cache.lookup(keys[result.source_dir])
        if entry is not None and set(entry.depends) <= present:
            hits[result.source_dir] = entry
    if len(hits) < len(results):
        hits = {source: entry for source, entry in hits.items() if not entry.exports}
    return hits


def _replay(result: BuildResult, entry: Entry, environment: str) -> None:
    """Fill RESULT from a cache entry: its .ko files and the diagnostics its build printed."""
    result.cached = True
    result.environment = environment
    result.diagnostics = list(entry.diagnostics)
    result.modules = [
        BuiltModule(
            name=Path(relative).stem,
            path=entry.path(relative),
            kernel=result.kernel,
            source_dir=result.source_dir,
        )
        for relative in entry.modules
    ]
    result.log = (
        f"cached: make did not run; {len(entry.modules)} .ko and {len(entry.diagnostics)} diagnostic(s) "
        f"of an identical earlier build (build cache key {entry.key[:16]}; KMH_BUILD_CACHE=off rebuilds)\n"
    )


#: modpost's word for a symbol nobody exports: such a module's result depends on the batch.
UNRESOLVED = re.compile(r"undefined!|undefined symbol", re.I)


def _store(
    cache: BuildCache,
    built: list[BuildResult],
    results: list[BuildResult],
    keys: dict[Path, str | None],
    hits: dict[Path, Entry],
) -> None:
    """Store the successful builds of this run, each with the batch members whose exports it used."""
    if not cache.writes:
        return
    from harness.elf.image import ElfImage
    from harness.elf.symbols import SymbolTable

    exports: dict[Path, set[str]] = {s: set(e.exports) for s, e in hits.items()}
    undefined: dict[Path, set[str]] = {}
    for result in built:
        if not result.ok:
            continue
        exports[result.source_dir], undefined[result.source_dir] = set(), set()
        try:
            for module in result.modules:
                table = SymbolTable(ElfImage.open(module.path))
                exports[result.source_dir] |= {name.decode() for name in table.export_names()}
                undefined[result.source_dir] |= {name.decode() for name, _weak in table.undefined()}
        except (OSError, HarnessError):
            del undefined[result.source_dir]  # unreadable: not stored, rebuilt next time
    for result in built:
        needs = undefined.get(result.source_dir)
        if needs is None or any(UNRESOLVED.search(d.message) for d in result.diagnostics):
            continue
        depends = {
            keys[other.source_dir]
            for other in results
            if other is not result and exports.get(other.source_dir, set()) & needs
        }
        if None in depends:
            continue  # it used an exporter the cache cannot key: its result cannot be checked later
        kos = {str(module.path.relative_to(result.build_dir)): module.path for module in result.modules}
        cache.store(
            keys[result.source_dir],
            kos,
            result.diagnostics,
            exports[result.source_dir],
            cast("set[str]", depends),
        )


#: A build copy nobody built for this long is removed (rendered templates get a new one per run).
UNUSED_COPY_SECONDS = 7 * 24 * 3600


def _prune(root: Path, *, keep: set[Path]) -> None:
    """Mark the copies just used and remove those unused for a week, so the build tree does not
    grow without end; called with the build tree's lock held."""
    now = time.time()
    for copy in keep:
        with contextlib.suppress(OSError):
            os.utime(copy, (now, now))
    if not due(root / ".pruned", now):
        return
    for entry in root.iterdir():
        if entry in keep or not entry.is_dir() or entry.is_symlink() or entry.name == "umbrella":
            continue
        with contextlib.suppress(OSError):
            if now - entry.stat().st_mtime > UNUSED_COPY_SECONDS:
                shutil.rmtree(entry, ignore_errors=True)


def _projects(sources: list[Path]) -> dict[Path, Path]:
    """Each distinct source directory and the directory to copy for it. A source inside another
    one's project (``project/sub1`` next to ``project`` with ``obj-y += sub1/``) shares that copy,
    so its files are compiled once, by the project's kbuild."""
    for source in sources:
        if not source.is_dir():
            raise HarnessError(f"{source}: not a module directory")
    own = {source: project_root(source) for source in dict.fromkeys(sources)}
    return {
        source: min((p for p in own.values() if source.is_relative_to(p)), key=lambda p: len(p.parts))
        for source in own
    }


def _prepare(
    source: Path, project: Path, kernel: KernelTarget, root: Path, *, werror: bool
) -> tuple[BuildResult, list[Path]]:
    """Mirror SOURCE (or the project root its build reaches into) to a stable place under ROOT.

    The copy's path depends only on the directory copied, so the next build of the same source
    for the same kernel finds kbuild's objects and ``.cmd`` files of the last one and recompiles
    only what changed. Returns the result to fill and the project's files (relative paths)."""
    if not source.is_dir():
        raise HarnessError(f"{source}: not a module directory")
    if not (source / "Kbuild").is_file() and not (source / "Makefile").is_file():
        raise HarnessError(f"{source}: no Kbuild or Makefile, so kbuild cannot build it")
    digest = hashlib.sha256(str(project).encode()).hexdigest()[:10]
    copy = root / f"{_safe(project.name)}-{digest}"
    files = _sync_tree(project, copy)
    result = BuildResult(
        source_dir=source,
        kernel=kernel,
        build_dir=copy / source.relative_to(project),
        werror=werror,
        project_root=project,
    )
    return result, files


#: How a Kbuild, Makefile or source file names something above its own directory:
#: ``-I$(src)/../include``, ``$(M)/../common``, ``-I../include``, ``#include "../x.h"``.
REACHES_UP = re.compile(
    r"""(?:\$[({](?:src|obj|M|PWD|CURDIR|KBUILD_EXTMOD)[)}]/|-I\s*|#\s*include\s*")(?P<up>(?:\.\./)+)"""
)
#: No project root is searched further up than this from the module directory.
MAX_CLIMB = 3


def project_root(source: Path) -> Path:
    """The directory to copy so that every path SOURCE's build reaches by ``..`` stays valid.

    kbuild before 7.x cannot put an external module's objects outside its source tree, and the
    user's tree must stay clean, so the build works on a copy; a copy of the module directory
    alone breaks ``ccflags-y := -I$(src)/../include``. The climb is read from the Kbuild and
    Makefiles (``$(src)/..``, ``-I..``) and the C sources (``#include "../..."``) of SOURCE."""
    climb = 0
    for directory, dirnames, filenames in os.walk(source):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        depth = len(Path(directory).relative_to(source).parts)
        for name in filenames:
            if not (name in ("Kbuild", "Makefile") or name.endswith((".c", ".h", ".mk", ".S"))):
                continue
            path = Path(directory) / name
            if not path.is_file():
                continue  # a FIFO or a link to /dev/zero: module_files refuses it by name later
            try:
                with path.open("rb") as handle:
                    text = handle.read(1 << 20).decode(errors="replace")
            except OSError:
                continue
            for match in REACHES_UP.finditer(text):
                # A Makefile's $(src) is its own directory; -I.. and #include ".." are relative
                # to it too (kbuild compiles with -I$(src) for every directory).
                climb = max(climb, match.group("up").count("../") - depth)
    climb = min(climb, MAX_CLIMB, len(source.parents) - 1)
    return source.parents[climb - 1] if climb > 0 else source


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


def _sync_tree(source: Path, destination: Path) -> list[Path]:
    """Mirror the sources into the build copy, keeping mtimes so make stays incremental;
    returns the files mirrored (relative to SOURCE)."""
    ignore = shutil.ignore_patterns(*BUILD_PRODUCTS)
    files = module_files(source)  # everything checked before anything is copied
    destination.mkdir(parents=True, exist_ok=True)
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
    return files


def _make(
    batch: list[BuildResult], kernel: KernelTarget, *, jobs: int | None, werror: bool, root: Path
) -> tuple[str, set[Path], int]:
    """One kbuild run over ``batch``; returns its log, the source dirs it saw fail, make's status.

    The umbrella directory and its entries have stable names (an entry is named after the copy it
    links to), so the command lines kbuild records in its ``.cmd`` files are the same from one
    build to the next and an unchanged module is not recompiled."""
    umbrella = root / "umbrella"
    umbrella.mkdir(parents=True, exist_ok=True)
    for stale in umbrella.iterdir():
        if stale.is_symlink():
            stale.unlink()  # entries are made afresh below; kbuild's own files there are kept
    links: dict[Path, Path] = {}
    entries = []
    for result in batch:
        if any(
            result.build_dir != other.build_dir and result.build_dir.is_relative_to(other.build_dir)
            for other in batch
        ):
            continue  # built by its parent's ``obj-y += sub/``: a second entry would compile it twice
        name = _entry_name(result, root)
        link = umbrella / name
        link.symlink_to(result.build_dir)
        links[result.build_dir] = link
        entries.append(name)
    # Deepest directories first: a file of ``project/sub`` belongs to the module built there,
    # not to the project root's module whose copy also contains it.
    mapping: dict[Path, Path] = {}
    for result in sorted(batch, key=lambda r: len(r.build_dir.parts), reverse=True):
        parent = next(
            d
            for d in sorted(links, key=lambda d: len(d.parts), reverse=True)
            if result.build_dir.is_relative_to(d)
        )
        mapping[links[parent] / result.build_dir.relative_to(parent)] = result.source_dir
        mapping[result.build_dir] = result.source_dir
    kbuild = f"obj-y += {' '.join(f'{e}/' for e in entries)}\n"
    if not (umbrella / "Kbuild").is_file() or (umbrella / "Kbuild").read_text() != kbuild:
        (umbrella / "Kbuild").write_text(kbuild)
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
    output, status = _run_make(local[argv[0]][argv[1:]])
    log = _absolute(output, umbrella, entries)
    missing = MISSING_TOOL.search(log)
    if missing and environment == HOST:
        # The host lacks a program kbuild runs (gcc-12, pahole...): no module is at fault.
        tool = missing.group("tool")
        raise ToolMissing(tool, TOOL_PACKAGES.get(tool, tool), f"kbuild for {kernel.release} runs it")
    grouped = parse_diagnostics(log, mapping)
    compiled = {Path(match.group("object")) for match in COMPILED.finditer(log)}
    for result in batch:
        result.diagnostics = [_outside_copy(d, result, root) for d in grouped.get(result.source_dir, [])]
    failed = set()
    for match in FAILED_TARGET.finditer(log):
        for link, source in mapping.items():
            if match.group("path").startswith(f"{link}/"):
                failed.add(source)

    def owner_of(module: str) -> Path | None:
        owner = next((r for r in batch if any(r.build_dir.rglob(f"{module}.o"))), None)
        return owner.source_dir if owner else None

    for source, found in modpost_diagnostics(log, owner_of, mapping).items():
        next(r for r in batch if r.source_dir == source).diagnostics.extend(found)
    for result in batch:
        result.diagnostics = _remembered(
            result, result.diagnostics, compiled, mapping, modpost_ran=MODPOST_RAN.search(log) is not None
        )
    failed |= {result.source_dir for result in batch if result.errors}
    return log, failed, status


def _remembered(
    result: BuildResult,
    fresh: list[Diagnostic],
    compiled: set[Path],
    mapping: dict[Path, Path],
    *,
    modpost_ran: bool,
) -> list[Diagnostic]:
    """FRESH plus the diagnostics of the last build that this incremental build had no chance to
    repeat: the compiler's and objtool's about objects it did not compile again, modpost's if
    modpost did not run. A warning does not go away because make skipped the file it is about.
    They are kept in the copy, next to the objects they describe."""
    saved = result.build_dir / ".kmh-diagnostics.json"
    recompiled = {
        (result.source_dir / path.relative_to(link)).with_suffix("")
        for path in compiled
        for link, source in mapping.items()
        if source == result.source_dir and path.is_relative_to(link)
    }
    kept: list[Diagnostic] = []
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        for entry in json.loads(saved.read_text()):
            old = Diagnostic(**{**entry, "file": Path(entry["file"])})
            if _from_modpost(old):
                stale = modpost_ran  # modpost checks every module each time it runs
            else:
                stale = old.file.with_suffix("") in recompiled or (
                    bool(recompiled) and old.file.suffix == ".h"
                )
            if not stale and old not in fresh:
                kept.append(old)
    with contextlib.suppress(OSError):
        saved.write_text(json.dumps([{**dataclasses.asdict(d), "file": str(d.file)} for d in kept + fresh]))
    return kept + fresh


def _from_modpost(diagnostic: Diagnostic) -> bool:
    return diagnostic.message.startswith("modpost: ") or (
        diagnostic.line == 0 and diagnostic.file.name == "Kbuild"
    )


def _entry_name(result: BuildResult, root: Path) -> str:
    """The umbrella entry of a result: its copy's path under ROOT, flattened to one name."""
    return "_".join(result.build_dir.relative_to(root).parts)


def _outside_copy(diagnostic: Diagnostic, result: BuildResult, root: Path) -> Diagnostic:
    """A diagnostic about a file of the copied project root outside the module directory
    (``../include/x.h``) names the user's file, not the copy's."""
    copy = root / result.build_dir.relative_to(root).parts[0]
    # gcc names an include as written (``dir/../include/x.h``); the copy mirrors the user's
    # tree, so the path is normalised as text like the user would write it.
    file = Path(os.path.normpath(diagnostic.file))
    if result.project_root is not None and file.is_relative_to(copy):
        file = result.project_root / file.relative_to(copy)
    return dataclasses.replace(diagnostic, file=file)


def _run_make(make: BoundCommand) -> tuple[str, int]:
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
    return stdout.decode("utf-8", "replace") + stderr.decode("utf-8", "replace"), process.returncode or 0


def _absolute(log: str, umbrella: Path, entries: list[str]) -> str:
    """From 6.13 kbuild builds external modules from inside M= and names their files relative
    to it (``hello-1a2b/hello.c:3:1: error``); make those the absolute paths older kbuilds print,
    which the diagnostics map back to the user's files."""
    if not entries:
        return log
    names = "|".join(re.escape(entry) for entry in sorted(entries, key=len, reverse=True))
    relative = re.compile(rf"(?<![\w./-])((?:{names})/)")
    return relative.sub(lambda match: f"{umbrella}/{match.group(1)}", log)


def _collect(result: BuildResult, *, fresh_since: float | None) -> bool:
    """The ``.ko`` files of RESULT's directory. After a make that failed somewhere, only those it
    wrote in this run count: an older one may predate a source change whose link step modpost's
    failure skipped. After a clean make every ``.ko`` is current, rewritten or not."""
    kos = sorted(result.build_dir.rglob("*.ko"))
    if fresh_since is not None:
        kos = [ko for ko in kos if ko.stat().st_mtime >= fresh_since - 1]
    result.modules = [
        BuiltModule(name=ko.stem, path=ko, kernel=result.kernel, source_dir=result.source_dir) for ko in kos
    ]
    return bool(kos)


def pick_module(result: BuildResult, name: str) -> BuiltModule:
    """The ``.ko`` of RESULT that is module NAME. The kernel treats ``-`` and ``_`` in module
    names as the same character (``a-b.ko`` loads as ``a_b``), so either spelling finds it; with
    no match, the only ``.ko`` of the directory is taken, and a choice among several is an error
    rather than a guess."""
    wanted = name.replace("-", "_")
    matching = [module for module in result.modules if module.name.replace("-", "_") == wanted]
    if len(matching) == 1:
        return matching[0]
    if len(result.modules) == 1 and not matching:
        return result.modules[0]
    built = ", ".join(f"{module.name}.ko" for module in result.modules) or "no .ko"
    raise HarnessError(
        f"{result.source_dir}: module name {name!r} matches none of the .ko files it builds ({built}); "
        "set name to one of them"
        if not matching
        else f"{result.source_dir}: module name {name!r} matches several .ko files ({built})"
    )

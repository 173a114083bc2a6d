"""A content-addressed cache of build results: the same inputs give the stored ``.ko`` and warnings.

Even a kbuild that compiles nothing costs about a second (kbuild reads the kernel's Makefiles and
configuration, then modpost reads all of Module.symvers), which is most of a warm ``kmh run``.
Like ccache, this cache skips ``make`` only when every input of a module's build is the same as
in a build it stored, and then gives back that build's ``.ko`` files and REPLAYS its compiler,
objtool and modpost diagnostics, so ``--werror`` and warning reports see exactly what a real build
would print. A miss runs make exactly as before; only successful builds are stored.

The key of one module directory (see :meth:`BuildCache.key`) is a hash of:

- every file of the copied project (path and bytes) and where the module sits in it, and the
  project's own path (gcc writes the build path into debug info and ``__FILE__``);
- the kernel target: its release, headers path, ``.config``, ``Module.symvers``, and the
  kbuild programs it ships (modpost, objtool);
- the compiler: the build environment's name and the compiler, assembler, linker and make it
  runs (the binaries' size and mtime, inside the environment or on the host's PATH);
- how make is run: ``--werror`` (``KCFLAGS=-Werror``) and the process environment make inherits
  (``KCFLAGS``, ``W=``, ``KBUILD_EXTRA_SYMBOLS``, ``PATH``...), less variables that cannot
  matter to a build (terminal, shell bookkeeping, the test runner's);
- the code of this package that turns make's output into results.

A module that used symbols exported by another module of its batch also records that exporter's
key; it is a hit only when a module with that key is in the batch again. A module with an
unresolved symbol is not stored (another batch member might export it next time), nor is one
whose Kbuild or Makefile reads files outside its project (``KBUILD_EXTRA_SYMBOLS``, an absolute
include path), since the key cannot cover them.

Entries are immutable directories written atomically (a temporary directory renamed into place);
each records the sha256 of its ``.ko`` files, and an entry that does not check out is a miss
(and removed), never an error. Entries unused for a week are removed, and at most
:data:`MAX_ENTRIES` are kept. ``KMH_BUILD_CACHE=off`` neither reads nor writes the cache;
``KMH_BUILD_CACHE=refresh`` (``kmh build --rebuild``) rebuilds and stores the new result.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from harness.kbuild.diagnostics import Diagnostic
from harness.kbuild.prune import due
from harness.kernels.target import KernelTarget

#: Bump when the entry format or the key's meaning changes.
CACHE_VERSION = "1"
#: The kill switch: ``off`` (also ``0``, ``no``, ``false``) or ``refresh``.
SWITCH = "KMH_BUILD_CACHE"
#: An entry nobody used for this long is removed, like the build copies.
UNUSED_ENTRY_SECONDS = 7 * 24 * 3600
#: The cache never holds more entries than this; the least recently used go first.
MAX_ENTRIES = 2000
#: Environment variables that cannot change what make builds (they are left out of the key so
#: the cache is shared between shells, terminals and test runs).
IRRELEVANT_VARIABLES = re.compile(
    r"^(PWD|OLDPWD|SHLVL|_|TERM|TERMCAP|COLUMNS|LINES|COLORTERM|LS_COLORS|PS[1-4]|HIST\w*|MAIL\w*"
    r"|DISPLAY|WAYLAND_DISPLAY|XAUTHORITY|DBUS_\w+|SSH_\w+|GPG_\w+|XDG_\w+|LOGNAME|USER|EDITOR|VISUAL"
    r"|PAGER|LESS\w*|TMUX\w*|STY|WINDOW|PYTEST_\w+|_PYTEST_\w+|COV_CORE_\w+|PYTHON\w*|VIRTUAL_ENV\w*"
    r"|KMH_\w+|NO_COLOR|FORCE_COLOR|CI|GITHUB_\w+|RUNNER_\w+|HOSTNAME|HOME|TZ|LANG|LANGUAGE|LC_\w+)$"
)
#: What in a Kbuild or Makefile makes the build read files outside the project, whose content
#: the key does not cover: other modules' symbol files, absolute include paths.
OUTSIDE_INPUTS = re.compile(r"KBUILD_EXTRA_SYMBOLS|(?:-I|-include|-isystem|\binclude)\s*/(?!dev/null)")
COMMENT = re.compile(r"#.*")
#: The package's own files whose logic shapes a stored result (diagnostics parsing, blame).
CODE_FILES = ("kbuild.py", "diagnostics.py", "batching.py", "cache.py")


def mode() -> str:
    """``on``, ``off`` or ``refresh``, from :data:`SWITCH`."""
    value = os.environ.get(SWITCH, "").strip().lower()
    if value in ("off", "0", "no", "false"):
        return "off"
    return "refresh" if value == "refresh" else "on"


@dataclass(frozen=True)
class Entry:
    """One stored build result: where its files are and what it recorded."""

    key: str
    directory: Path
    #: ``.ko`` paths relative to the module's build directory, e.g. ``hello.ko`` or ``sub/x.ko``.
    modules: tuple[str, ...]
    diagnostics: tuple[Diagnostic, ...]
    #: Symbols the stored ``.ko`` files export, and the keys of batch members they used.
    exports: tuple[str, ...]
    depends: tuple[str, ...]

    def path(self, relative: str) -> Path:
        return self.directory / "ko" / relative


class BuildCache:
    """The cache directory and the key context of one kbuild run (one kernel, one environment)."""

    def __init__(
        self,
        directory: Path,
        kernel: KernelTarget,
        *,
        environment: str,
        environment_root: Path | None,
        werror: bool,
    ) -> None:
        self.directory = directory
        self.mode = mode()
        digest = hashlib.sha256()
        for part in (
            f"kmh-build-cache {CACHE_VERSION}",
            _code_identity(),
            _kernel_identity(kernel),
            f"environment {environment}",
            _toolchain_identity(kernel, environment_root),
            f"werror {werror}",
            _process_environment(os.environ),
        ):
            digest.update(part.encode() + b"\0")
        self.context = digest.hexdigest()

    @property
    def reads(self) -> bool:
        return self.mode == "on"

    @property
    def writes(self) -> bool:
        return self.mode != "off"

    def key(self, project: Path, source: Path, files: Iterable[Path]) -> str | None:
        """The key of building SOURCE (inside the copied PROJECT whose FILES are given), or None
        when its build reads files outside the project that the key cannot cover (its Kbuild or
        Makefile names KBUILD_EXTRA_SYMBOLS or an absolute include path): always built, never
        stored."""
        digest = hashlib.sha256(self.context.encode())
        digest.update(f"\0project {project}\0module {source.relative_to(project)}\0".encode())
        files = sorted(files)
        with_kbuild = {relative.parent for relative in files if relative.name == "Kbuild"}
        for relative in files:
            data = (project / relative).read_bytes()
            # kbuild reads a directory's Kbuild, or its Makefile when there is none.
            read_by_kbuild = (
                relative.name == "Kbuild"
                or relative.suffix == ".mk"
                or (relative.name == "Makefile" and relative.parent not in with_kbuild)
            )
            if read_by_kbuild and OUTSIDE_INPUTS.search(COMMENT.sub("", data.decode(errors="replace"))):
                return None
            digest.update(f"{relative}\0".encode())
            digest.update(hashlib.sha256(data).digest())
        return digest.hexdigest()

    def lookup(self, key: str | None) -> Entry | None:
        """The entry of KEY if it is there and intact; a damaged one is removed and is a miss."""
        if not self.reads or key is None:
            return None
        directory = self.directory / key[:2] / key
        try:
            meta = json.loads((directory / "entry.json").read_text())
            entry = Entry(
                key=key,
                directory=directory,
                modules=tuple(meta["modules"]),
                diagnostics=tuple(_diagnostic(d) for d in meta["diagnostics"]),
                exports=tuple(meta["exports"]),
                depends=tuple(meta["depends"]),
            )
            if meta["key"] != key or not entry.modules:
                raise ValueError("entry names another key")
            for relative, sha in zip(entry.modules, meta["sha256"], strict=True):
                if hashlib.sha256(entry.path(relative).read_bytes()).hexdigest() != sha:
                    raise ValueError(f"{relative} does not match its checksum")
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            shutil.rmtree(directory, ignore_errors=True)  # damaged: rebuild and store it again
            return None
        now = time.time()
        with contextlib.suppress(OSError):
            os.utime(directory, (now, now))  # recently used: pruned last
        return entry

    def store(
        self,
        key: str | None,
        kos: Mapping[str, Path],
        diagnostics: Iterable[Diagnostic],
        exports: Iterable[str],
        depends: Iterable[str],
    ) -> None:
        """Store a successful build (KOS: relative name -> built file). Never raises: a cache
        that cannot be written only costs the next run a rebuild."""
        if not self.writes or key is None:
            return
        final = self.directory / key[:2] / key
        with contextlib.suppress(OSError):
            final.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".new-", dir=final.parent))
            try:
                sums = []
                for relative, built in kos.items():
                    target = staging / "ko" / relative
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(built, target)
                    sums.append(hashlib.sha256(target.read_bytes()).hexdigest())
                    target.chmod(0o444)
                meta = {
                    "key": key,
                    "modules": list(kos),
                    "sha256": sums,
                    "diagnostics": [_plain(d) for d in diagnostics],
                    "exports": sorted(set(exports)),
                    "depends": sorted(set(depends)),
                    "stored": time.time(),
                }
                (staging / "entry.json").write_text(json.dumps(meta, indent=1))
                if final.exists():  # refresh, or a damaged entry: the new one replaces it
                    shutil.rmtree(final, ignore_errors=True)
                os.rename(staging, final)
            finally:
                shutil.rmtree(staging, ignore_errors=True)

    def prune(self, *, now: float | None = None) -> None:
        """Remove entries unused for a week, then the least recently used beyond MAX_ENTRIES."""
        if not self.directory.is_dir():
            return
        now = time.time() if now is None else now
        if not due(self.directory / ".pruned", now):
            return
        entries: list[tuple[float, Path]] = []
        for shard in self.directory.iterdir():
            if not shard.is_dir():
                continue
            for entry in shard.iterdir():
                with contextlib.suppress(OSError):
                    used = entry.stat().st_mtime
                    if now - used > UNUSED_ENTRY_SECONDS:
                        shutil.rmtree(entry, ignore_errors=True)
                    else:
                        entries.append((used, entry))
        for _used, entry in sorted(entries)[: max(0, len(entries) - MAX_ENTRIES)]:
            shutil.rmtree(entry, ignore_errors=True)


def _plain(diagnostic: Diagnostic) -> dict[str, object]:
    return {**dataclasses.asdict(diagnostic), "file": str(diagnostic.file)}


def _diagnostic(data: dict[str, object]) -> Diagnostic:
    return Diagnostic(**{**data, "file": Path(str(data["file"]))})  # type: ignore[arg-type]


def _process_environment(environ: Mapping[str, str]) -> str:
    """The variables make inherits that may change a build (all but IRRELEVANT_VARIABLES)."""
    kept = sorted((name, value) for name, value in environ.items() if not IRRELEVANT_VARIABLES.match(name))
    return json.dumps(kept)


@functools.cache
def _code_identity() -> str:
    here = Path(__file__).parent
    digest = hashlib.sha256()
    for name in CODE_FILES:
        with contextlib.suppress(OSError):
            digest.update((here / name).read_bytes())
    return f"code {digest.hexdigest()}"


def _kernel_identity(kernel: KernelTarget) -> str:
    kbuild = kernel.kbuild_dir
    parts = [f"kernel {kernel.release} {kernel.version} {kbuild}"]
    for name in (".config", "Module.symvers", "Makefile"):
        parts.append(f"{name} {_file_digest(kbuild / name)}")
    for name in ("scripts/mod/modpost", "tools/objtool/objtool", "scripts/basic/fixdep"):
        parts.append(f"{name} {_fingerprint(kbuild / name)}")
    return "\n".join(parts)


@functools.cache
def _file_digest(path: Path) -> str:
    """The sha256 of a kernel target's file (they never change while a process runs)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return "-"


def _fingerprint(path: Path, root: Path | None = None) -> str:
    """Size and mtime of PATH after following its symlinks inside ROOT (a build environment's
    root, whose absolute links point into the environment, not the host)."""
    for _hop in range(16):
        try:
            if not path.is_symlink():
                break
            link = os.readlink(path)
        except OSError:
            break
        if link.startswith("/") and root is not None:
            path = root / link.lstrip("/")
        else:
            path = path.parent / link
    try:
        status = path.stat()
    except OSError:
        return f"{path} missing"
    return f"{path} {status.st_size} {status.st_mtime_ns}"


def _toolchain_identity(kernel: KernelTarget, environment_root: Path | None) -> str:
    """The compiler the kernel names (``CONFIG_CC_VERSION_TEXT``), and the binaries that run."""
    version = ""
    with contextlib.suppress(OSError):
        found = re.search(
            r'^CONFIG_CC_VERSION_TEXT="([^"]*)"', (kernel.kbuild_dir / ".config").read_text(), re.M
        )
        version = found.group(1) if found else ""
    compiler = version.split(" ")[0] or "gcc"
    programs = (compiler, "gcc", "as", "ld", "make")
    parts = [f"compiler {version}"]
    if environment_root is None:
        for program in programs:
            found_path = shutil.which(program)
            parts.append(f"{program} {_fingerprint(Path(found_path)) if found_path else 'missing'}")
        libexec = Path("/usr/lib/gcc")
    else:
        for program in programs:
            parts.append(
                f"{program} {_fingerprint(environment_root / 'usr/bin' / program, environment_root)}"
            )
        libexec = environment_root / "usr/lib/gcc"
    for cc1 in sorted(libexec.glob("*/*/cc1")):
        parts.append(f"cc1 {_fingerprint(cc1, environment_root)}")
    return "\n".join(parts)

"""Build a suite's own kernel from Debian's ``linux-source-X.Y`` as a debug kernel target.

The result is an ordinary :class:`~harness.kernels.target.KernelTarget` laid out like an unpacked
Debian kernel (``boot/vmlinuz-REL``, ``boot/config-REL``, ``vmlinux``, ``lib/modules/REL``), and
its build tree sits where a Debian target keeps its headers (``usr/src/linux-headers-REL``): the
tree that built the kernel is the one out-of-tree modules build against (Module.symvers,
scripts, the exact .config), so build, check, vm and run need nothing special.

Everything happens in a staging directory renamed into place at the end, as the store does for
Debian targets, so a failed, interrupted or killed build never leaves a target behind.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.debugkernel import config as debug_config
from harness.errors import HarnessError, ToolMissing
from harness.kernels.apt import AptArchive
from harness.kernels.debian import resolve
from harness.kernels.target import KernelTarget
from harness.kernels.unpack import fix_header_paths, unpack_debs

#: Suites a debug target can be built for, with the gcc major version the suite's kernel is built
#: with. The host compiler must be that one (a different gcc makes modules the target rejects
#: and options Kconfig resolves differently); other suites need their own build environment.
SUITE_COMPILERS = {"bookworm": "12"}
#: Disk space a build needs (source, objects, the installed target), checked before starting.
NEEDED_BYTES = 5 * 1024**3
#: Seconds between progress lines while make runs.
PROGRESS_EVERY = 30.0
#: Host tools the kernel build runs, and the Debian package of each.
BUILD_TOOLS = {
    "make": "make",
    "gcc": "gcc",
    "flex": "flex",
    "bison": "bison",
    "bc": "bc",
    "perl": "perl",
    "depmod": "kmod",
    "tar": "tar",
    "xz": "xz-utils",
}


def debug_release(version: str) -> str:
    """``uname -r`` of the debug kernel built from Debian source VERSION.

    ``6.1.192-2`` gives ``6.1.192-kmh-debug``: not a Debian ABI name, so it never collides.
    """
    upstream = version.split("-")[0].split("~")[0]
    return upstream + debug_config.LOCALVERSION


def check_tools() -> None:
    """ToolMissing (naming the package) for the first build tool the host lacks."""
    for tool, package in BUILD_TOOLS.items():
        if not (shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")):
            raise ToolMissing(tool, package, "debug kernel targets are built with it")
    if not Path("/usr/include/libelf.h").exists() and not Path("/usr/include/gelf.h").exists():
        raise ToolMissing("libelf.h", "libelf-dev", "the kernel build's objtool needs it")


def host_gcc_major() -> str:
    out = subprocess.run(["gcc", "-dumpversion"], capture_output=True, text=True).stdout.strip()
    return out.split(".")[0]


def build_debug_target(
    root: Path, archive: AptArchive, suite: str, *, progress=None, jobs: int | None = None
) -> KernelTarget:
    """Build SUITE's debug target under ROOT (the store's kernels directory).

    A build takes many minutes, so it holds a lock of its own (one per release), not the
    store's: other targets can be added meanwhile, and a second build of the same target waits
    for the first and then finds it done.
    """
    if suite not in SUITE_COMPILERS:
        raise HarnessError(
            f"no debug kernel recipe for suite {suite!r}; "
            f"debug targets exist for: {', '.join(SUITE_COMPILERS)}"
        )
    stock = resolve(archive, suite)
    major_minor = ".".join(stock.version.split(".")[:2])
    source_package = f"linux-source-{major_minor}"
    if not any(v.version == stock.version for v in archive.versions(source_package)):
        raise HarnessError(
            f"suite {suite} has no {source_package} {stock.version} (the source of its kernel)"
        )
    release = debug_release(stock.version)
    with _build_lock(root, release):
        return _build_locked(root, archive, suite, stock.version, source_package, release, progress, jobs)


@contextmanager
def _build_lock(root: Path, release: str) -> Iterator[None]:
    with open(root / f".{release}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build_locked(
    root: Path,
    archive: AptArchive,
    suite: str,
    version: str,
    source_package: str,
    release: str,
    progress,
    jobs: int | None,
) -> KernelTarget:
    destination = root / release
    if (destination / KernelTarget.METADATA).is_file():
        return KernelTarget.load(destination)
    check_tools()
    wanted_gcc = SUITE_COMPILERS[suite]
    if host_gcc_major() != wanted_gcc:
        raise HarnessError(
            f"the {suite} debug kernel is built with gcc-{wanted_gcc}, the host has gcc-{host_gcc_major()}"
        )
    free = shutil.disk_usage(root).free
    if free < NEEDED_BYTES:
        raise HarnessError(
            f"building a debug kernel needs {NEEDED_BYTES // 1024**3} GB free in {root}, "
            f"there are {free / 1024**3:.1f} GB"
        )
    if progress:
        progress(f"downloading {source_package} {version}")
    (deb,) = archive.download([(source_package, version)])
    staging = root / f".{release}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        tree = _unpack_source(deb, staging, release, progress)
        _configure(tree, progress)
        started = time.monotonic()
        _make(tree, ["bzImage", "modules"], jobs=jobs, progress=progress)
        if progress:
            progress(f"kernel built in {time.monotonic() - started:.0f} s; installing the target")
        target = _install(tree, staging, release, version, suite, source_package)
        staging.rename(destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if progress:
        progress(f"debug kernel {release} ({source_package} {version}, {suite}) ready")
    del target
    return KernelTarget.load(destination)


def _unpack_source(deb: Path, staging: Path, release: str, progress) -> Path:
    """Extract the source tarball inside the .deb into ``usr/src/linux-headers-REL``."""
    unpacked = staging / "deb"
    unpack_debs([deb], unpacked, progress=progress)
    tarballs = sorted((unpacked / "usr" / "src").glob("linux-source-*.tar.*"))
    if not tarballs:
        raise HarnessError(f"{deb.name} holds no linux-source tarball")
    src_dir = staging / "usr" / "src"
    src_dir.mkdir(parents=True)
    if progress:
        progress(f"extracting {tarballs[0].name}")
    _run(["tar", "-xf", str(tarballs[0]), "-C", str(src_dir)], what="extracting the kernel source")
    shutil.rmtree(unpacked)
    (top,) = [path for path in src_dir.iterdir() if path.is_dir()]
    tree = src_dir / f"linux-headers-{release}"
    top.rename(tree)
    return tree


def _configure(tree: Path, progress) -> None:
    if progress:
        progress(
            "configuring: tinyconfig + the kmh guest's drivers + KASAN, kmemleak, lockdep, failslab, KUnit"
        )
    _make(tree, ["tinyconfig"], quiet=True)
    _run(
        ["scripts/config", "--file", ".config", *debug_config.scripts_config_args()],
        cwd=tree,
        what="scripts/config",
    )
    _make(tree, ["olddefconfig"], quiet=True)
    missing = debug_config.missing_options(debug_config.read_config(tree / ".config"))
    if missing:
        raise HarnessError(
            "the debug kernel config lost options it needs (unmet dependencies): "
            + ", ".join(f"CONFIG_{option}" for option in missing)
        )


def _make(
    tree: Path, goals: list[str], *, jobs: int | None = None, quiet: bool = False, progress=None
) -> None:
    """Run make in TREE; show a progress line every PROGRESS_EVERY seconds (files compiled so far)."""
    argv = ["make", "ARCH=x86_64", f"-j{jobs or os.cpu_count() or 1}", *goals]
    if quiet:
        _run(argv, cwd=tree, what=f"make {' '.join(goals)}")
        return
    tail: deque[str] = deque(maxlen=60)
    compiled = 0
    started = last = time.monotonic()
    process = subprocess.Popen(
        argv, cwd=tree, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            tail.append(line.rstrip())
            if re.match(r"\s+CC( \[M\])?\s", line):
                compiled += 1
            now = time.monotonic()
            if progress and now - last >= PROGRESS_EVERY:
                last = now
                progress(f"building the debug kernel: {compiled} files compiled, {now - started:.0f} s")
        code = process.wait()
    except BaseException:
        process.kill()
        process.wait()
        raise
    if code != 0:
        errors = [line for line in tail if "error" in line.lower() or "No space" in line]
        reason = errors[-1] if errors else (tail[-1] if tail else f"exit {code}")
        raise HarnessError(f"building the debug kernel failed: {reason}", details="\n".join(tail))


def _run(argv: list[str], *, what: str, cwd: Path | None = None) -> None:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, errors="replace")
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        raise HarnessError(
            f"{what} failed: {lines[-1] if lines else result.returncode}",
            details=result.stderr + result.stdout,
        )


def _install(tree: Path, staging: Path, release: str, version: str, suite: str, source: str) -> KernelTarget:
    """Lay the built kernel out like an unpacked Debian kernel target (see the module docstring)."""
    made = subprocess.run(
        ["make", "-s", "kernelrelease"], cwd=tree, capture_output=True, text=True
    ).stdout.strip()
    if made != release:
        raise HarnessError(f"the debug kernel calls itself {made!r}, expected {release!r}")
    _run(
        ["make", "ARCH=x86_64", "modules_install", f"INSTALL_MOD_PATH={staging}", "INSTALL_MOD_STRIP=1"],
        cwd=tree,
        what="make modules_install",
    )
    boot = staging / "boot"
    boot.mkdir()
    shutil.copy(tree / "arch" / "x86" / "boot" / "bzImage", boot / f"vmlinuz-{release}")
    shutil.copy(tree / ".config", boot / f"config-{release}")
    shutil.copy(tree / "System.map", boot / f"System.map-{release}")
    shutil.copy(tree / "vmlinux", staging / "vmlinux")
    modules_dir = staging / "lib" / "modules" / release
    for link in ("build", "source"):
        (modules_dir / link).unlink(missing_ok=True)
    (modules_dir / "kernel").mkdir(exist_ok=True)
    (modules_dir / "build").symlink_to(os.path.relpath(tree, modules_dir))
    _drop_objects(tree)
    fix_header_paths(staging, release)
    target = KernelTarget(
        release=release,
        root=staging,
        version=version,
        suite=suite,
        flavour="debug",
        boot_compressed=True,
        packages=(source,),
    )
    target.save()
    return target


def _drop_objects(tree: Path) -> None:
    """Delete the kernel's object files: out-of-tree builds need the tree's headers, scripts,
    config and Module.symvers, never its .o files, and they are most of the tree's size."""
    for directory, _dirs, files in os.walk(tree):
        if directory.startswith((str(tree / "scripts"), str(tree / "tools"))):
            continue
        for name in files:
            if name.endswith((".o", ".a")) and name != "built-in.a":
                os.unlink(os.path.join(directory, name))

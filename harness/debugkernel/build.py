"""Build a suite's own kernel from Debian's ``linux-source-X.Y`` as a debug kernel target.

The result is an ordinary :class:`~harness.kernels.target.KernelTarget` laid out like an unpacked
Debian kernel (``boot/vmlinuz-REL``, ``boot/config-REL``, ``vmlinux``, ``lib/modules/REL``), and
its build tree sits where a Debian target keeps its headers (``usr/src/linux-headers-REL``): the
tree that built the kernel is the one out-of-tree modules build against (Module.symvers,
scripts, the exact .config), so build, check, vm and run need nothing special.

Everything happens in a staging directory renamed into place at the end, as the store does for
Debian targets, so a failed, interrupted or killed build never leaves a target behind.

The kernel is compiled by its suite's own toolchain: on a host of another Debian release every
build command runs in a build environment of the suite (:mod:`harness.buildenv`: the stock
kernel's toolchain plus the kernel build's tools), exactly as out-of-tree modules are built.
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

from harness.buildenv import EnvironmentStore, Recipe, recipe_for
from harness.buildenv.sandbox import wrap
from harness.debugkernel import config as debug_config
from harness.debugkernel.patches import apply_fixes
from harness.errors import HarnessError, ToolMissing
from harness.kernels.apt import DebianArchive
from harness.kernels.debian import KernelPackages, resolve
from harness.kernels.target import KernelTarget
from harness.kernels.unpack import fix_header_paths, unpack_debs

#: Suites a debug target can be built for: the ones whose kernel source the config recipe
#: (:mod:`harness.debugkernel.config`) and the source fixes (:mod:`harness.debugkernel.patches`)
#: were written and measured against. trixie's 6.12 builds in trixie's build environment (gcc-14);
#: without its fix its kmemleak missed a kmalloc leak in about one round of four.
SUITES = ("bookworm", "trixie")
#: Disk space a build needs (source, objects, the installed target), checked before starting.
NEEDED_BYTES = 5 * 1024**3
#: Seconds between progress lines while make runs.
PROGRESS_EVERY = 30.0
#: Debian packages a kernel build needs besides the suite's compiler (inside a build environment).
BUILD_PACKAGES = (
    "make",
    "flex",
    "bison",
    "bc",
    "perl",
    "kmod",
    "tar",
    "xz-utils",
    "libelf-dev",
    "libssl-dev",
)
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


def _versioned_gcc(packages: tuple[str, ...] | list[str]) -> str | None:
    """The ``gcc-N`` among a build environment's PACKAGES (None: the environment has plain gcc)."""
    versioned = [name for name in packages if re.fullmatch(r"gcc-\d+", name)]
    return max(versioned, key=lambda name: int(name.split("-")[1])) if versioned else None


def check_tools() -> None:
    """ToolMissing (naming the package) for the first build tool the host lacks."""
    for tool, package in BUILD_TOOLS.items():
        if not (shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")):
            raise ToolMissing(tool, package, "debug kernel targets are built with it")
    if not Path("/usr/include/libelf.h").exists() and not Path("/usr/include/gelf.h").exists():
        raise ToolMissing("libelf.h", "libelf-dev", "the kernel build's objtool needs it")


def build_debug_target(
    root: Path, archives: DebianArchive, suite: str, *, progress=None, jobs: int | None = None
) -> KernelTarget:
    """Build SUITE's debug target under ROOT (the store's kernels directory).

    A build takes many minutes, so it holds a lock of its own (one per release), not the
    store's: other targets can be added meanwhile, and a second build of the same target waits
    for the first and then finds it done.
    """
    if suite not in SUITES:
        raise HarnessError(
            f"no debug kernel recipe for suite {suite!r}; debug targets exist for: {', '.join(SUITES)}"
        )
    stock = resolve(archives, suite)
    major_minor = ".".join(stock.version.split(".")[:2])
    source_package = f"linux-source-{major_minor}"
    archive = archives.view(suite)
    if not any(v.version == stock.version for v in archive.versions(source_package)):
        raise HarnessError(
            f"suite {suite} has no {source_package} {stock.version} (the source of its kernel)"
        )
    release = debug_release(stock.version)
    with _build_lock(root, release):
        destination = root / release
        if (destination / KernelTarget.METADATA).is_file():
            return KernelTarget.load(destination)
        free = shutil.disk_usage(root).free
        if free < NEEDED_BYTES:
            raise HarnessError(
                f"building a debug kernel needs {NEEDED_BYTES // 1024**3} GB free in {root}, "
                f"there are {free / 1024**3:.1f} GB"
            )
        if progress:
            progress(f"downloading {source_package} {stock.version}")
        (deb,) = archive.download([(source_package, stock.version)])
        staging = root / f".{release}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            builder = Builder.for_kernel(stock, staging, progress)
            tree = _unpack_source(deb, staging, release, progress)
            for fix in apply_fixes(tree, major_minor):
                if progress:
                    progress(f"source fix in {fix.path}: {fix.why}")
            _configure(builder, tree, progress)
            started = time.monotonic()
            builder.make(tree, ["bzImage", "modules"], jobs=jobs)
            if progress:
                progress(f"kernel built in {time.monotonic() - started:.0f} s; installing the target")
            _install(builder, tree, staging, release, stock, source_package)
            staging.rename(destination)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    if progress:
        progress(f"debug kernel {release} ({source_package} {stock.version}, {suite}) ready")
    return KernelTarget.load(destination)


@contextmanager
def _build_lock(root: Path, release: str) -> Iterator[None]:
    with open(root / f".{release}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class Builder:
    """Runs the kernel build's commands: on the host, or in the suite's build environment."""

    def __init__(self, env_root: Path | None, staging: Path, progress, compiler: str | None = None) -> None:
        self.env_root = env_root
        self.staging = staging
        self.progress = progress
        #: The suite's compiler by its versioned name (``gcc-14``): a build environment holds the
        #: suite's ``gcc-N`` package, not the unversioned ``gcc`` the kernel's Makefile calls.
        self.compiler = compiler

    @classmethod
    def for_kernel(cls, stock: KernelPackages, staging: Path, progress) -> Builder:
        """The builder for the suite of STOCK: the host when its release is the host's."""
        probe = KernelTarget(
            release=stock.release, root=staging, version=stock.version, suite=stock.suite,
            toolchain=stock.toolchain,
        )  # fmt: skip
        recipe = recipe_for(probe)
        if recipe.is_host:
            check_tools()
            return cls(None, staging, progress)
        packages = tuple(sorted(set(recipe.packages) | set(BUILD_PACKAGES)))
        env = EnvironmentStore().ensure(
            Recipe(recipe.release, recipe.suites, packages), progress=progress, purpose=f"{stock.suite}:debug"
        )
        return cls(env.root, staging, progress, compiler=_versioned_gcc(recipe.packages))

    def name_compiler(self, tree: Path) -> None:
        """Make every later make in TREE call the suite's compiler by its versioned name.

        Debian's kernel Makefile includes ``.kernelvariables`` after setting CC and HOSTCC (its
        own headers packages name ``gcc-N`` there), so the kernel build and every out-of-tree
        module built against this tree later use the same compiler without extra arguments.
        """
        if self.compiler:
            (tree / ".kernelvariables").write_text(f"CC = {self.compiler}\nHOSTCC = {self.compiler}\n")

    def argv(self, argv: list[str], cwd: Path | None = None) -> list[str]:
        if self.env_root is None:
            return argv
        return wrap(self.env_root, argv, writable=[self.staging], cwd=cwd)

    def run(self, argv: list[str], *, what: str, cwd: Path | None = None) -> str:
        result = subprocess.run(
            self.argv(argv, cwd), cwd=cwd, capture_output=True, text=True, errors="replace"
        )
        if result.returncode != 0:
            lines = (result.stderr or result.stdout).strip().splitlines()
            raise HarnessError(
                f"{what} failed: {lines[-1] if lines else result.returncode}",
                details=result.stderr + result.stdout,
            )
        return result.stdout

    def make(self, tree: Path, goals: list[str], *, jobs: int | None = None, quiet: bool = False) -> None:
        """Run make in TREE; a progress line every PROGRESS_EVERY seconds (files compiled so far)."""
        argv = ["make", "ARCH=x86_64", f"-j{jobs or os.cpu_count() or 1}", *goals]
        if quiet:
            self.run(argv, cwd=tree, what=f"make {' '.join(goals)}")
            return
        tail: deque[str] = deque(maxlen=60)
        compiled = 0
        started = last = time.monotonic()
        process = subprocess.Popen(
            self.argv(argv, tree), cwd=tree, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, errors="replace",
        )  # fmt: skip
        try:
            assert process.stdout is not None
            for line in process.stdout:
                tail.append(line.rstrip())
                if re.match(r"\s+CC( \[M\])?\s", line):
                    compiled += 1
                now = time.monotonic()
                if self.progress and now - last >= PROGRESS_EVERY:
                    last = now
                    self.progress(
                        f"building the debug kernel: {compiled} files compiled, {now - started:.0f} s"
                    )
            code = process.wait()
        except BaseException:
            process.kill()
            process.wait()
            raise
        if code != 0:
            errors = [line for line in tail if "error" in line.lower() or "No space" in line]
            reason = errors[-1] if errors else (tail[-1] if tail else f"exit {code}")
            raise HarnessError(f"building the debug kernel failed: {reason}", details="\n".join(tail))


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


def _configure(builder: Builder, tree: Path, progress) -> None:
    if progress:
        progress(
            "configuring: tinyconfig + the kmh guest's drivers + KASAN, kmemleak, lockdep, failslab, KUnit"
        )
    builder.name_compiler(tree)
    builder.make(tree, ["tinyconfig"], quiet=True)
    builder.run(
        ["scripts/config", "--file", ".config", *debug_config.scripts_config_args()],
        cwd=tree,
        what="scripts/config",
    )
    builder.make(tree, ["olddefconfig"], quiet=True)
    missing = debug_config.missing_options(debug_config.read_config(tree / ".config"))
    if missing:
        raise HarnessError(
            "the debug kernel config lost options it needs (unmet dependencies): "
            + ", ".join(f"CONFIG_{option}" for option in missing)
        )


def _run(argv: list[str], *, what: str, cwd: Path | None = None) -> None:
    """A host command (unpacking: no compiler involved)."""
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, errors="replace")
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        raise HarnessError(
            f"{what} failed: {lines[-1] if lines else result.returncode}",
            details=result.stderr + result.stdout,
        )


def _install(
    builder: Builder, tree: Path, staging: Path, release: str, stock: KernelPackages, source: str
) -> KernelTarget:
    """Lay the built kernel out like an unpacked Debian kernel target (see the module docstring)."""
    made = builder.run(["make", "-s", "kernelrelease"], cwd=tree, what="make kernelrelease").strip()
    if made != release:
        raise HarnessError(f"the debug kernel calls itself {made!r}, expected {release!r}")
    builder.run(
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
        version=stock.version,
        suite=stock.suite,
        flavour="debug",
        boot_compressed=True,
        packages=(source,),
        toolchain=stock.toolchain,  # modules built against it use the suite's environment too
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

"""The guest image: initramfs layers built once per kernel target, concatenated per configuration.

A run never writes a cached layer; VMs of one configuration boot one concatenation of them, made
once, and a run with uploaded files gets its own copy in its temp dir with a per-run layer after
them, so every VM starts from the same bytes and the image stays disposable. Layers live under
``<cache>/images/<release>/`` named by a hash of their inputs, so changing the agent source, the
host's busybox/kmod or the module list makes a new layer instead of reusing a stale one.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

from harness.errors import HarnessError, ToolMissing
from harness.kernels.target import KernelTarget
from harness.paths import cache_root
from harness.resources import guest_dir
from harness.vm import cpio, stublib
from harness.vm.modules import GuestModule, ModuleTree

GUEST_DIR = guest_dir()
AGENT_SOURCE = GUEST_DIR / "agent" / "kmh-agent.c"
INIT_SCRIPT = GUEST_DIR / "init"

#: Bump when the layout of a layer changes, so old cached layers are not reused.
RECIPE_VERSION = "2"  # 2: libcrypto is a stub (harness/vm/stublib.py)

#: Modules the guest needs to talk to the host and to report panics (skipped when built in).
BOOT_MODULES = ("virtio_pci", "virtio_console", "pvpanic_pci")

KMOD_TOOLS = ("insmod", "rmmod", "lsmod", "modprobe", "depmod", "modinfo")

#: Real host programs installed over busybox's applets (guest path -> host program). Debian's
#: busybox-static runs its *own* applets for names it knows (insmod, rmmod, ...) from its shell
#: and from xargs/env/timeout, whatever PATH says; so the shell is dash and the programs that
#: start other programs are the real ones, and ``insmod`` typed anywhere reaches kmod.
HOST_PROGRAMS = {
    "bin/sh": "dash",
    "bin/dash": "dash",
    "usr/bin/env": "env",
    "usr/bin/timeout": "timeout",
    "usr/bin/xargs": "xargs",
    "bin/kmod": "kmod",
}


#: The Debian package of each host program the image is made from.
PACKAGES = {"busybox": "busybox-static", "gcc": "gcc", "dash": "dash", "xargs": "findutils"}


def _which(tool: str) -> Path:
    found = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if not found:
        package = PACKAGES.get(tool, "kmod" if tool in ("kmod", "depmod") else "coreutils")
        raise ToolMissing(tool, package, "the guest image is made from it")
    return Path(found)


def _fingerprint(paths: Iterable[Path]) -> str:
    """A cheap identity for host files: path, size and mtime; the guest's own sources (a few KB)
    by content, so every clone and installed wheel of the same version shares one cached layer."""
    digest = hashlib.sha256(RECIPE_VERSION.encode())
    for path in paths:
        if path.is_relative_to(GUEST_DIR):
            content = hashlib.sha256(path.read_bytes()).hexdigest()
            digest.update(f"{path.relative_to(GUEST_DIR)}:{content};".encode())
            continue
        st = path.stat()
        digest.update(f"{path}:{st.st_size}:{st.st_mtime_ns};".encode())
    return digest.hexdigest()[:16]


def _cached(path: Path, build: Callable[[BinaryIO], object]) -> Path:
    """Return PATH, building it first (atomically, so parallel VMs never see half a layer)."""
    if not path.is_file():
        _write_atomically(path, build)
    return path


def _write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Let WRITE fill a temporary file beside PATH, then move it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _shared_libraries(binary: Path) -> list[Path]:
    """The libraries ``ldd`` says BINARY loads, including the dynamic loader."""
    st = binary.stat()
    return list(_ldd(str(binary), st.st_size, st.st_mtime_ns))


@functools.lru_cache(maxsize=64)
def _ldd(binary: str, size: int, mtime_ns: int) -> tuple[Path, ...]:
    """Cached per file version, in memory and on disk: every VM start checks its layers' inputs,
    and five ldd runs cost a new process ~50 ms before QEMU could start."""
    memo = cache_root() / "images" / "ldd.json"
    key = f"{binary}:{size}:{mtime_ns}"
    try:
        known = json.loads(memo.read_text())
    except (OSError, ValueError):
        known = {}
    if isinstance(known, dict) and isinstance(known.get(key), list):
        return tuple(Path(lib) for lib in known[key])
    out = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    libs = []
    for line in out.splitlines():
        match = re.search(r"(/\S+) \(0x", line)
        if match:
            libs.append(Path(match.group(1)))
    known = known if isinstance(known, dict) else {}
    known[key] = [str(lib) for lib in libs]
    _write_atomically(memo, lambda out: out.write(json.dumps(known).encode()))
    return tuple(libs)


def compile_agent(dest: Path) -> None:
    """Build the static guest agent from its C source with the host compiler."""
    gcc = _which("gcc")
    result = subprocess.run(
        [str(gcc), "-static", "-O2", "-Wall", "-o", str(dest), str(AGENT_SOURCE)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise HarnessError(
            "could not compile the guest agent (needs gcc and libc6-dev for static linking)",
            details=result.stderr,
        )


def _base_entries() -> list[cpio.Entry]:
    busybox = _which("busybox")
    entries = [cpio.directory(d) for d in ("proc", "sys", "dev", "tmp", "root", "run", "etc", "kmh")]
    entries.append(cpio.regular("init", INIT_SCRIPT.read_bytes(), 0o755))
    entries.append(cpio.regular("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"))
    entries.append(cpio.regular("etc/group", b"root:x:0:\n"))
    with tempfile.TemporaryDirectory() as tmp:
        agent = Path(tmp) / "kmh-agent"
        compile_agent(agent)
        entries.append(cpio.regular("kmh/agent", agent.read_bytes(), 0o755))
    entries.append(cpio.regular("bin/busybox", busybox.read_bytes(), 0o755))
    applets = subprocess.run([str(busybox), "--list-full"], capture_output=True, text=True).stdout
    replaced = {Path(p).name for p in HOST_PROGRAMS} | set(KMOD_TOOLS)
    for applet in applets.split():
        if Path(applet).name in replaced or applet == "bin/busybox":
            continue
        entries.append(cpio.symlink(applet, "/bin/busybox"))
    libraries: dict[Path, list[Path]] = {}  # library -> the programs linking it
    for guest_path, program in HOST_PROGRAMS.items():
        host = _which(program)
        entries.append(cpio.regular(guest_path, host.read_bytes(), 0o755))
        for lib in _shared_libraries(host):
            libraries.setdefault(lib, []).append(host)
    for tool in KMOD_TOOLS:
        entries.append(cpio.symlink(f"sbin/{tool}", "/bin/kmod"))
    entries.append(cpio.symlink("bin/lsmod", "/bin/kmod"))
    for lib, users in sorted(libraries.items()):
        data = stublib.build_stub(_which("gcc"), lib.name, users) if stublib.stubbed(lib) else None
        entries.append(cpio.regular(str(lib), data or lib.resolve().read_bytes(), 0o755))
    return entries


def _host_inputs() -> list[Path]:
    """The host files a base layer is made from (for its cache key)."""
    programs = [_which(program) for program in sorted(set(HOST_PROGRAMS.values()))]
    inputs = [AGENT_SOURCE, INIT_SCRIPT, _which("busybox"), _which("gcc"), *programs]
    for program in programs:
        inputs += _shared_libraries(program)
    return inputs


def base_layer(kernel: KernelTarget) -> Path:
    """Init, agent, busybox and kmod: the same for every kernel, cached beside each target's layers."""
    name = f"base-{_fingerprint(_host_inputs())}.cpio"
    return _cached(
        cache_root() / "images" / kernel.release / name,
        lambda out: cpio.write_archive(out, _base_entries(), first_inode=1),
    )


def _depmod_files(kernel: KernelTarget, modules: list[GuestModule]) -> list[cpio.Entry]:
    """modules.dep and friends for exactly the modules in the image, made by the host's depmod."""
    release = kernel.release
    entries = []
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "lib" / "modules" / release
        tree.mkdir(parents=True)
        for module in modules:
            (tree / module.relpath).parent.mkdir(parents=True, exist_ok=True)
            (tree / module.relpath).write_bytes(module.data)
        for meta in ("modules.builtin", "modules.builtin.modinfo", "modules.order"):
            if (kernel.modules_dir / meta).is_file():
                shutil.copy(kernel.modules_dir / meta, tree / meta)
        result = subprocess.run([str(_which("depmod")), "-b", tmp, release], capture_output=True, text=True)
        if result.returncode != 0:
            raise HarnessError(f"depmod failed for the {release} guest modules", details=result.stderr)
        for path in sorted(tree.glob("modules.*")):
            entries.append(cpio.regular(f"lib/modules/{release}/{path.name}", path.read_bytes()))
    return entries


def modules_layer(kernel: KernelTarget, extra: Iterable[str] = ()) -> Path:
    """The target's boot modules (and EXTRA ones, installed but not loaded), with modules.dep."""
    extra = sorted(set(extra))
    key = hashlib.sha256(
        f"{RECIPE_VERSION}|softdeps|{kernel.root}|{kernel.modules_dir.stat().st_mtime_ns}|{extra}".encode()
    ).hexdigest()[:16]

    def build(out) -> None:  # type: ignore[no-untyped-def]
        tree = ModuleTree(kernel.modules_dir)
        boot = tree.resolve(list(BOOT_MODULES), optional=True)
        wanted = boot + [m for m in tree.resolve(extra) if m not in boot]
        base = f"lib/modules/{kernel.release}"
        entries = [cpio.regular(f"{base}/{m.relpath}", m.data) for m in wanted]
        entries += _depmod_files(kernel, wanted)
        boot_line = " ".join(f"/{base}/{m.relpath}" for m in boot) + "\n"
        entries.append(cpio.regular("kmh/boot-modules", boot_line.encode()))
        cpio.write_archive(out, entries, first_inode=100_000)

    if not kernel.modules_dir.is_dir():
        raise HarnessError(f"kernel target {kernel.release} has no module tree at {kernel.modules_dir}")
    return _cached(cache_root() / "images" / kernel.release / f"modules-{key}.cpio", build)


def run_layer(files: dict[str, tuple[bytes, int]]) -> bytes:
    """A one-off layer of FILES (guest path -> (data, permissions)) for a single run."""
    import io

    out = io.BytesIO()
    entries = [cpio.regular(path, data, perm) for path, (data, perm) in files.items()]
    cpio.write_archive(out, entries, first_inode=900_000)
    return out.getvalue()


def layers(kernel: KernelTarget, *, extra_modules: Iterable[str] = (), python: bool = False) -> list[Path]:
    """The cached layers (built if missing) a guest of this configuration boots from, in order.

    Their file names are hashes of their inputs, so the list also identifies the image.
    """
    paths = [base_layer(kernel), modules_layer(kernel, extra_modules)]
    if python:
        from harness.vm.python_layer import python_layer

        paths.append(python_layer())
    return paths


def initramfs(
    kernel: KernelTarget,
    dest: Path,
    *,
    extra_modules: Iterable[str] = (),
    run_files: bytes = b"",
    python: bool = False,
) -> Path:
    """The initramfs a VM boots from: the cached layers, then RUN_FILES (a layer of per-run
    files); with them it is the run's own copy at DEST, without them one shared concatenation of
    the layers, made once (a snapshot restore then writes nothing: copying 7-30 MB of layers cost
    every restore 0.1 s before QEMU could start). ``python`` adds the optional Python + pyroute2
    layer (see :mod:`harness.vm.python_layer`)."""
    used = layers(kernel, extra_modules=extra_modules, python=python)
    if run_files:
        with dest.open("wb") as out:
            _concatenate(used, out)
            out.write(run_files)
        return dest
    names = "\0".join(path.name for path in used)
    key = hashlib.sha256(f"{RECIPE_VERSION}|{names}".encode()).hexdigest()[:16]

    path = cache_root() / "images" / kernel.release / f"initramfs-{key}.cpio"
    if path.is_file():
        os.utime(path)  # used now: pruning keeps it
        return path
    _cached(path, lambda out: _concatenate(used, out))
    _prune_assembled(path.parent)
    return path


#: Assembled images kept per kernel target (the most recently used): one per configuration in
#: use (plain, with extra modules, with Python); older ones are derived data, made again if needed.
KEEP_ASSEMBLED = 8


def _prune_assembled(directory: Path) -> None:
    def last_used(path: Path) -> float:
        try:
            return path.stat().st_mtime
        except OSError:
            return 0.0  # pruned meanwhile by another run

    assembled = sorted(directory.glob("initramfs-*.cpio"), key=last_used, reverse=True)
    for old in assembled[KEEP_ASSEMBLED:]:
        old.unlink(missing_ok=True)


def _concatenate(paths: Iterable[Path], out: BinaryIO) -> None:
    """Write the files at PATHS to OUT one after the other (cpio archives concatenate)."""
    for path in paths:
        with path.open("rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)

"""Helpers shared by the elf tests: running kmh and depmod, building farms and fixture modules."""

from __future__ import annotations

import lzma
import os
import shutil
import subprocess
import sys
from pathlib import Path

from plumbum import local

from harness.kernels.target import KernelTarget

DATA = Path(__file__).parent / "data"
FULL = os.environ.get("KMH_FULL") == "1"
KMH = [sys.executable, "-m", "harness.cli"]


def run_kmh(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    """The real ``kmh`` command line, in a fresh process (bytes in, bytes out)."""
    return subprocess.run([*KMH, *args], capture_output=True, cwd=cwd, check=False)


def depmod_sections(root: Path, release: str) -> dict[str, bytes]:
    """``depmod -n -b ROOT RELEASE`` split into the files it prints (modules.dep, modules.symbols)."""
    result = subprocess.run(["depmod", "-n", "-b", str(root), release], capture_output=True, check=False)
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout
    alias = out.index(b"# Aliases extracted from modules themselves.\n")
    symbols = out.index(b"# Aliases for symbols, used by symbol_request().\n")
    devname = out.find(b"# Device nodes to trigger on-demand module loading.\n")
    devname = len(out) if devname < 0 else devname
    return {"modules.dep": out[:alias], "modules.symbols": out[symbols:devname]}


def make_farm(source: Path, root: Path, release: str) -> Path:
    """A tree ROOT/lib/modules/RELEASE mirroring SOURCE with real directories and symlinked files."""
    target = root / "lib" / "modules" / release
    for directory, subdirs, files in os.walk(source):
        relative = Path(directory).relative_to(source)
        subdirs[:] = [d for d in subdirs if not (relative == Path(".") and d in ("build", "source"))]
        (target / relative).mkdir(parents=True, exist_ok=True)
        for name in files:
            (target / relative / name).symlink_to(Path(directory) / name)
    return target


def materialise(path: Path) -> bytes:
    """Replace the symlink PATH by nothing and return the (uncompressed) module bytes it pointed to."""
    data = path.read_bytes()
    path.unlink()
    if data.startswith(b"\xfd7zXZ\x00"):
        data = lzma.decompress(data)
    return data


def build_fixture_modules(kernel: KernelTarget, directory: Path) -> dict[str, Path]:
    """Build tests/elf/data/fixtures against KERNEL (one kbuild run) and prepare the odd ones.

    KBUILD_MODPOST_WARN=1 lets kmh_missing link with its unresolved symbol. modpost refuses the
    other two bad cases outright, so they are made after the build, as they would be in the wild:
    kmh_gplonly's license becomes "Proprietary", and kmh_nsimport's import_ns key is renamed so
    the module no longer imports USB_STORAGE.
    """
    shutil.copytree(DATA / "fixtures", directory)
    make = local["make"]["-C", str(kernel.kbuild_dir), f"M={directory}", "modules", "KBUILD_MODPOST_WARN=1"]
    code, out, err = make.run(retcode=None)
    assert code == 0, f"kbuild failed for {kernel.release}:\n{out[-3000:]}\n{err[-3000:]}"
    modules = {path.stem: path for path in directory.glob("*.ko")}
    _patch(modules["kmh_gplonly"], b"license=Dual MPL/GPL\0", b"license=Proprietary\0\0")
    _patch(modules["kmh_nsimport"], b"import_ns=USB_STORAGE\0", b"xmport_ns=USB_STORAGE\0")
    return modules


def _patch(path: Path, old: bytes, new: bytes) -> None:
    assert len(old) == len(new)
    data = path.read_bytes()
    assert data.count(old) == 1, f"{old!r} not found once in {path}"
    path.write_bytes(data.replace(old, new))

"""Turn downloaded kernel packages into a self-contained tree a build and a VM can use.

Debian's header packages assume they live in /usr/src: the per-flavour Makefile includes
``/usr/src/linux-headers-<rel>-common/Makefile`` and /lib/modules/<rel>/build is an absolute
symlink. We unpack with ``dpkg-deb -x`` into a private root and rewrite exactly those: the include
becomes relative to the Makefile itself and absolute symlinks become relative ones, so the tree
works wherever the cache lives and never needs the host's /usr/src, /lib/modules or /boot.

A full disk is one line saying so (dpkg-deb would otherwise print one tar error per file), and
``dpkg-deb`` has a time limit like every other external command.
"""

from __future__ import annotations

import errno
import lzma
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

import zstandard
from plumbum import ProcessExecutionError, ProcessTimedOut

from harness.errors import HarnessError
from harness.kernels.apt import apt_tool

XZ_MAGIC = b"\xfd7zXZ\x00"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
ELF_MAGIC = b"\x7fELF"
#: Seconds one ``dpkg-deb -x`` may take (the largest kernel image unpacks in ~10 s).
UNPACK_TIMEOUT = 600.0
NO_SPACE = "No space left on device"


def unpack_debs(debs: list[Path], root: Path, *, progress=None) -> None:
    """Extract each .deb's data into ``root`` (no maintainer scripts, nothing installed)."""
    dpkg_deb = apt_tool("dpkg-deb")
    for index, deb in enumerate(debs, 1):
        if progress:
            progress(f"unpacking {deb.name} ({index}/{len(debs)})")
        try:
            dpkg_deb("-x", str(deb), str(root), timeout=UNPACK_TIMEOUT)
        except ProcessTimedOut:
            raise HarnessError(f"unpacking {deb.name} did not finish within {UNPACK_TIMEOUT:g} s") from None
        except ProcessExecutionError as error:
            stderr = error.stderr or ""
            if NO_SPACE in stderr:
                raise HarnessError(f"out of disk space in {root} while unpacking {deb.name}") from None
            lines = stderr.strip().splitlines()
            raise HarnessError(
                f"cannot unpack {deb.name}: {lines[-1] if lines else f'exit {error.retcode}'}", details=stderr
            ) from None


def normalize_layout(root: Path, release: str) -> None:
    """Give every target the same layout, whatever its packaging: boot/ and lib/modules/.

    Packages from trixie on install merged-/usr paths (``usr/lib/modules/<rel>``), and 7.x's
    ``linux-binary``/``linux-base`` put vmlinuz, config and System.map into the module directory
    instead of /boot. Moving them keeps one layout for the build, the checks and the VM.
    """
    usr_modules = root / "usr" / "lib" / "modules" / release
    modules = root / "lib" / "modules" / release
    if usr_modules.is_dir() and not modules.exists():
        modules.parent.mkdir(parents=True, exist_ok=True)
        usr_modules.rename(modules)
        build = modules / "build"
        if build.is_symlink() and not os.readlink(build).startswith("/"):
            # A relative link written for usr/lib/modules: point it at the same headers again.
            headers = root / "usr" / "src" / f"linux-headers-{release}"
            build.unlink()
            build.symlink_to(os.path.relpath(headers, modules))
    boot = root / "boot"
    boot.mkdir(exist_ok=True)
    for name in ("vmlinuz", "config", "System.map"):
        found = modules / name
        if found.is_file() and not (boot / f"{name}-{release}").exists():
            found.rename(boot / f"{name}-{release}")


def fix_header_paths(root: Path, release: str) -> None:
    """Make the unpacked headers usable in place (see the module docstring)."""
    makefile = root / "usr" / "src" / f"linux-headers-{release}" / "Makefile"
    if makefile.exists():
        text = makefile.read_text()
        fixed = re.sub(
            r"^include /usr/src/(\S+)$",
            r"include $(realpath $(dir $(lastword $(MAKEFILE_LIST)))../\1)",
            text,
            flags=re.M,
        )
        # From 7.x the flavour's Makefile also names itself as the output tree.
        fixed = re.sub(
            r"^KBUILD_OUTPUT\s*:?=\s*/usr/src/(\S+)$",
            r"KBUILD_OUTPUT=$(realpath $(dir $(lastword $(MAKEFILE_LIST)))../\1)",
            fixed,
            flags=re.M,
        )
        makefile.write_text(fixed)
    for link in _absolute_symlinks(root):
        target = Path(os.readlink(link))
        inside = root / target.relative_to("/")
        link.unlink()
        link.symlink_to(os.path.relpath(inside, link.parent))


def _absolute_symlinks(root: Path) -> list[Path]:
    found = []
    for directory, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(directory) / name
            if path.is_symlink() and os.readlink(path).startswith("/"):
                found.append(path)
    return found


def extract_vmlinux(vmlinuz: Path, destination: Path) -> None:
    """Write the uncompressed ELF kernel hidden in a bzImage (xz in Debian's 6.1, zstd in 6.12).

    Booting it directly (PVH entry) saves the guest's own decompression, ~3 s under TCG.
    """
    data = vmlinuz.read_bytes()
    kernel = _embedded_elf(data, XZ_MAGIC, _unxz) or _embedded_elf(data, ZSTD_MAGIC, _unzstd)
    if kernel is None:
        raise HarnessError(f"{vmlinuz.name}: found no xz- or zstd-compressed ELF kernel inside")
    temporary = destination.with_suffix(".partial")
    try:
        temporary.write_bytes(kernel)
        temporary.replace(destination)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        if error.errno == errno.ENOSPC:
            raise HarnessError(
                f"out of disk space in {destination.parent} writing {destination.name}"
            ) from None
        raise HarnessError(f"cannot write {destination}: {error.strerror}") from None


def _embedded_elf(data: bytes, magic: bytes, decompress: Callable[[bytes], bytes]) -> bytes | None:
    """The first stream starting with MAGIC that decompresses to an ELF file.

    The magic bytes can also occur by chance inside the setup code, so each candidate offset is
    tried until one yields an ELF header.
    """
    offset = data.find(magic)
    while offset != -1:
        try:
            kernel = decompress(data[offset:])
        except (lzma.LZMAError, zstandard.ZstdError):
            kernel = b""
        if kernel.startswith(ELF_MAGIC):
            return kernel
        offset = data.find(magic, offset + 1)
    return None


def _unxz(stream: bytes) -> bytes:
    # A decompressor object stops at the end of the stream and ignores the bytes after it.
    return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(stream)


def _unzstd(stream: bytes) -> bytes:
    return zstandard.ZstdDecompressor().decompressobj().decompress(stream)


def say(message: str) -> None:
    """Progress lines go to stderr so stdout stays machine-readable."""
    print(f"kmh: {message}", file=sys.stderr, flush=True)

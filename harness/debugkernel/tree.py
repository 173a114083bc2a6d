"""``kmh kernel add --tree PATH``: a kernel tree the user configured and built, as a target.

The tree stays where it is (it is the user's, and it is what their modules build against):
the target's ``usr/src/linux-headers-REL`` is a symlink to it. Its kernel image, .config and
System.map are copied and its modules installed into the target, the same layout as a Debian
or debug target, so build, check, vm and run treat it like any other.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from harness.debugkernel.config import read_config
from harness.errors import HarnessError
from harness.kernels.target import KernelTarget
from harness.kernels.unpack import extract_vmlinux


def tree_release(tree: Path) -> str:
    """The tree's ``uname -r`` (include/config/kernel.release, written by its build)."""
    path = tree / "include" / "config" / "kernel.release"
    return path.read_text().strip() if path.is_file() else ""


def check_tree(tree: Path) -> None:
    """One line naming what the tree lacks to be a target (HarnessError)."""
    if not tree.is_dir():
        raise HarnessError(f"--tree {tree}: no such directory")
    missing = []
    if not (tree / ".config").is_file():
        missing.append(".config (configure and build the kernel first)")
    if not (tree / "Module.symvers").is_file():
        missing.append("Module.symvers (run 'make modules' in the tree)")
    if not (tree / "vmlinux").is_file() and not (tree / "arch/x86/boot/bzImage").is_file():
        missing.append("a kernel image (vmlinux or arch/x86/boot/bzImage; run 'make')")
    if not tree_release(tree):
        missing.append("include/config/kernel.release (the tree was never built)")
    if missing:
        raise HarnessError(f"--tree {tree} is missing {', '.join(missing)}")
    config = read_config(tree / ".config")
    for option, why in (
        ("MODULES", "it cannot load modules"),
        ("PVH", "kmh boots the uncompressed vmlinux directly (PVH entry)"),
    ):
        if config.get(option) != "y":
            raise HarnessError(f"--tree {tree}: CONFIG_{option} is not set: {why}")


def add_tree(root: Path, tree: Path, *, progress=None) -> KernelTarget:
    """Install TREE as a target under ROOT (the store's kernels directory); staged, then renamed."""
    tree = tree.resolve()
    check_tree(tree)
    release = tree_release(tree)
    destination = root / release
    if (destination / KernelTarget.METADATA).is_file():
        existing = KernelTarget.load(destination)
        if existing.kbuild_dir.resolve() != tree:
            raise HarnessError(
                f"a kernel target {release} already exists (from {existing.suite or 'Debian'})"
            )
        return existing
    staging = root / f".{release}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        if progress:
            progress(f"installing the modules of {tree} ({release})")
        result = subprocess.run(
            ["make", "-s", "modules_install", f"INSTALL_MOD_PATH={staging}", "INSTALL_MOD_STRIP=1"],
            cwd=tree,
            capture_output=True,
            text=True,
            errors="replace",
        )
        if result.returncode != 0:
            lines = (result.stderr or result.stdout).strip().splitlines()
            raise HarnessError(
                f"make modules_install in {tree} failed: {lines[-1] if lines else ''}", details=result.stderr
            )
        boot = staging / "boot"
        boot.mkdir()
        image = tree / "arch" / "x86" / "boot" / "bzImage"
        if image.is_file():
            shutil.copy(image, boot / f"vmlinuz-{release}")
        shutil.copy(tree / ".config", boot / f"config-{release}")
        if (tree / "System.map").is_file():
            shutil.copy(tree / "System.map", boot / f"System.map-{release}")
        if (tree / "vmlinux").is_file():
            shutil.copy(tree / "vmlinux", staging / "vmlinux")
        else:
            extract_vmlinux(image, staging / "vmlinux")
        modules_dir = staging / "lib" / "modules" / release
        modules_dir.mkdir(parents=True, exist_ok=True)
        (modules_dir / "kernel").mkdir(exist_ok=True)
        for link in ("build", "source"):
            (modules_dir / link).unlink(missing_ok=True)
        headers = staging / "usr" / "src" / f"linux-headers-{release}"
        headers.parent.mkdir(parents=True)
        headers.symlink_to(tree)
        (modules_dir / "build").symlink_to(os.path.relpath(headers, modules_dir))
        target = KernelTarget(
            release=release, root=staging, suite="tree", flavour="tree", packages=(str(tree),)
        )
        target.save()
        staging.rename(destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return KernelTarget.load(destination)

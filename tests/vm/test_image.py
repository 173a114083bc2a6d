"""Guest image layers for the real kernel targets: module picking with dependencies, caching."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.kernels.target import KernelTarget
from harness.vm import image
from harness.vm.modules import ModuleTree


@pytest.fixture(scope="module")
def tree(kernel: KernelTarget) -> ModuleTree:
    return ModuleTree(kernel.modules_dir)


def test_boot_modules_come_dependencies_first(tree: ModuleTree) -> None:
    modules = tree.resolve(list(image.BOOT_MODULES), optional=True)
    names = [m.name for m in modules]
    assert "pvpanic_pci" in names
    assert names.index("pvpanic") < names.index("pvpanic_pci")
    for module in modules:
        assert module.data[:4] == b"\x7fELF", "compressed modules are stored decompressed"
        assert module.relpath.endswith(".ko")
    if "virtio_console" in tree.builtin:  # 6.12: built in, nothing to load
        assert "virtio_console" not in names
    else:
        assert names.index("virtio") < names.index("virtio_console")


def test_unknown_module_is_a_user_error(tree: ModuleTree) -> None:
    with pytest.raises(HarnessError, match="no_such_module"):
        tree.resolve(["no_such_module"])
    assert tree.resolve(["no_such_module"], optional=True) == []


def test_layers_are_cached_and_concatenate(kernel: KernelTarget, tmp_path: Path) -> None:
    base = image.base_layer(kernel)
    assert image.base_layer(kernel) == base
    mtime = base.stat().st_mtime_ns
    dest = image.initramfs(kernel, tmp_path / "initramfs.cpio", extra_modules=["crc32_generic"])
    assert base.stat().st_mtime_ns == mtime, "a run never rewrites a cached layer"
    listing = subprocess.run(
        ["cpio", "-t", "--quiet", "-F", str(dest)], capture_output=True, text=True, check=True
    ).stdout.split()
    # cpio -t stops at the first trailer: the base layer is first and holds the tools
    for path in ("init", "kmh/agent", "bin/busybox", "bin/sh", "bin/kmod", "sbin/insmod"):
        assert path in listing
    modules = subprocess.run(
        ["cpio", "-t", "--quiet", "-F", str(image.modules_layer(kernel, ["crc32_generic"]))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert f"lib/modules/{kernel.release}/modules.dep" in modules
    assert any(p.endswith("crc32_generic.ko") for p in modules)


def test_a_vm_without_run_files_boots_one_shared_image(kernel: KernelTarget, tmp_path: Path) -> None:
    """Issue 16: the layers are concatenated once per configuration, not for every VM; an image
    with per-run files is the run's own copy."""
    shared = image.initramfs(kernel, tmp_path / "a.cpio", extra_modules=["crc32_generic"])
    assert shared.parent == image.base_layer(kernel).parent and not (tmp_path / "a.cpio").exists()
    assert image.initramfs(kernel, tmp_path / "b.cpio", extra_modules=["crc32_generic"]) == shared
    layers = image.layers(kernel, extra_modules=["crc32_generic"])
    assert shared.read_bytes() == b"".join(layer.read_bytes() for layer in layers)
    run_files = image.run_layer({"/tmp/x": (b"x", 0o644)})
    own = image.initramfs(kernel, tmp_path / "c.cpio", extra_modules=["crc32_generic"], run_files=run_files)
    assert own == tmp_path / "c.cpio" and own.read_bytes() == shared.read_bytes() + run_files

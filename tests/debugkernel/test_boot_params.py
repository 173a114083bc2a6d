"""The boot parameters a debug target's detectors add to the guest's kernel command line, read
from the real targets' configs (the stock 6.1 gets none: its guests boot exactly as before)."""

from __future__ import annotations

from pathlib import Path

from harness.debugkernel.features import Features
from harness.vm.launcher import QemuLauncher
from harness.vm.qemu import VMConfig


def _append(kernel, tmp_path: Path) -> str:
    argv = QemuLauncher(kernel, VMConfig()).argv("qemu-system-x86_64", "tcg", tmp_path)
    return argv[argv.index("-append") + 1]


def test_a_kmemleak_target_boots_with_zeroed_allocations(kernel_debug, tmp_path):
    assert Features.of(kernel_debug).kernel_params() == "init_on_alloc=1"
    params = _append(kernel_debug, tmp_path).split()
    assert "init_on_alloc=1" in params and params[0] == "console=ttyS0"


def test_a_stock_target_boots_without_detector_params(kernel_61, tmp_path):
    assert Features.of(kernel_61).kernel_params() == ""
    assert "init_on_alloc" not in _append(kernel_61, tmp_path)

"""Issue 13 regression: ``kmh check --with DIR`` blamed the kernel's tree for a cycle in DIR.

The --with modules join the target's modules in one graph whose root is the kernel's tree, and
the cycle error named that root. The error now names where the modules of the cycle are.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from harness.kernels.target import KernelTarget
from tests.elf.elf_helpers import run_kmh


def test_a_cycle_in_a_with_directory_is_named_there(
    kernel_61: KernelTarget, fixtures_61: dict[str, Path], tmp_path: Path
) -> None:
    extra = tmp_path / "extra-modules"
    extra.mkdir()
    for name in ("kmh_cyca", "kmh_cycb"):
        shutil.copyfile(fixtures_61[name], extra / f"{name}.ko")
    result = run_kmh("check", str(fixtures_61["kmh_consumer"]), "--kernel", "bookworm", "--with", str(extra))
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.decode().strip().splitlines()
    assert "kmh_cyca -> kmh_cycb -> kmh_cyca" in line
    assert f"in {extra}:" in line, line
    assert str(kernel_61.modules_dir) not in line


def test_a_cycle_across_places_names_each_module_file(
    kernel_61: KernelTarget, fixtures_61: dict[str, Path], tmp_path: Path
) -> None:
    extra = tmp_path / "half"
    extra.mkdir()
    shutil.copyfile(fixtures_61["kmh_cycb"], extra / "kmh_cycb.ko")
    checked = tmp_path / "mine" / "kmh_cyca.ko"
    checked.parent.mkdir()
    shutil.copyfile(fixtures_61["kmh_cyca"], checked)
    result = run_kmh("check", str(checked), "--kernel", "bookworm", "--with", str(extra))
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.decode().strip().splitlines()
    assert f"kmh_cyca in {checked.parent}" in line and f"kmh_cycb in {extra}" in line, line
    assert str(kernel_61.modules_dir) not in line

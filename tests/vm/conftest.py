"""Fixtures for the VM tests: the misbehaving test modules, built for each kernel target."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from harness.kernels.target import KernelTarget

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def test_modules(kernel: KernelTarget, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """name -> built .ko of tests/vm/data/modules, for the current kernel target (real kbuild)."""
    build = tmp_path_factory.mktemp(f"vm-modules-{kernel.release}")
    for source in (DATA / "modules").iterdir():
        shutil.copy(source, build / source.name)
    result = subprocess.run(
        ["make", "-C", str(kernel.kbuild_dir), f"M={build}", "modules"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return {path.stem: path for path in build.glob("*.ko")}

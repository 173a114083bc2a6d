"""Fixtures of the elf tests: real module trees, module-tree variants, and small built modules.

The kernel targets' own trees are only read. Variants (modules dropped from modules.order, an
``updates/`` override, compressed files) are "farms": a private directory tree whose files are
symlinks to the target's modules (depmod and kmh both follow them), plus the few real files a
variant changes. Building them costs a second, not a copy of 400 MB.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from plumbum import local

from harness.kernels.target import KernelTarget
from tests.elf.elf_helpers import build_fixture_modules, run_kmh


@pytest.fixture(scope="session")
def fixtures_61(kernel_61: KernelTarget, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The fixture modules built against the 6.1 target."""
    return build_fixture_modules(kernel_61, tmp_path_factory.mktemp("fixtures61") / "m")


@pytest.fixture(scope="session")
def rendered_hello_61(kernel_61: KernelTarget, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``kmh new hello`` rendered and built against the 6.1 target: an ordinary, harmless module."""
    directory = tmp_path_factory.mktemp("hello61") / "kmh_hello"
    result = run_kmh("new", "hello", "kmh_hello", "-o", str(directory))
    assert result.returncode == 0, result.stderr.decode()
    code, out, err = local["make"]["-C", str(kernel_61.kbuild_dir), f"M={directory}", "modules"].run(
        retcode=None
    )
    assert code == 0, out[-3000:] + err[-3000:]
    return directory / "kmh_hello.ko"

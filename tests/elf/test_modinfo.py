"""``kmh modinfo`` against kmod's ``modinfo``, byte for byte, on real modules of both targets.

A broad sample (every 15th module of each tree, ~550 files) always runs; ``KMH_FULL=1`` runs
every module. Both commands get the same relative paths from the same directory, so the
``filename:`` line (made absolute against the cwd) is compared too.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness.kernels.target import KernelTarget
from tests.elf.elf_helpers import FULL, run_kmh

STEP = 1 if FULL else 15


def sample(kernel: KernelTarget, step: int = STEP) -> list[str]:
    relpaths = sorted(str(p.relative_to(kernel.modules_dir)) for p in kernel.modules_dir.rglob("*.ko*"))
    return relpaths[::step]


def modinfo(args: list[str], cwd: Path) -> bytes:
    result = subprocess.run(["modinfo", *args], capture_output=True, cwd=cwd, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_full_output_is_identical(kernel: KernelTarget) -> None:
    paths = sample(kernel)
    assert len(paths) > 250
    expected = modinfo(paths, kernel.modules_dir)
    ours = run_kmh("modinfo", *paths, cwd=kernel.modules_dir)
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout == expected
    assert expected.count(b"\nsignature:") == len(paths)  # the signature fields are compared too


@pytest.mark.parametrize(
    "options",
    [
        ["-F", "parm"],
        ["-F", "parmtype"],
        ["-F", "alias"],
        ["-F", "depends"],
        ["-F", "signature"],
        ["-F", "sig_key"],
        ["-F", "filename"],
        ["-F", "no_such_field"],
        ["-0"],
        ["-0", "-F", "parm"],
        ["-p"],
        ["-a"],
        ["-d"],
        ["-l"],
        ["-n"],
    ],
    ids=lambda options: " ".join(options),
)
def test_options_are_identical(kernel_61: KernelTarget, options: list[str]) -> None:
    paths = sample(kernel_61, 40)
    ours = run_kmh("modinfo", *options, *paths, cwd=kernel_61.modules_dir)
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout == modinfo([*options, *paths], kernel_61.modules_dir)


def test_built_module_and_absolute_path(fixtures_61: dict[str, Path]) -> None:
    path = str(fixtures_61["kmh_consumer"])
    ours = run_kmh("modinfo", path)
    assert ours.stdout == modinfo([path], Path("/"))
    assert b"sig_id" not in ours.stdout  # unsigned: no signature fields at all


def test_bad_file_among_good_ones_prints_the_good_ones_and_exits_2(
    kernel_61: KernelTarget, tmp_path: Path
) -> None:
    good = str(kernel_61.modules_dir / "kernel/drivers/usb/storage/uas.ko")
    bad = tmp_path / "bad.ko"
    bad.write_bytes(b"not a module")
    result = run_kmh("modinfo", "-F", "name", good, str(bad), good)
    assert result.returncode == 2
    assert result.stdout == b"uas\nuas\n"
    assert result.stderr.decode().splitlines() == [
        f"kmh: error: {bad}: not an ELF file (a kernel module is an ELF object)"
    ]

"""``kmh vm run`` end to end: real guests, exit codes, uploads, crash reports, usage errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.kernels.target import KernelTarget

KMH = str(Path(sys.executable).parent / "kmh")


def kmh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KMH, *args], capture_output=True, text=True, timeout=300)


@pytest.mark.vm
def test_run_passes_output_and_exit_code(kernel: KernelTarget) -> None:
    result = kmh("vm", "run", "--kernel", kernel.release, "--", "echo out; echo err >&2; exit 5")
    assert (result.returncode, result.stdout, result.stderr) == (5, "out\n", "err\n")
    argv = kmh("vm", "run", "--kernel", kernel.release, "--", "uname", "-r")
    assert (argv.returncode, argv.stdout) == (0, kernel.release + "\n")


@pytest.mark.vm
def test_run_with_put_and_a_crash(kernel: KernelTarget, test_modules: dict[str, Path]) -> None:
    ok = kmh(
        "vm",
        "run",
        "-k",
        kernel.release,
        "--put",
        str(test_modules["kmh_hello"]),
        "--",
        "insmod kmh_hello.ko",
    )
    assert ok.returncode == 0, ok.stderr
    oops = kmh(
        "vm",
        "run",
        "-k",
        kernel.release,
        "--put",
        f"{test_modules['kmh_null']}:/tmp/n.ko",
        "--",
        "insmod /tmp/n.ko",
    )
    assert oops.returncode == 137
    assert "kernel trouble: oops in kmh_null_read [kmh_null]" in oops.stderr
    assert "Call Trace:" in oops.stderr and "Traceback" not in oops.stderr


def test_usage_errors_are_one_line_exit_2(tmp_path: Path) -> None:
    for args, message in (
        (["vm", "run", "--kernel", "no-such-kernel", "--", "true"], "unknown kernel spec"),
        (["vm", "run", "--put", str(tmp_path / "missing.ko"), "--", "true"], "no such file"),
        (["vm", "run"], "no command given"),
        (["vm", "run", "--put", f"{__file__}:relative", "--", "true"], "must be absolute"),
    ):
        result = kmh(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr

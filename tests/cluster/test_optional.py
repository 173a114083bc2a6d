"""Dask is optional: without it ``kmh run`` works as before, and ``--cluster`` says which extra to install.

Each test runs ``kmh`` in a child Python whose ``import distributed`` and ``import dask`` fail,
as on a machine where ``kmod-harness`` was installed without the ``[cluster]`` extra.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.paths import REPO_ROOT

WITHOUT_DASK = (
    "import sys; sys.modules['distributed'] = sys.modules['dask'] = None; "
    "from harness.cli import main; sys.exit(main(sys.argv[1:]))"
)


def _kmh_without_dask(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_DASK, *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_cluster_without_the_extra_is_one_clear_line(kernel_61):
    result = _kmh_without_dask("run", "modules/hello.toml", "--kernel", "bookworm", "--cluster", "local:1")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "kmh: error: --cluster needs Dask distributed: pip install 'kmod-harness[cluster]'"
    ]


def test_cluster_rejects_a_local_runner_job_count(kernel_61):
    result = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", "modules/hello.toml", "-j", "2", "--cluster", "local:1"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "--resources VM=N" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("address", ["local:0", "local:two"])
def test_bad_local_worker_count(kernel_61, address):
    result = _kmh_without_dask("run", "modules/hello.toml", "--cluster", address)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"kmh: error: --cluster {address}: write local or local:N with N a number of workers"
    ]


@pytest.mark.kbuild
def test_the_local_runner_needs_no_dask(kernel_61):
    result = _kmh_without_dask("run", "modules/bad/compile_error.toml", "--kernel", "bookworm")
    assert result.returncode == 1, result.stderr
    assert "kmh_broken" in result.stdout and "FAIL" in result.stdout
    assert "1 failed" in result.stdout

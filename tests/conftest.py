"""Shared fixtures: the real kernel targets every integration test builds against and boots.

The targets are named by suite shorthand, never by ABI number, so the tests survive Debian's
kernel updates. ``ensure`` downloads a target on first use and reuses it afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from harness.kernels.store import KernelStore
from harness.kernels.target import KernelTarget


@pytest.fixture(scope="session")
def kernel_store() -> KernelStore:
    return KernelStore()


@pytest.fixture(scope="session")
def kernel_61(kernel_store: KernelStore) -> KernelTarget:
    """Debian bookworm's 6.1 kernel."""
    return kernel_store.ensure("bookworm")


@pytest.fixture(scope="session")
def kernel_612(kernel_store: KernelStore) -> KernelTarget:
    """The 6.12 kernel of bookworm-backports."""
    return kernel_store.ensure("bookworm-backports")


@pytest.fixture(scope="session")
def kernel_debug(kernel_store: KernelStore) -> KernelTarget:
    """bookworm's 6.1 built from Debian's source with KASAN, kmemleak, lockdep, failslab, KUnit."""
    return kernel_store.ensure("bookworm:debug")


@pytest.fixture(scope="session")
def kernel_debug_612(kernel_store: KernelStore) -> KernelTarget:
    """trixie's 6.12 built the same way (with the source fix of harness.debugkernel.patches)."""
    return kernel_store.ensure("trixie:debug")


@pytest.fixture(scope="session", params=["bookworm", "bookworm-backports"])
def kernel(request: pytest.FixtureRequest, kernel_store: KernelStore) -> KernelTarget:
    """Each kernel target in turn: tests using it run once on 6.1 and once on 6.12."""
    return kernel_store.ensure(request.param)


# -- the loaded-machine mode -------------------------------------------------------------------

#: A busy loop that also ends by itself, so a killed pytest cannot leave a hog behind for long.
_HOG = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass\n"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--kmh-cpu-hogs",
        type=int,
        default=int(os.environ.get("KMH_TEST_CPU_HOGS", "0")),
        help="run N busy-loop processes during the session: the suite must pass on a loaded machine",
    )


@pytest.fixture(scope="session", autouse=True)
def cpu_hogs(request: pytest.FixtureRequest) -> Iterator[int]:
    """With ``--kmh-cpu-hogs N`` (or KMH_TEST_CPU_HOGS=N), N processes spin for the whole session."""
    count = request.config.getoption("--kmh-cpu-hogs")
    hogs = [
        subprocess.Popen([sys.executable, "-c", _HOG.format(seconds=4 * 3600)], stdin=subprocess.DEVNULL)
        for _ in range(count)
    ]
    try:
        yield count
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
#: The kernel matrix: one kernel per API era, each built in its own suite's environment.
MATRIX = {
    "bullseye": "5.10",
    "bookworm": "6.1",
    "trixie": "6.12",
    "trixie-backports": "7.3",
    "sid": "7.2",
}


@pytest.fixture(scope="session", params=list(MATRIX))
def matrix_kernel(request: pytest.FixtureRequest, kernel_store: KernelStore) -> KernelTarget:
    """Each kernel of the matrix in turn (added on first use, with its build environment)."""
    return kernel_store.ensure(request.param)

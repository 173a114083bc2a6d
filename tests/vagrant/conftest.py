"""Fixtures of the Vagrant backend's tests: the box (built once, then cached) and leftover checks.

These tests drive real Vagrant, libvirt and QEMU. Where Vagrant is not installed they are skipped
with the set-up command to run, except under CI, where a missing tool is a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

import pytest

from harness.vm.vagrant.box import Box, BoxBuilder
from tests.vagrant.vagrant_helpers import libvirt_state


def _unavailable() -> str | None:
    if os.environ.get("KMH_SKIP_VAGRANT") == "1":
        return "KMH_SKIP_VAGRANT=1"
    if not shutil.which("vagrant") or not shutil.which("virsh"):
        return "vagrant/libvirt not installed: run vm/box/setup.sh"
    if os.geteuid() != 0:
        return "building the box needs root"
    return None


@pytest.fixture(scope="session")
def vagrant_box() -> Box:
    """The bookworm box: built on first use (several minutes), reused while its inputs hold."""
    reason = _unavailable()
    if reason:
        if os.environ.get("CI") and os.environ.get("KMH_SKIP_VAGRANT") != "1":
            pytest.fail(f"Vagrant backend unavailable in CI: {reason}")
        pytest.skip(reason)
    return BoxBuilder("bookworm").ensure()


@pytest.fixture
def no_leftovers(vagrant_box: Box) -> Callable[[], None]:
    """A check that no domain or volume appeared since the test started."""
    before = libvirt_state(vagrant_box)

    def check() -> None:
        assert libvirt_state(vagrant_box) == before, "a libvirt domain or volume was left behind"

    return check

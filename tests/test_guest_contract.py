"""The same crash, timeout and blame rules, checked for real against both backends.

Both backends are the guest core over their own transport (QEMU's agent channel, the Vagrant
box's SSH), so they must agree on every answer: a WARNING is a finding and does not poison; a
command killed at its deadline is a ``timeout`` that leaves the guest usable; an oops in a work
item after ``insmod`` returned is blamed on that insmod and poisons. One guest per backend runs
the checks in that order (the last one poisons it). The misbehaving modules are built on the
host for Debian 12's 6.1 kernel, which is also the Vagrant box's kernel.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.kernels.target import KernelTarget
from harness.vm.backend import VMBackend
from tests.vagrant.conftest import vagrant_box  # noqa: F401 - the fixture, for the vagrant backend

DATA = Path(__file__).parent / "vm" / "data" / "modules"

pytestmark = pytest.mark.vm


@pytest.fixture(scope="module")
def modules_61(kernel_61: KernelTarget, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    build = tmp_path_factory.mktemp("contract-modules")
    for source in DATA.iterdir():
        shutil.copy(source, build / source.name)
    result = subprocess.run(
        ["make", "-C", str(kernel_61.kbuild_dir), f"M={build}", "modules"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return {path.stem: path for path in build.glob("*.ko")}


@pytest.fixture(scope="module", params=["qemu", "vagrant"])
def guest(request: pytest.FixtureRequest, kernel_61: KernelTarget) -> Iterator[VMBackend]:
    if request.param == "qemu":
        from harness.vm.qemu import VM

        vm: VMBackend = VM(kernel_61)
    else:
        from harness.vm.vagrant.machine import VagrantVM

        box = request.getfixturevalue("vagrant_box")
        assert box.release == kernel_61.release, "the box runs Debian 12's 6.1 kernel"
        vm = VagrantVM(box=box)
    vm.start()  # type: ignore[attr-defined]
    try:
        yield vm
    finally:
        vm.close()


def test_warning_is_a_finding_that_does_not_poison(guest: VMBackend, modules_61: dict[str, Path]) -> None:
    guest.put(modules_61["kmh_warn"], "/root/kmh_warn.ko")
    result = guest.run("/sbin/insmod /root/kmh_warn.ko", timeout=60)
    assert result.exit_code == 0 and result.crash is None
    assert [w.module for w in result.warnings] == ["kmh_warn"], guest.console[-2000:]
    assert not guest.poisoned
    assert guest.run("/sbin/rmmod kmh_warn").ok


def test_killed_timeout_leaves_the_guest_usable(guest: VMBackend) -> None:
    started = time.monotonic()
    result = guest.run("sleep 60", timeout=2)
    assert result.timed_out and result.crash is not None and result.crash.kind == "timeout"
    assert result.exit_code == 137, "killed by SIGKILL, and it came back"
    assert time.monotonic() - started < 20
    assert not guest.poisoned
    assert guest.run("true").ok


def test_crash_between_commands_is_blamed_on_the_previous_command(
    guest: VMBackend, modules_61: dict[str, Path]
) -> None:
    guest.put(modules_61["kmh_delayed"], "/root/kmh_delayed.ko")
    result = guest.run("/sbin/insmod /root/kmh_delayed.ko", timeout=60)
    assert result.ok, "insmod returns before the work item runs"
    time.sleep(4)
    with pytest.raises(HarnessError, match="poisoned"):
        guest.run("true")
    crash = guest.crash
    assert crash is not None and crash.kind == "oops", guest.console[-3000:]
    assert (crash.function, crash.module) == ("kmh_delayed_fn", "kmh_delayed")
    assert crash.command == "/sbin/insmod /root/kmh_delayed.ko (reported after it returned)"

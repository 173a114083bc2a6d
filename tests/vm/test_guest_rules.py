"""The guest core's rules on a scripted transport: what poisons, what is blamed on whom.

These run in milliseconds; tests/test_guest_contract.py checks the same rules on the real QEMU
and Vagrant backends.
"""

from __future__ import annotations

import pytest

from harness.errors import HarnessError
from harness.vm.fake import FakeVM, Reply, ScriptedTransport
from harness.vm.result import NO_EXIT

OOPS = (
    "BUG: kernel NULL pointer dereference, address: 0000000000000000",
    "RIP: 0010:kmh_delayed_fn+0x11/0x30 [kmh_delayed]",
    "---[ end trace 0000000000000000 ]---",
)
WARNING = (
    "WARNING: CPU: 0 PID: 91 at /src/kmh_warn.c:9 kmh_warn_init+0x15/0xff0 [kmh_warn]",
    "---[ end trace 0000000000000000 ]---",
)
PANIC = ("Kernel panic - not syncing: kmh: panic on purpose",)


def vm_with(*script: tuple[str, object]) -> FakeVM:
    return FakeVM(ScriptedTransport(list(script)))


def test_a_commands_own_oops_poisons_and_is_blamed_on_it() -> None:
    vm = vm_with(("insmod", Reply(1, log=OOPS)))
    result = vm.run("insmod /tmp/x.ko")
    assert result.crash is not None and result.crash.function == "kmh_delayed_fn"
    assert result.crash.command == "insmod /tmp/x.ko"
    assert vm.poisoned and vm.crash is result.crash
    with pytest.raises(HarnessError, match="poisoned"):
        vm.run("true")
    assert vm.run("true", allow_poisoned=True).exit_code == 0


def test_warning_is_a_finding_not_a_crash() -> None:
    vm = vm_with(("insmod", Reply(log=WARNING)))
    result = vm.run("insmod /tmp/kmh_warn.ko")
    assert result.crash is None and result.ok
    assert [w.module for w in result.warnings] == ["kmh_warn"]
    assert not vm.poisoned


def test_background_crash_is_blamed_on_the_previous_command() -> None:
    vm = vm_with(("insmod", Reply(later=OOPS)))
    assert vm.run("insmod /tmp/kmh_delayed.ko").ok, "insmod itself returned fine"
    with pytest.raises(HarnessError, match="poisoned"):
        vm.run("true")
    assert vm.crash is not None
    assert vm.crash.command == "insmod /tmp/kmh_delayed.ko (reported after it returned)"


def test_killed_timeout_does_not_poison_a_stuck_one_does() -> None:
    vm = vm_with(("sleep", Reply(hangs=True, killable=True)))
    result = vm.run("sleep 60", timeout=2)
    assert result.timed_out and result.exit_code == 137 and "was killed" in result.crash.title
    assert not vm.poisoned

    vm = vm_with(("sleep", Reply(hangs=True, killable=False)))
    result = vm.run("sleep 60", timeout=2)
    assert result.timed_out and result.exit_code == NO_EXIT and "stuck" in result.crash.title
    assert vm.poisoned


def test_a_hung_command_is_explained_by_the_console() -> None:
    lockup = "\n".join(["watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [insmod:90]", *OOPS[1:]])
    vm = vm_with(("insmod", Reply(hangs=True, killable=False, console=lockup)))
    result = vm.run("insmod /tmp/kmh_loop.ko", timeout=2)
    assert result.crash is not None and result.crash.kind == "soft lockup" and vm.poisoned


def test_death_under_a_command_is_a_panic_read_from_the_console() -> None:
    vm = vm_with(("insmod", Reply(dies=True, console="\n".join(PANIC))))
    result = vm.run("insmod /tmp/kmh_panic.ko")
    assert result.crash is not None and result.crash.kind == "panic" and result.crash.panicked
    assert result.exit_code == NO_EXIT and vm.poisoned
    with pytest.raises(HarnessError, match="gone"):
        vm.run("true", allow_poisoned=True)


def test_death_between_commands_is_blamed_on_the_previous_command() -> None:
    vm = vm_with()
    assert vm.run("insmod /tmp/kmh_timer.ko").ok
    vm.scripted.die(console="\n".join(PANIC))
    with pytest.raises(HarnessError):
        vm.run("true")
    assert vm.crash is not None and vm.crash.panicked
    assert vm.crash.command == "insmod /tmp/kmh_timer.ko (reported after it returned)"


def test_marks_and_lost_records() -> None:
    vm = vm_with(("flood", Reply(log=("a", "b"), lose=42)))
    mark = vm.mark()
    vm.run("flood")
    assert [line.split("] ", 1)[1] for line in vm.dmesg(since=mark)] == ["a", "b"]
    assert vm.lost(since=mark) == 42
    later = vm.mark()
    assert vm.lost(since=later) == 0

"""How many guest round trips a module's cycle costs, pinned on the scripted guest.

Every guest command is a process start under TCG (5-20 ms), so a change that adds a command per
step shows up as seconds on a run of hundreds of modules. These counts are the budget: a new probe
must replace an old one or be merged into one (and change the numbers here on purpose). The checks
themselves are pinned in test_rules.py; the last tests show the merged reads still fail what the
separate reads failed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.lifecycle.cycle import GuestCycle, GuestModules
from harness.lifecycle.result import ModuleRun
from harness.lifecycle.state import SECTIONS, Snapshot, diff
from harness.vm import probes
from harness.vm.fake import FakeVM, Reply, ScriptedTransport
from tests.lifecycle.test_rules import HELLO, KERNEL, cycle_run, hello_script

DATA = Path(__file__).parent / "data"
#: A hello cycle on a fresh guest: snapshot; insmod, /proc/modules; /proc/modules + initstate;
#: rmmod, /proc/modules; snapshot; reload: insmod, /proc/modules, rmmod, /proc/modules.
FRESH_COMMANDS = 11
#: In a shared guest the previous module's "after" snapshot is this one's "before".
SHARED_COMMANDS = 10
#: Kernel log round trips: the load/unload marks and the log reads of verify and unload.
LOG_SYNCS = 6


@pytest.fixture
def module_file(tmp_path: Path) -> GuestModules:
    ko = tmp_path / "hello_kmh.ko"
    ko.write_bytes(b"\x7fELF fake")
    return GuestModules(built={"hello_kmh": ko}, order=["hello_kmh"])


class Counting(ScriptedTransport):
    """The scripted guest, also counting kernel log round trips."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.syncs = 0

    def sync(self):  # type: ignore[no-untyped-def]
        self.syncs += 1
        return super().sync()


def snapshots(calls: list[str]) -> int:
    return sum("echo @@end" in call for call in calls)


def test_a_hello_cycle_on_a_fresh_guest_is_11_commands_and_one_snapshot(module_file):
    transport = Counting(hello_script())
    run, _ = cycle_run(FakeVM(transport), module_file)
    assert run.verdict == "pass", run.failure
    assert len(transport.calls) == FRESH_COMMANDS, transport.calls
    assert snapshots(transport.calls) == 2, "before and after"
    assert transport.syncs == LOG_SYNCS


def test_a_hello_cycle_in_a_shared_guest_reuses_the_previous_after_snapshot(module_file):
    transport = Counting(hello_script())
    vm = FakeVM(transport)
    _, first = cycle_run(vm, module_file)
    assert first.clean_state is not None
    calls, syncs = len(transport.calls), transport.syncs
    run = ModuleRun(HELLO.name, "test", KERNEL.release)
    second = GuestCycle(vm, HELLO, run, module_file, KERNEL.release, known_state=first.clean_state)
    second.execute()
    run.seal()
    assert run.verdict == "pass", run.failure
    assert len(transport.calls) - calls == SHARED_COMMANDS, transport.calls[calls:]
    assert snapshots(transport.calls[calls:]) == 1, "only the after snapshot"
    assert transport.syncs - syncs == LOG_SYNCS


def test_a_restored_guest_hands_over_its_saved_listing_as_the_before_snapshot(module_file):
    """Issue 16: a guest restored from a saved state, which has run nothing yet, answers the
    "before" listing from what the saved guest printed: one command less, the same verdict."""
    listing = probes.SAVED[0]
    answer = FakeVM(ScriptedTransport(hello_script())).run(listing).stdout
    transport = Counting(hello_script())
    run, cycle = cycle_run(FakeVM(transport, saved_answers={listing: answer}), module_file)
    assert run.verdict == "pass", run.failure
    assert len(transport.calls) == FRESH_COMMANDS - 1, transport.calls
    assert snapshots(transport.calls) == 1, "only the after snapshot"
    assert cycle.clean_state is not None
    # The answer is the baseline: a saved listing without /dev/null makes the guest's own
    # /dev/null look left behind by the module.
    doctored = answer.replace("/dev/null\n", "")
    doctored_vm = FakeVM(ScriptedTransport(hello_script()), saved_answers={listing: doctored})
    run, _ = cycle_run(doctored_vm, module_file)
    cleanup = run.step("cleanup")
    assert cleanup is not None and cleanup.status == "fail" and "/dev/null" in cleanup.message


def test_verify_reads_proc_modules_and_initstate_in_one_command(module_file):
    transport = ScriptedTransport(hello_script())
    cycle_run(FakeVM(transport), module_file)
    reads = [call for call in transport.calls if "initstate" in call]
    assert reads == ["cat /proc/modules /sys/module/hello_kmh/initstate"]


def test_merged_read_still_fails_a_module_whose_initstate_is_not_live(module_file):
    def coming(command: str) -> Reply:
        return Reply(stdout="hello_kmh 16384 0 - Live 0xffffffffc0000000 (O)\ncoming\n")

    run, _ = cycle_run(FakeVM(ScriptedTransport(hello_script((r"initstate", coming)))), module_file)
    verify = run.step("verify")
    assert verify is not None and verify.status == "fail"
    assert "initstate is 'coming', not 'live'" in verify.message


def test_merged_read_still_fails_a_module_without_initstate(module_file):
    def missing(command: str) -> Reply:
        proc = "hello_kmh 16384 0 - Live 0xffffffffc0000000 (O)\n"
        return Reply(1, stdout=proc, stderr="cat: can't open '/sys/module/hello_kmh/initstate'")

    run, _ = cycle_run(FakeVM(ScriptedTransport(hello_script((r"initstate", missing)))), module_file)
    verify = run.step("verify")
    assert verify is not None and verify.status == "fail"
    assert "initstate is 'missing'" in verify.message


@pytest.mark.parametrize("release", ["6.1.0-56-amd64", "7.3.4+deb13-amd64"])
def test_two_process_snapshot_reads_what_the_eight_process_one_read(release):
    """Real guest output of both snapshot commands, taken one after the other on one guest."""
    merged = Snapshot.parse((DATA / f"snapshot-{release}.txt").read_text())
    separate = Snapshot.parse((DATA / f"snapshot-{release}.old.txt").read_text())
    assert merged.complete and separate.complete
    for section in SECTIONS:
        assert merged.sections[section] == separate.sections[section], section
    assert merged.sections["modules"] and merged.sections["debugfs"] and merged.sections["dev"]
    assert "pvpanic_pci" in merged.sections["modules"]  # loaded at boot by the agent
    assert diff(separate, merged).clean


def test_a_snapshot_cut_short_in_the_merged_files_is_never_compared():
    text = (DATA / "snapshot-6.1.0-56-amd64.txt").read_text()
    assert not Snapshot.parse(text[: text.index("@@paths")]).complete

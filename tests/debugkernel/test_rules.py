"""The verdict rules for a debug kernel's reports, on the scripted guest with the real reports
captured from the bookworm debug target: lockdep is a finding (the step fails, the module still
unloads), KASAN is a crash that poisons the guest, KTAP cases become results of their own."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.lifecycle.cycle import GuestModules
from harness.vm.console import strip_prefix
from harness.vm.fake import FakeVM, Reply, ScriptedTransport
from tests.lifecycle.test_rules import LOADED, cycle_run, hello_script, module_file, statuses

__all__ = ["module_file"]  # the fixture, used by name

DATA = Path(__file__).parent / "data"


def _report(name: str) -> tuple[str, ...]:
    """The captured report's lines as kmsg texts (the scripted guest adds its own timestamps)."""
    return tuple(strip_prefix(line) for line in (DATA / name).read_text().splitlines())


def test_lockdep_splat_fails_load_and_the_cycle_goes_on(module_file):
    script = hello_script((r"insmod .*hello_kmh\.ko", [Reply(log=(*_report("lockdep_abba.log"), *LOADED))]))
    run, cycle = cycle_run(FakeVM(ScriptedTransport(script)), module_file)
    load = run.step("load")
    assert load is not None and load.status == "fail" and load.crash is None
    assert load.message.startswith("kernel lockdep report during load: ")
    assert "possible circular locking dependency detected" in load.message
    assert "existing dependency chain" in load.evidence
    assert statuses(run)["unload"] == "pass" and statuses(run)["cleanup"] == "pass"
    assert run.verdict == "fail" and not cycle.reusable, "lockdep is off after one report: fresh guest"


def test_kasan_in_exit_is_a_crash_at_unload_and_poisons(module_file):
    script = hello_script((r"rmmod hello_kmh", Reply(log=_report("kasan_uaf.log"))))
    vm = FakeVM(ScriptedTransport(script))
    run, _ = cycle_run(vm, module_file)
    unload = run.step("unload")
    assert unload is not None and unload.status == "crash", statuses(run)
    assert unload.crash is not None and unload.crash.kind == "KASAN"
    assert "use-after-free in kmh_exit" in unload.message and "Read of size 1" in unload.message
    assert vm.poisoned and run.verdict == "crash" and statuses(run)["cleanup"] == "skip"


@pytest.fixture
def kunit_module_file(tmp_path: Path) -> GuestModules:
    """The spec's module is a real .ko with KUnit suites (the kunit template built for the debug
    target): only such a module's load log is read for KTAP."""
    ko = tmp_path / "hello_kmh.ko"
    ko.write_bytes((DATA / "kmh_kunit.ko").read_bytes())
    return GuestModules(built={"hello_kmh": ko}, order=["hello_kmh"])


KTAP = (
    "    KTAP version 1",
    "    # Subtest: kmh_example",
    "    1..2",
    "    ok 1 kmh_add_test",
    "    # kmh_failing_test: EXPECTATION FAILED at kmh.c:40",
    "    not ok 2 kmh_failing_test",
    "not ok 1 kmh_example",
)


def test_ktap_in_the_load_log_becomes_case_results(kunit_module_file):
    script = hello_script((r"insmod .*hello_kmh\.ko", [Reply(log=(*LOADED, *KTAP)), Reply(log=LOADED)]))
    run, _ = cycle_run(FakeVM(ScriptedTransport(script)), kunit_module_file)
    assert statuses(run)["kunit kmh_example.kmh_add_test"] == "pass"
    assert statuses(run)["kunit kmh_example.kmh_failing_test"] == "fail"
    assert run.verdict == "fail" and statuses(run)["reload"] == "pass"


def test_a_module_without_kunit_suites_costs_no_ktap_read(module_file):
    """KTAP is looked for only after loading a module that has suites: every other module's
    cycle keeps its budget of kernel-log reads (tests/lifecycle/test_round_trips.py)."""
    script = hello_script((r"insmod .*hello_kmh\.ko", [Reply(log=(*LOADED, *KTAP)), Reply(log=LOADED)]))
    run, _ = cycle_run(FakeVM(ScriptedTransport(script)), module_file)
    assert not [name for name in statuses(run) if name.startswith("kunit ")]
    assert run.verdict == "pass"

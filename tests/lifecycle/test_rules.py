"""The verdict rules, pinned down in milliseconds on the scripted guest (no VM is booted).

``FakeVM`` is the real guest core over a scripted transport, and ``GuestCycle``/``Runner`` are
the real lifecycle code, so these tests exercise what decides every verdict: which step is
blamed, what is skipped, when a guest is reused or replaced, and that nothing passes without
the evidence for it. The same crash/timeout/blame rules are run against both real backends in
tests/vm/test_guest_core.py.
"""

from __future__ import annotations

import queue
from pathlib import Path

import pytest

from harness.kernels.target import KernelTarget
from harness.lifecycle.cycle import GuestCycle, GuestLost, GuestModules
from harness.lifecycle.result import ModuleRun, StepResult
from harness.lifecycle.runner import Plan, PlannedRun, Runner, _required_steps
from harness.lifecycle.spec import load_spec
from harness.vm.fake import FakeVM, KernelModel, Reply, ScriptedTransport
from harness.vm.pool import Prewarmed

REPO = Path(__file__).resolve().parents[2]
HELLO = load_spec(REPO / "modules" / "hello.toml")
KERNEL = KernelTarget(release="6.1.0-test-amd64", root=Path("/nonexistent"), suite="bookworm")

OOPS = (
    "BUG: kernel NULL pointer dereference, address: 0000000000000000",
    "Oops: 0002 [#1] PREEMPT SMP NOPTI",
    "CPU: 0 PID: 93 Comm: kthread Tainted: G           OE      6.1.0-test-amd64 #1",
    "RIP: 0010:leftover_fn+0x11/0x30 [hello_kmh]",
    "Call Trace:",
    " <TASK>",
    " kthread+0xe8/0x110",
    " </TASK>",
    "---[ end trace 0000000000000000 ]---",
)
WARNING = (
    "WARNING: CPU: 0 PID: 91 at /root/.cache/kmh/build/6.1.0-test-amd64/umbrella/hello-0a1b2c3d4e/"
    "hello_kmh.c:20 "
    "hello_kmh_init+0x15/0xff0 [hello_kmh]",
    "CPU: 0 PID: 91 Comm: insmod Tainted: G           OE      6.1.0-test-amd64 #1",
    "RIP: 0010:hello_kmh_init+0x15/0xff0 [hello_kmh]",
    "---[ end trace 0000000000000000 ]---",
)
LOADED = ("hello_kmh: Hello from kmod-harness",)
#: The first guest command on a fresh guest, before the first step: the "before" state snapshot.
BEFORE_SNAPSHOT = r"echo @@end"
UNLOADED = ("hello_kmh: Goodbye: Hello from kmod-harness",)


def hello_script(*extra: tuple[str, object]) -> list:
    """A guest where hello loads and unloads as it should; EXTRA entries take precedence."""
    return [*extra, (r"insmod .*hello_kmh\.ko", Reply(log=LOADED)), (r"rmmod hello_kmh", Reply(log=UNLOADED))]


@pytest.fixture
def module_file(tmp_path: Path) -> GuestModules:
    ko = tmp_path / "hello_kmh.ko"
    ko.write_bytes(b"\x7fELF fake")
    return GuestModules(built={"hello_kmh": ko}, order=["hello_kmh"], sources={"hello_kmh": "/home/me/hello"})


def cycle_run(vm: FakeVM, modules: GuestModules, spec=HELLO) -> tuple[ModuleRun, GuestCycle]:
    run = ModuleRun(module=spec.name, source="test", kernel=KERNEL.release, required=_required_steps(spec))
    cycle = GuestCycle(vm, spec, run, modules, KERNEL.release)
    cycle.execute()
    run.seal()
    return run, cycle


def statuses(run: ModuleRun) -> dict[str, str]:
    return {step.name: step.status for step in run.steps}


# -- the cycle ---------------------------------------------------------------------------------


def test_a_clean_module_passes_with_every_step(module_file):
    run, cycle = cycle_run(FakeVM(ScriptedTransport(hello_script())), module_file)
    assert run.verdict == "pass", run.failure
    assert statuses(run) == {
        "load": "pass", "verify": "pass", "exercise": "skip",
        "unload": "pass", "cleanup": "pass", "reload": "pass",
    }  # fmt: skip
    assert cycle.reusable and cycle.clean_state is not None


def test_no_pass_when_required_steps_were_skipped():
    run = ModuleRun("m", "s", "k", required=("load", "unload", "cleanup"))
    names = ("load", "verify", "unload", "cleanup")
    run.steps = [StepResult(name, "skip", message="skipped") for name in names]
    run.seal()
    assert run.verdict == "error"
    assert run.failure is not None and "load, unload, cleanup never ran to a pass" in run.failure.message
    assert ModuleRun("m", "s", "k").verdict == "error", "a run with no step at all is no pass"


def test_guest_poisoned_before_the_first_step_is_not_the_modules_fault(module_file):
    vm = FakeVM(ScriptedTransport(hello_script()))
    vm.scripted.log(*OOPS)  # an earlier module's leftover crashed the kernel after it finished
    vm.mark()
    assert vm.poisoned
    with pytest.raises(GuestLost, match="poisoned before the first step"):
        cycle_run(vm, module_file)


def test_probe_that_crashes_is_a_crash_step_not_a_diff(module_file):
    """Reading /proc/misc oopses after the module left a misc device registered."""
    snapshot_oops = Reply(log=OOPS, exit_code=NO_EXIT_KILLED, model=False)
    script = hello_script()
    transport = ScriptedTransport(script)
    vm = FakeVM(transport)
    # The "before" snapshot is fine; the one after unload oopses.
    snapshots = [Reply(stdout=transport.model.snapshot()), snapshot_oops]
    transport.script.insert(0, (_re(r"echo @@end"), snapshots))
    run, cycle = cycle_run(vm, module_file)
    cleanup = run.step("cleanup")
    assert cleanup is not None and cleanup.status == "crash"
    assert cleanup.crash is not None and cleanup.crash.function == "leftover_fn"
    assert "gone from" not in cleanup.evidence and "NULL pointer" in cleanup.evidence
    assert run.verdict == "crash" and not cycle.reusable
    assert statuses(run)["reload"] == "skip"


def test_cut_short_snapshot_is_never_diffed(module_file):
    transport = ScriptedTransport(hello_script())
    whole = transport.model.snapshot()
    transport.script.insert(0, (_re(r"echo @@end"), [Reply(stdout=whole), Reply(stdout=whole[:40])]))
    run, _ = cycle_run(FakeVM(transport), module_file)
    cleanup = run.step("cleanup")
    assert cleanup is not None and cleanup.status == "error"
    assert "cut short" in cleanup.message and "gone from" not in cleanup.evidence
    assert run.verdict == "error"


def test_crash_after_unload_from_a_leftover_kthread_carries_the_oops(module_file):
    script = hello_script((r"rmmod hello_kmh", Reply(log=UNLOADED, later=OOPS)))
    run, _ = cycle_run(FakeVM(ScriptedTransport(script)), module_file)
    assert run.verdict == "crash"
    failure = run.failure
    # Reported at the step during which the kernel logged it (here: right after rmmod).
    assert failure is not None and failure.name in ("unload", "cleanup") and failure.crash is not None
    assert failure.crash.function == "leftover_fn" and "rmmod hello_kmh" in failure.crash.command
    assert "reported after it returned" in failure.crash.command
    assert "newly tainted" not in failure.message and "NULL pointer" in failure.evidence


def test_warning_in_init_is_a_finding_and_the_remaining_steps_run(module_file):
    script = hello_script((r"insmod .*hello_kmh\.ko", [Reply(log=(*WARNING, *LOADED)), Reply(log=LOADED)]))
    run, cycle = cycle_run(FakeVM(ScriptedTransport(script)), module_file)
    load = run.step("load")
    assert load is not None and load.status == "fail" and load.crash is None
    assert "kernel WARNING during load" in load.message
    assert "/home/me/hello/hello_kmh.c:20" in load.message, "the user's own source path"
    assert len(load.warnings) == 1 and load.warnings[0].kind == "WARNING"
    assert statuses(run)["unload"] == "pass" and statuses(run)["cleanup"] == "pass"
    assert run.verdict == "fail"
    assert not cycle.reusable, "taint W stays: the next module gets a fresh kernel"


def test_warning_allowed_by_the_spec_is_reported_but_passes(module_file):
    from dataclasses import replace

    spec = replace(HELLO, expect=replace(HELLO.expect, warnings="allow"))
    script = hello_script((r"insmod .*hello_kmh\.ko", [Reply(log=(*WARNING, *LOADED)), Reply(log=LOADED)]))
    run, _ = cycle_run(FakeVM(ScriptedTransport(script)), module_file, spec)
    load = run.step("load")
    assert load is not None and load.status == "pass" and "allowed by the spec" in load.message
    assert load.warnings and run.verdict == "pass"


def test_load_that_times_out_and_is_killed_is_a_timeout_and_the_guest_is_replaced(module_file):
    script = hello_script((r"insmod .*hello_kmh\.ko", Reply(hangs=True, killable=True)))
    vm = FakeVM(ScriptedTransport(script))
    run, cycle = cycle_run(vm, module_file)
    assert run.verdict == "timeout" and statuses(run)["verify"] == "skip"
    assert not vm.poisoned, "the kill brought the command back"
    assert not cycle.reusable


def test_load_that_cannot_be_killed_poisons(module_file):
    stuck = Reply(hangs=True, killable=False, console="\n".join(OOPS))
    script = hello_script((r"insmod .*hello_kmh\.ko", stuck))
    vm = FakeVM(ScriptedTransport(script))
    run, _ = cycle_run(vm, module_file)
    assert run.verdict == "crash" and vm.poisoned, "the console's oops explains the hang"
    assert run.failure is not None and run.failure.crash is not None
    assert run.failure.crash.function == "leftover_fn"


def test_lost_kernel_log_records_are_reported(module_file):
    script = hello_script((r"insmod .*hello_kmh\.ko", Reply(log=("flood",) * 3, lose=500)))
    run, _ = cycle_run(FakeVM(ScriptedTransport(script)), module_file)
    verify = run.step("verify")
    assert verify is not None and verify.status == "fail"
    assert "500 kernel log record(s) were lost" in verify.message


def test_insmod_refused_stops_and_fails(module_file):
    refused = Reply(1, stderr="insmod: ERROR: could not insert module x.ko: Invalid parameters", model=False)
    run, cycle = cycle_run(FakeVM(ScriptedTransport(hello_script((r"insmod", refused)))), module_file)
    assert run.verdict == "fail" and statuses(run)["verify"] == "skip"
    assert "EINVAL" in run.failure.message or "Invalid parameters" in run.failure.message


# -- the runner ----------------------------------------------------------------------------------


class Factory:
    """A vm_factory handing out scripted guests, recording each one."""

    def __init__(self, *scripts: list) -> None:
        self.scripts = list(scripts)
        self.made: list[FakeVM] = []

    def __call__(self, kernel, debian, python=False) -> FakeVM:
        script = self.scripts[min(len(self.made), len(self.scripts) - 1)]
        vm = FakeVM(ScriptedTransport(script, KernelModel()))
        self.made.append(vm)
        return vm


def run_worker(factory: Factory, modules: GuestModules, count: int = 1) -> list[ModuleRun]:
    runner = Runner(vm_factory=factory)
    runner._prewarmed = Prewarmed()
    items = [
        PlannedRun(HELLO, KERNEL, KERNEL, ModuleRun(HELLO.name, "test", KERNEL.release)) for _ in range(count)
    ]
    pending: queue.Queue = queue.Queue()
    for item in items:
        pending.put((item, modules))
    runner._worker(KERNEL, (), pending, Plan(items))
    return [item.run for item in items]


def test_runner_shares_a_guest_between_modules_that_behave(module_file):
    factory = Factory(hello_script())
    runs = run_worker(factory, module_file, count=3)
    assert [run.verdict for run in runs] == ["pass"] * 3
    assert len(factory.made) == 1 and factory.made[0].closed


def test_steps_come_in_lifecycle_order(module_file):
    run, _ = cycle_run(FakeVM(ScriptedTransport(hello_script())), module_file)
    assert [step.name for step in run.steps] == ["load", "verify", "exercise", "unload", "cleanup", "reload"]


def test_unload_refused_fails_and_the_guest_is_not_reused(module_file):
    refused = Reply(1, stderr="rmmod: ERROR: Module hello_kmh is in use", model=False)
    factory = Factory(hello_script((r"rmmod hello_kmh", refused)), hello_script())
    runs = run_worker(factory, module_file, count=2)
    assert runs[0].verdict == "fail" and runs[0].failure.name == "unload"
    assert "still loaded" in runs[0].failure.message
    assert {s.name: s.status for s in runs[0].steps}["cleanup"] == "skip"
    assert runs[1].verdict == "pass" and len(factory.made) == 2, "a fresh guest for the next module"


def test_isolate_boots_a_guest_per_module(module_file):
    factory = Factory(hello_script())
    runner = Runner(vm_factory=factory, isolate=True)
    runner._prewarmed = Prewarmed()
    items = [PlannedRun(HELLO, KERNEL, KERNEL, ModuleRun(HELLO.name, "t", KERNEL.release)) for _ in range(2)]
    pending: queue.Queue = queue.Queue()
    for item in items:
        pending.put((item, module_file))
    runner._worker(KERNEL, (), pending, Plan(items))
    assert [item.run.verdict for item in items] == ["pass", "pass"] and len(factory.made) == 2


def test_runner_replaces_the_guest_after_a_crash(module_file):
    crashing = hello_script((r"rmmod hello_kmh", [Reply(log=UNLOADED, later=OOPS), Reply(log=UNLOADED)]))
    factory = Factory(crashing, hello_script())
    runs = run_worker(factory, module_file, count=2)
    assert [run.verdict for run in runs] == ["crash", "pass"]
    assert len(factory.made) == 2


def test_runner_retries_a_guest_lost_before_the_first_step_then_says_error(module_file):
    def broken(command: str) -> Reply:
        return Reply(dies=True, console="\n".join(OOPS))

    dying = [(BEFORE_SNAPSHOT, broken)]
    factory = Factory(dying)
    (run,) = run_worker(factory, module_file)
    assert len(factory.made) == 2, "one retry on a fresh guest"
    assert run.verdict == "error" and run.verdict != "pass"
    assert run.failure is not None and "lost twice before the first step" in run.failure.message
    assert "leftover_fn" in run.failure.evidence or "NULL pointer" in run.failure.evidence


def test_runner_retry_succeeds_on_a_fresh_guest(module_file):
    factory = Factory([(BEFORE_SNAPSHOT, Reply(dies=True))], hello_script())
    (run,) = run_worker(factory, module_file)
    assert run.verdict == "pass" and len(factory.made) == 2


# -- helpers ---------------------------------------------------------------------------------------

NO_EXIT_KILLED = 139


def _re(pattern: str):
    import re

    return re.compile(pattern)

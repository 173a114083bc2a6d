"""The sweep's decisions, on the scripted guest answering with a real sweep's output.

faults_misc_sweep.txt holds every load of a sweep over the misc template's init on the bookworm
debug target (exit status, stdout with kmh_faultctl's record, stderr, kernel log): the scripted
guest replays load N as the real guest answered it, so the loop, its stop rules and its report
are checked here without a VM (the real sweep runs in test_debug_target.py). The helper module is
really built for the debug target (cached after the first time).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.debugkernel import kmemleak
from harness.debugkernel.sweep import MAX_POINTS, FaultSweep
from harness.lifecycle.cycle import GuestCycle, GuestModules
from harness.lifecycle.result import ModuleRun, StepResult
from harness.lifecycle.spec import spec_from_dict
from harness.vm.fake import FakeVM, KernelModel, Reply, ScriptedTransport
from tests.debugkernel.test_faults import _loads

MODULE = "kmh_misc_faults"
NTH = re.compile(r"echo (\d+) > /sys/module/kmh_faultctl/parameters/nth")
STAMP = re.compile(r"^\[\s*\d+\.\d+\] ")


@pytest.fixture(autouse=True)
def _no_kmemleak_wait(monkeypatch):
    """kmemleak ignores objects younger than 5 s; the scripted kernel's report is ready at once."""
    monkeypatch.setattr(kmemleak, "MIN_AGE", 0.0)


def _replay(n: int, loads: dict[int, dict[str, str]]) -> Reply:
    load = loads[n]
    lines = tuple(STAMP.sub("", line) for line in load["dmesg"].splitlines())
    return Reply(int(load["exit"]), stdout=load["stdout"], stderr=load["stderr"], log=lines, model=False)


def _sweep(
    kernel_debug, tmp_path: Path, *script: tuple[str, object], model: KernelModel | None = None
) -> tuple[StepResult, ScriptedTransport]:
    spec = spec_from_dict(
        {"module": {"template": "misc", "name": MODULE}, "load": {"inject_faults": True}},
        origin="t.toml",
        base=tmp_path,
    )
    ko = tmp_path / f"{MODULE}.ko"
    ko.write_bytes(b"\x7fELF scripted")
    transport = ScriptedTransport([*script, (r"kmemleak", Reply(stdout=""))], model)
    run = ModuleRun(MODULE, "t.toml", kernel_debug.release)
    cycle = GuestCycle(
        FakeVM(transport), spec, run, GuestModules({MODULE: ko}, [MODULE]), kernel_debug.release
    )
    cycle._prepare()
    return FaultSweep(cycle).run(), transport


def test_the_sweep_fails_each_point_of_init_until_a_load_runs_clean(kernel_debug, tmp_path):
    loads = _loads()
    step, transport = _sweep(
        kernel_debug, tmp_path, (NTH.pattern, lambda c: _replay(int(NTH.search(c)[1]), loads))
    )
    assert step.status == "pass", step.evidence
    assert step.message.startswith("fault injection: init reaches 28 fault-injection point(s) (14 quiet")
    assert step.message.endswith("(29 loads)")
    lines = step.evidence.splitlines()
    assert len(lines) == 29 and lines[-1] == "load #29: init ran clean (28 point(s) reached, none failed)"
    assert lines[0].startswith(
        "allocation #1 of init failed in device_create_groups_vargs+0x44/0x11a in misc_register+0x157/0x23e "
        "called from kmh_init+0xd/0x1000 [kmh_misc_faults]: init failed: "
    )
    assert lines[0].endswith("Cannot allocate memory (ENOMEM); nothing left behind")
    # The uevent failures misc_register swallows: the module loaded, and was unloaded again.
    assert "init went on: loaded, then unloaded; nothing left behind" in lines[24]
    assert "quietly" in lines[1] and "kmemleak's record" in lines[1] and "quietly" not in lines[24]
    assert "kobject_uevent_env+0x108/0x3e7" in lines[24]
    # Each load wraps kmod's insmod in a shell that prints its PID, then unloads what loaded.
    loads_run = [call for call in transport.calls if NTH.search(call)]
    assert len(loads_run) == 29 and "exec /sbin/insmod /lib/modules/" in loads_run[0]
    # failslab is put back and the helper unloaded: the guest is as it was for the next module.
    assert "echo Y > ignore-gfp-wait" in transport.calls[-1]
    assert transport.calls[-1].endswith("; /sbin/rmmod kmh_faultctl")


def test_a_failed_init_that_leaves_a_module_behind_fails_the_sweep_at_its_n(kernel_debug, tmp_path):
    loads = _loads()
    model = KernelModel()

    def answer(command: str) -> Reply:
        n = int(NTH.search(command)[1])
        if n == 3:  # as if the failed init had left a module in the kernel's list
            model.modules.append("kmh_misc_leftover")
        return _replay(n, loads)

    step, _ = _sweep(kernel_debug, tmp_path, (NTH.pattern, answer), model=model)
    assert step.status == "fail", step.evidence
    assert step.message.startswith("fault injection: allocation #3 of init failed in kobject_set_name_vargs")
    assert "left behind: " in step.message and "kmh_misc_leftover" in step.evidence
    # Loads after it are compared with the state before the sweep too: each names it again.
    assert "--- allocation #3: state ---" in step.evidence


def test_init_that_never_stops_reaching_points_ends_at_the_cap(kernel_debug, tmp_path):
    loads = _loads()
    step, _ = _sweep(
        kernel_debug, tmp_path, (NTH.pattern, lambda c: _replay(1 + int(NTH.search(c)[1]) % 2, loads))
    )
    assert step.status == "error"
    assert (
        step.message == f"fault injection: init still reached allocation #{MAX_POINTS}: the sweep stops there"
    )


def test_a_module_that_loaded_and_cannot_be_unloaded_ends_the_sweep(kernel_debug, tmp_path):
    loads = _loads()

    def answer(command: str) -> Reply:
        n = int(NTH.search(command)[1])
        reply = _replay(n, loads)
        if n == 2:  # init coped with the failure and loaded; its exit then refuses
            return Reply(99, stdout=reply.stdout, stderr="rmmod: ERROR: Module kmh_misc_faults is in use")
        return reply

    step, _ = _sweep(kernel_debug, tmp_path, (NTH.pattern, answer))
    assert step.status == "fail"
    assert step.message == "fault injection: allocation #2 of init failed, init went on, and rmmod failed"


def test_a_target_without_fault_injection_skips_with_the_missing_options(kernel_61, tmp_path):
    spec = spec_from_dict(
        {"module": {"template": "kmem"}, "load": {"inject_faults": True}}, origin="t", base=tmp_path
    )
    ko = tmp_path / "kmh_kmem.ko"
    ko.write_bytes(b"\x7fELF scripted")
    transport = ScriptedTransport()
    run = ModuleRun(spec.name, "t", kernel_61.release)
    cycle = GuestCycle(
        FakeVM(transport), spec, run, GuestModules({spec.name: ko}, [spec.name]), kernel_61.release
    )
    step = FaultSweep(cycle).run()
    assert step.status == "skip" and transport.calls == []
    assert step.message.startswith("fault injection needs CONFIG_FAULT_INJECTION, CONFIG_FAILSLAB")
    assert f"which {kernel_61.release} lacks" in step.message


def test_companions_stay_loaded_for_the_sweep_and_go_after_it(kernel_debug, tmp_path):
    """The module's init may need its companions' symbols: they are loaded first, then removed."""
    loads = _loads()
    spec = spec_from_dict(
        {
            "module": {"template": "misc", "name": MODULE},
            "companion": [{"template": "hello", "name": "kmh_companion"}],
            "load": {"inject_faults": True},
        },
        origin="t.toml",
        base=tmp_path,
    )
    built = {}
    for name in ("kmh_companion", MODULE):
        built[name] = tmp_path / f"{name}.ko"
        built[name].write_bytes(b"\x7fELF scripted")
    transport = ScriptedTransport(
        [(NTH.pattern, lambda c: _replay(int(NTH.search(c)[1]), loads)), (r"kmemleak", Reply(stdout=""))]
    )
    run = ModuleRun(MODULE, "t.toml", kernel_debug.release)
    modules = GuestModules(built, ["kmh_companion", MODULE])
    cycle = GuestCycle(FakeVM(transport), spec, run, modules, kernel_debug.release)
    cycle._prepare()
    step = FaultSweep(cycle).run()
    assert step.status == "pass", step.evidence
    first_load = next(i for i, call in enumerate(transport.calls) if NTH.search(call))
    companion = [i for i, call in enumerate(transport.calls) if "insmod" in call and "kmh_companion" in call]
    assert companion and companion[0] < first_load
    assert transport.calls[-1].startswith("/sbin/rmmod kmh_companion || /sbin/modprobe -r kmh_companion; ")

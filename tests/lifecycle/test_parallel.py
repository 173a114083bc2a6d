"""-j N: modules spread over N real VMs, and a crash in one VM does not touch the other's results."""

from __future__ import annotations

import threading

import pytest

from harness.lifecycle.runner import Runner, make_plan
from harness.lifecycle.spec import spec_for_template
from harness.vm.backends import qemu_vm

pytestmark = pytest.mark.vm


def test_two_vms_in_parallel_share_the_work(kernel_61):
    booted: list[str] = []
    lock = threading.Lock()

    def counting_vm(kernel, debian):  # type: ignore[no-untyped-def]
        with lock:
            booted.append(threading.current_thread().name)
        return qemu_vm(kernel, debian)

    specs = [spec_for_template("hello", name=f"par_{i}") for i in range(4)]
    specs.insert(1, spec_for_template("bad_null_deref", name="par_crash"))
    runs = Runner(jobs=2, vm_factory=counting_vm).execute(make_plan(specs, ["bookworm"]))
    verdicts = {run.module: run.verdict for run in runs}
    assert verdicts == {
        "par_0": "pass",
        "par_crash": "crash",
        "par_1": "pass",
        "par_2": "pass",
        "par_3": "pass",
    }
    # The prewarmed boot and the second worker's own (plus a replacement if a worker had work left
    # after the crash).
    assert len(booted) >= 2
    crash = next(run for run in runs if run.module == "par_crash").crash
    assert crash is not None and crash.module == "par_crash"

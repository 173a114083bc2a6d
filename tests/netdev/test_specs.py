"""modules/netdev.toml and modules/bad/netdev_leak.toml through the real runner on 6.1 and 6.12.

(tests/lifecycle/test_specs_run.py runs them too, among every shipped spec; this file states what
their reports must say, and that only plans with link checks pay for the Python layer.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.lifecycle.runner import Runner, make_plan
from harness.lifecycle.spec import load_spec, spec_for_template
from harness.paths import REPO_ROOT
from harness.vm.backends import qemu_vm

pytestmark = pytest.mark.vm


@pytest.fixture(scope="module")
def runs(kernel):  # type: ignore[no-untyped-def]
    booted: list[dict] = []

    def spying_vm(kernel, debian, **options):  # type: ignore[no-untyped-def]
        booted.append(options)
        return qemu_vm(kernel, debian, **options)

    specs = [load_spec(REPO_ROOT / "modules" / name) for name in ("netdev.toml", "bad/netdev_leak.toml")]
    result = Runner(vm_factory=spying_vm).execute(make_plan(specs, [kernel.release]))
    return {run.module: run for run in result}, booted


def test_netdev_spec_passes_every_netlink_check(runs) -> None:  # type: ignore[no-untyped-def]
    run = runs[0]["kmh_netdev"]
    report = "\n".join(f"{s.name}: {s.status}: {s.message}\n{s.evidence}" for s in run.steps)
    assert run.verdict == "pass", report
    assert "netlink (loaded): 12/12 checks passed on 2 link(s)" in run.step("verify").message
    evidence = run.step("verify").evidence  # kept for JUnit/KTAP/JSON although the step passed
    assert "ok   kmhnet0 tx_count: sent 10 frames of 60 bytes: tx_packets +10" in evidence
    assert "MTU 9001 refused with EINVAL (Invalid argument): mtu greater than device maximum" in evidence
    assert "MTU 67 refused with EINVAL (Invalid argument): mtu less than device minimum" in evidence
    assert run.step("cleanup").message == "nothing left behind; 2 link(s) gone from netlink"
    assert run.step("reload").status == "pass"


def test_leaky_netdev_is_caught_by_the_diff_and_by_netlink(runs) -> None:  # type: ignore[no-untyped-def]
    run = runs[0]["kmh_netleak"]
    assert run.verdict == "crash"
    assert run.step("unload").status == "pass"  # rmmod itself succeeds on both kernels
    cleanup = run.step("cleanup")
    assert cleanup.status == "crash"
    assert "left behind in /sys/class: /sys/class/net/kmhleak0" in cleanup.evidence
    assert "left behind in /sys/class: /sys/class/net/kmhleak1" in cleanup.evidence
    assert "netlink check (unloaded) crashed the kernel: oops in dev_get_phys_port_id" in cleanup.message
    assert cleanup.crash is not None and cleanup.crash.function == "dev_get_phys_port_id"
    assert "guest.py" in cleanup.crash.command
    assert any("rtnl_fill_ifinfo" in line for line in cleanup.crash.lines)


def test_link_specs_boot_with_python_and_others_without(runs, kernel, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert runs[1] and all(options == {"python": True} for options in runs[1])
    booted: list[dict] = []

    def spying_vm(kernel, debian, **options):  # type: ignore[no-untyped-def]
        booted.append(options)
        return qemu_vm(kernel, debian, **options)

    (run,) = Runner(vm_factory=spying_vm).execute(make_plan([spec_for_template("hello")], [kernel.release]))
    assert run.verdict == "pass"
    assert booted == [{}]

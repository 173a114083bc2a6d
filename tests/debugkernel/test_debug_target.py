"""The bookworm debug kernel, built for real from Debian's linux-source-6.1 (cached in the store),
and every spec of modules/debug/ run on it with its promised verdict; the kmem bad modules also
run on the stock kernel, where they pass silently: that contrast is what the debug target is for.
"""

from __future__ import annotations

import re

import pytest

from harness.debugkernel.features import Features
from harness.lifecycle.result import ModuleRun
from harness.lifecycle.runner import Runner, make_plan
from harness.lifecycle.spec import ModuleSpec, load_spec
from harness.paths import REPO_ROOT

pytestmark = pytest.mark.vm

DEBUG_SPECS = sorted((REPO_ROOT / "modules" / "debug").glob("*.toml"))
#: The bad modules a stock kernel can load (the KUnit ones need KUnit in the kernel).
CONTRAST = [p for p in DEBUG_SPECS if not p.name.startswith("kunit")]


def _report(run: ModuleRun) -> str:
    return "\n".join(f"{s.name}: {s.status}: {s.message}\n{s.evidence}" for s in run.steps)


def test_debug_target_is_an_ordinary_target_with_every_detector(kernel_debug):
    features = Features.of(kernel_debug)
    assert features.kmemleak and features.kasan and features.lockdep
    assert features.atomic_sleep and features.failslab and features.kunit
    assert kernel_debug.release.endswith("-kmh-debug") and kernel_debug.flavour == "debug"
    assert kernel_debug.symvers.is_file(), "the build tree doubles as the headers"
    assert (kernel_debug.kbuild_dir / "scripts" / "mod" / "modpost").is_file()
    assert kernel_debug.vmlinux.read_bytes()[:4] == b"\x7fELF"
    assert (kernel_debug.modules_dir / "modules.builtin").is_file()
    builtin = (kernel_debug.modules_dir / "modules.builtin").read_text()
    assert "virtio_console.ko" in builtin and "pvpanic-pci.ko" in builtin


@pytest.fixture(scope="module")
def debug_runs(kernel_debug) -> dict[str, tuple[ModuleSpec, ModuleRun]]:
    specs = [load_spec(path) for path in DEBUG_SPECS]
    runs = Runner(jobs=2).execute(make_plan(specs, ["bookworm:debug"]))
    return {path.name: (spec, run) for path, spec, run in zip(DEBUG_SPECS, specs, runs, strict=True)}


@pytest.mark.parametrize("spec_file", [p.name for p in DEBUG_SPECS])
def test_debug_spec_gets_its_promised_verdict(debug_runs, spec_file):
    spec, run = debug_runs[spec_file]
    outcome = spec.outcome
    assert run.verdict == outcome.verdict, _report(run)
    if outcome.verdict == "pass":
        return
    failure = run.failure
    assert failure is not None and failure.name == outcome.step, _report(run)
    assert re.search(outcome.message, failure.message + "\n" + failure.evidence, re.S), _report(run)


def test_kmemleak_names_the_module_frame_and_size(debug_runs):
    _spec, run = debug_runs["kmalloc_leak.toml"]
    cleanup = run.step("cleanup")
    assert cleanup is not None and cleanup.status == "fail", _report(run)
    assert "unreferenced object 0x" in cleanup.evidence and "(size 2048)" in cleanup.evidence
    # The raw address kmemleak prints for the unloaded module, named from the recorded layout.
    assert re.search(r"kmh_init\+0x[0-9a-f]+/0x[0-9a-f]+ \[kmh_kmalloc_leak\]", cleanup.evidence), (
        cleanup.evidence
    )


def test_kasan_report_is_a_crash_with_access_and_function(debug_runs):
    _spec, run = debug_runs["uaf_exit.toml"]
    crash = run.crash
    assert crash is not None and crash.kind == "KASAN", _report(run)
    assert crash.function == "kmh_exit" and crash.module == "kmh_uaf_exit"
    assert "Read of size 1 by task rmmod" in crash.title


def test_lockdep_report_carries_the_chain(debug_runs):
    _spec, run = debug_runs["abba.toml"]
    load = run.step("load")
    assert load is not None and load.status == "fail"
    assert load.warnings and load.warnings[0].kind == "lockdep"
    assert "existing dependency chain" in load.evidence and "kmh_lock_a" in load.evidence
    # A finding, not a crash: the module still unloads and leaves nothing behind.
    assert [s.status for s in run.steps if s.name in ("unload", "cleanup")] == ["pass", "pass"], _report(run)


def test_kunit_cases_are_results_of_their_own(debug_runs):
    _spec, run = debug_runs["kunit_failing.toml"]
    cases = {s.name: s.status for s in run.steps if s.name.startswith("kunit ")}
    assert cases == {
        "kunit kmh_failing.kmh_add_test": "pass",
        "kunit kmh_failing.kmh_alloc_test": "pass",
        "kunit kmh_failing.kmh_failing_test": "fail",
    }


def test_fault_injection_fails_each_allocation_of_init_once(debug_runs):
    """kmem's init makes two kmallocs (each followed by kmemleak's quiet record of it): both are
    failed once, counted from init, and both unwind cleanly; the clean load ends the sweep."""
    _spec, run = debug_runs["faults_clean.toml"]
    faults = run.step("faults")
    assert faults is not None and faults.status == "pass", _report(run)
    injected = [line for line in faults.evidence.splitlines() if line.startswith("allocation #")]
    sited = [line for line in injected if "failed in kmh_init+" in line]
    assert [line.split()[1] for line in sited] == ["#1", "#3"], faults.evidence
    assert all("[kmh_faults_clean]: init failed: " in line and "ENOMEM" in line for line in sited)
    assert all(line.endswith("nothing left behind") for line in injected)
    assert f"load #{len(injected) + 1}: init ran clean" in faults.evidence
    # The forgotten kfree: only the failure of the second allocation leaves the first behind.
    _spec, bad = debug_runs["unwind_leak.toml"]
    failed = bad.step("faults")
    assert failed is not None and failed.status == "fail", _report(bad)
    assert failed.message.startswith("fault injection: allocation #3 of init failed in kmh_init+")
    assert "allocation #1 of init failed in kmh_init+" in failed.evidence
    assert "--- allocation #3: kmemleak ---\nunreferenced object 0x" in failed.evidence
    assert "(size 2048)" in failed.evidence
    # The buffer's allocation site in the failed init, named though the module is gone.
    leak = failed.evidence.split("--- allocation #3: kmemleak ---")[1]
    assert re.search(r"\n    kmh_init\+0x[0-9a-f]+/0x[0-9a-f]+ \[kmh_unwind_leak\]\n", leak), leak


@pytest.fixture(scope="module")
def stock_runs(kernel_61) -> dict[str, ModuleRun]:
    specs = [load_spec(path) for path in CONTRAST]
    runs = Runner(jobs=1).execute(make_plan(specs, ["bookworm"]))
    return {path.name: run for path, run in zip(CONTRAST, runs, strict=True)}


@pytest.mark.parametrize("spec_file", [p.name for p in CONTRAST])
def test_stock_kernel_sees_nothing(stock_runs, spec_file):
    """The same modules on Debian's own 6.1: the bugs are invisible (init_leak fails to load, as
    it must everywhere, but nothing says what its init left behind)."""
    run = stock_runs[spec_file]
    if spec_file == "init_leak.toml":
        assert run.verdict == "fail" and "kmemleak" not in _report(run), _report(run)
        return
    assert run.verdict == "pass", _report(run)
    assert not any(step.warnings for step in run.steps)
    faults = run.step("faults")
    if faults is not None:  # inject_faults: Debian's kernel has no failslab, the sweep says so
        assert faults.status == "skip" and "needs CONFIG_FAULT_INJECTION" in faults.message, _report(run)

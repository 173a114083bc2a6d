"""trixie's 6.12 debug kernel (built with the source fix of :mod:`harness.debugkernel.patches`,
booted with ``init_on_alloc=1``): kmemleak names a dropped kmalloc there as on 6.1, and correct
modules still pass.

Without the fix this kernel's kmemleak missed the leak in about one round of four (a stale
``slab->freelist`` in ``struct page`` kept the object "referenced"), so the leak runs twice in
one guest here: a regression has two chances to show.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.debugkernel.features import Features
from harness.lifecycle.result import ModuleRun
from harness.lifecycle.runner import Runner, make_plan
from harness.lifecycle.spec import load_spec
from harness.paths import REPO_ROOT

pytestmark = pytest.mark.vm

DEBUG = REPO_ROOT / "modules" / "debug"
LEAK = DEBUG / "kmalloc_leak.toml"
CLEAN = [DEBUG / "faults_clean.toml", REPO_ROOT / "modules" / "hello.toml"]


def _report(run: ModuleRun) -> str:
    return "\n".join(f"{s.name}: {s.status}: {s.message}\n{s.evidence}" for s in run.steps)


def _second_leak(tmp: Path) -> Path:
    """The leak spec again under another module name (one guest runs both, one after the other)."""
    text = LEAK.read_text().replace('"kmh_kmalloc_leak"', '"kmh_kmalloc_leak2"')
    copy = tmp / "kmalloc_leak2.toml"
    copy.write_text(text.replace("by kmh_kmalloc_leak never", "by kmh_kmalloc_leak2 never"))
    return copy


@pytest.fixture(scope="module")
def trixie_runs(kernel_debug_612, tmp_path_factory) -> dict[str, ModuleRun]:
    tmp = tmp_path_factory.mktemp("leak612")
    paths = [LEAK, _second_leak(tmp), *CLEAN]
    specs = [load_spec(path) for path in paths]
    runs = Runner(jobs=1).execute(make_plan(specs, ["trixie:debug"]))
    return {spec.name: run for spec, run in zip(specs, runs, strict=True)}


def test_trixie_debug_is_6_12_with_kmemleak(kernel_debug_612):
    assert kernel_debug_612.major_minor == (6, 12) and kernel_debug_612.release.endswith("-kmh-debug")
    features = Features.of(kernel_debug_612)
    assert features.kmemleak and features.kasan and features.failslab


@pytest.mark.parametrize("module", ["kmh_kmalloc_leak", "kmh_kmalloc_leak2"])
def test_kmemleak_on_6_12_fails_cleanup_naming_the_leak(trixie_runs, module):
    run = trixie_runs[module]
    failure = run.failure
    assert run.verdict == "fail" and failure is not None and failure.name == "cleanup", _report(run)
    assert failure.message == f"kmemleak: 1 object(s) (2048 bytes) allocated by {module} never freed"
    assert "(size 2048)" in failure.evidence
    assert re.search(rf"kmh_init\+0x[0-9a-f]+/0x[0-9a-f]+ \[{module}\]", failure.evidence), failure.evidence


@pytest.mark.parametrize("module", ["kmh_faults_clean", "hello_kmh"])
def test_correct_modules_pass_on_6_12_debug(trixie_runs, module):
    run = trixie_runs[module]
    assert run.verdict == "pass", _report(run)

"""Every shipped spec in modules/, run for real on every kernel of the matrix (5.10, 6.1, both
6.12s, 7.3, 7.2), each built in its own suite's environment, with the verdict it promises.

One Runner per kernel executes all specs together (shared VM boots, replaced after crashes), so
this is also the test that one bad module never hides the results of the others.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.lifecycle.result import ModuleRun
from harness.lifecycle.runner import Runner, make_plan
from harness.lifecycle.spec import ModuleSpec, load_spec
from harness.paths import REPO_ROOT

pytestmark = pytest.mark.vm

#: modules/debug/ promises its verdicts on a debug kernel: tests/debugkernel runs those.
SPEC_FILES = sorted(p for p in (REPO_ROOT / "modules").rglob("*.toml") if p.parent.name != "debug")


KERNELS = ["bookworm", "bookworm-backports", "bullseye", "trixie", "trixie-backports", "sid"]


@pytest.fixture(scope="module", params=KERNELS)
def all_runs(request, kernel_61, kernel_612) -> dict[str, tuple[ModuleSpec, ModuleRun]]:
    specs = [load_spec(path) for path in SPEC_FILES]
    plan = make_plan(specs, [request.param])
    runs = Runner(jobs=1).execute(plan)
    return {
        str(path.relative_to(REPO_ROOT)): (spec, run)
        for path, spec, run in zip(SPEC_FILES, specs, runs, strict=True)
    }


@pytest.mark.parametrize("spec_file", [str(p.relative_to(REPO_ROOT)) for p in SPEC_FILES])
def test_spec_gets_its_promised_verdict(all_runs, spec_file):
    spec, run = all_runs[spec_file]
    outcome = spec.outcome
    report = "\n".join(f"{s.name}: {s.status}: {s.message}\n{s.evidence}" for s in run.steps)
    assert run.verdict == outcome.verdict, report
    if outcome.verdict == "pass":
        assert [s.name for s in run.steps if s.status == "pass"][-3:] == ["unload", "cleanup", "reload"], (
            report
        )
        return
    failure = run.failure
    assert failure is not None and failure.name == outcome.step, report
    if outcome.message:
        assert re.search(outcome.message, failure.message + "\n" + failure.evidence), report
    if outcome.verdict in ("crash", "timeout"):
        assert failure.crash is not None and failure.crash.command, report


def test_nothing_booted_for_modules_that_cannot_load(all_runs):
    for key in ("modules/bad/wrong_kernel.toml", "modules/bad/compile_error.toml"):
        _spec, run = all_runs[key]
        assert not any(step.name in ("load", "unload") for step in run.steps)


def test_main_job_writes_ci_reports(tmp_path, kernel_61):
    """The README's main job, through the real CLI, with every report file."""
    junit, ktap, json_file = tmp_path / "r.xml", tmp_path / "r.ktap", tmp_path / "r.json"
    command = [sys.executable, "-m", "harness.cli", "run", "modules/hello.toml"]
    command += ["--junit", str(junit), "--ktap", str(ktap), "--json", str(json_file)]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"hello_kmh\s+\S+\s+PASS", result.stdout)
    assert "1 passed" in result.stdout
    import xml.etree.ElementTree as ElementTree

    suites = ElementTree.parse(junit).getroot()
    assert suites.get("failures") == "0" and suites.get("errors") == "0"
    assert ktap.read_text().startswith("KTAP version 1\n1..1\n")
    assert '"passed": 1' in json_file.read_text()


def test_a_bad_spec_file_is_a_clear_error(tmp_path):
    spec = tmp_path / "typo.toml"
    spec.write_text('[module]\ntemplate = "hello"\n[expect]\nload_dmseg = ["x"]\n')
    result = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", str(spec)], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "unknown key(s) load_dmseg" in result.stderr
    assert "Traceback" not in result.stderr


def test_spec_files_exist():
    assert Path(REPO_ROOT / "modules" / "hello.toml") in SPEC_FILES
    assert len(SPEC_FILES) >= 15

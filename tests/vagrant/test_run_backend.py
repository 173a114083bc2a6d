"""``kmh run --backend vagrant --build-in-vm``: the shipped specs in the box, built inside it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.paths import REPO_ROOT
from harness.vm.vagrant.box import Box

pytestmark = pytest.mark.vagrant


def test_specs_run_in_the_box_with_kbuild_inside(
    vagrant_box: Box, no_leftovers: Callable[[], None], kernel_61, tmp_path: Path
) -> None:
    report = tmp_path / "run.json"
    specs = ["modules/hello.toml", "modules/consumer.toml", "modules/bad/compile_error.toml"]
    command = [sys.executable, "-m", "harness.cli", "run", *specs, "--backend", "vagrant", "--build-in-vm"]
    result = subprocess.run(
        [*command, "--json", str(report)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=1500
    )
    runs = {run["module"]: run for run in json.loads(report.read_text())["runs"]}
    assert {name: run["verdict"] for name, run in runs.items()} == {
        "hello_kmh": "pass",
        "kmh_consumer": "pass",
        "kmh_broken": "fail",
    }, result.stdout
    assert result.returncode == 1
    broken_build = next(step for step in runs["kmh_broken"]["steps"] if step["name"] == "build")
    assert (
        "kmh_broken.c:18" in broken_build["message"]
        and "kmh_function_that_does_not_exist" in broken_build["message"]
    )
    consumer_steps = {step["name"]: step for step in runs["kmh_consumer"]["steps"]}
    assert "held by kmh_consumer" in consumer_steps["verify"]["message"]
    assert consumer_steps["cleanup"]["status"] == "pass"
    no_leftovers()

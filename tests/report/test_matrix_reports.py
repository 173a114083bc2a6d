"""A module × kernel matrix in every report: the grid in the summary, the kernel of each result
in JSON, JUnit and KTAP."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree

from harness.lifecycle.result import ModuleRun
from harness.report import render_grid, render_junit, render_ktap, render_summary, to_json
from tests.report.conftest import K61, K612, _passed, build_failure_run, hello_run


def _matrix() -> list[ModuleRun]:
    """hello passes on both kernels; broken fails to build on 6.12 and passes on 6.1."""
    hello_612 = hello_run()
    hello_612.kernel = K612
    broken_61 = build_failure_run()
    broken_61.kernel, broken_61.steps = K61, _passed(*[s.name for s in hello_run().steps])
    return [hello_run(), hello_612, broken_61, build_failure_run()]


def test_summary_shows_the_grid_only_for_several_kernels():
    matrix = _matrix()
    grid = render_grid(matrix).splitlines()
    assert grid[0].split() == ["MODULE", K61, K612]
    assert grid[1].split() == ["hello_kmh", "PASS", "PASS"]
    assert grid[2].split()[:4] == ["broken", "PASS", "FAIL", "build:"]
    assert render_grid(matrix) in render_summary(matrix)
    single = [run for run in matrix if run.kernel == K61]
    assert render_grid(single).splitlines()[0] not in render_summary(single)


def test_every_format_names_the_kernel_of_each_result():
    matrix = _matrix()
    data = to_json(matrix)
    assert [(r["module"], r["kernel"]) for r in data["runs"]] == [(r.module, r.kernel) for r in matrix]
    assert data["summary"]["kernels"] == sorted({K61, K612})
    suites = ElementTree.fromstring(render_junit(matrix))
    classnames = [case.get("classname") for case in suites.iter("testcase")]
    assert f"kmh.{K61}.broken" in classnames and f"kmh.{K612}.broken" in classnames
    # Property names are qualified by the suite's classname (unique across suites for xunitparser).
    kernels = [p.get("value") for p in suites.iter("property") if p.get("name", "").endswith(".kernel")]
    assert kernels == [r.kernel for r in matrix]
    ktap = render_ktap(matrix)
    assert f"ok 1 hello_kmh on {K61}" in ktap and f"not ok 4 broken on {K612}" in ktap

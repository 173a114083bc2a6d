"""kmh's JUnit XML read by what CI systems really use: the Jenkins xunit plugin's schema
(``junit-10.xsd``, validated with lxml), junitparser, xunitparser and junit2html.

The same checks run on the report fixtures (every verdict, hostile console text) and on the
report of a real ``kmh run`` in VMs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import xunitparser
from junit2htmlreport.parser import Junit
from junitparser import Error, Failure, JUnitXml, Skipped
from lxml import etree

from harness.paths import REPO_ROOT
from harness.report import write_junit

SCHEMA = etree.XMLSchema(etree.parse(str(Path(__file__).parent / "data" / "junit-10.xsd")))


@dataclass(frozen=True)
class Counts:
    tests: int
    failures: int
    errors: int
    skipped: int


def validate(path: Path) -> None:
    document = etree.parse(str(path))
    assert SCHEMA.validate(document), "\n".join(str(error) for error in SCHEMA.error_log)


def read_with_junitparser(path: Path) -> Counts:
    cases = [case for suite in JUnitXml.fromfile(str(path)) for case in suite]
    kinds = [type(result) for case in cases for result in case.result]
    return Counts(len(cases), kinds.count(Failure), kinds.count(Error), kinds.count(Skipped))


def read_with_xunitparser(path: Path) -> Counts:
    # xunitparser asserts that the root's totals match its own count (and that no property
    # name repeats): an AssertionError here is a report it rejects.
    with open(path, "rb") as handle:
        _suite, result = xunitparser.parse(handle)
    return Counts(result.testsRun, len(result.failures), len(result.errors), len(result.skipped))


def read_with_junit2html(path: Path, tmp_path: Path) -> str:
    report = Junit(filename=str(path))
    assert len(report.suites) == len(etree.parse(str(path)).getroot().findall("testsuite"))
    out = tmp_path / "report.html"
    command = [str(Path(sys.executable).parent / "junit2html"), str(path), str(out)]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    return out.read_text(encoding="utf-8")


def check_all_consumers(path: Path, tmp_path: Path) -> Counts:
    validate(path)
    counts = read_with_junitparser(path)
    assert read_with_xunitparser(path) == counts
    html = read_with_junit2html(path, tmp_path)
    for suite in etree.parse(str(path)).getroot().findall("testsuite"):
        assert suite.get("name").split(" ")[0] in html
    return counts


def test_every_verdict_is_accepted_by_every_consumer(runs, parsed_crash_run, tmp_path):
    path = write_junit([*runs, parsed_crash_run], tmp_path / "junit.xml", elapsed=9.5)
    counts = check_all_consumers(path, tmp_path)
    # build, check, cleanup, reload fail; two crashes and a timeout; 7 + 6 + 5 + 5 + 2 skipped.
    steps = sum(len(run.steps) for run in [*runs, parsed_crash_run])
    assert counts == Counts(steps, 4, 3, 25)


def test_the_same_module_twice_keeps_property_names_unique(runs, tmp_path):
    path = write_junit([runs[0], runs[0]], tmp_path / "twice.xml")
    check_all_consumers(path, tmp_path)


def test_hostile_text_is_still_valid(by_module, tmp_path):
    run = by_module["leaky_chrdev"]
    hostile = "nul\x00 esc\x1b[31m bell\x07 surrogate\udcfe ]]> <&>\"'"
    run.module = f"leaky{hostile[:4]}"
    run.steps[-2].message = hostile
    run.steps[-2].evidence = hostile
    check_all_consumers(write_junit([run], tmp_path / "hostile.xml"), tmp_path)


def test_top_level_time_is_the_wall_clock(runs, tmp_path):
    root = etree.parse(str(write_junit(runs, tmp_path / "a.xml", elapsed=4.7))).getroot()
    assert root.get("time") == "4.700"
    assert sum(float(suite.get("time")) for suite in root.findall("testsuite")) == pytest.approx(41.84)


@pytest.mark.vm
def test_a_real_run_is_accepted_by_every_consumer(tmp_path, kernel_61, kernel_612):
    """hello on 6.1 and 6.12 in two parallel VMs: its JUnit passes the schema and the three
    readers, names each kernel target, and its total is the wall clock, as in the JSON."""
    junit, report = tmp_path / "run.xml", tmp_path / "run.json"
    command = [sys.executable, "-m", "harness.cli", "run", "modules/hello.toml", "-j", "2"]
    command += ["--kernel", "bookworm", "--kernel", "bookworm-backports", "--junit", str(junit)]
    started = time.monotonic()
    result = subprocess.run(
        [*command, "--json", str(report)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=900
    )
    outside = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    counts = check_all_consumers(junit, tmp_path)
    assert counts.failures == counts.errors == 0 and counts.tests > 2 * 6
    root = etree.parse(str(junit)).getroot()
    names = sorted(suite.get("name") for suite in root.findall("testsuite"))
    assert names == [
        f"hello_kmh on {kernel_61.release} (bookworm)",
        f"hello_kmh on {kernel_612.release} (bookworm-backports)",
    ]
    summary = json.loads(report.read_text())["summary"]
    assert float(root.get("time")) == pytest.approx(summary["wall_clock"], abs=0.001)
    assert summary["duration"] == summary["wall_clock"] < outside
    assert summary["targets"] == ["bookworm", "bookworm-backports"]
    module_time = sum(run["duration"] for run in json.loads(report.read_text())["runs"])
    assert summary["module_time"] == pytest.approx(module_time, abs=0.01)

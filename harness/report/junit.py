"""JUnit XML for CI test reporters (Jenkins, GitLab, GitHub actions).

Layout: one ``<testsuite>`` per module × kernel whose ``<testcase>``s are its steps, with
``classname="kmh.<kernel>.<module>"``. Reporters group by suite and split the classname at its
last dot, so a failed run shows up as "hello_kmh › load" under its kernel, and a crash points at
the exact step that caused it rather than at the module as a whole.

The document is valid against the Jenkins xunit plugin's ``junit-10.xsd`` (the strictest schema
CI servers apply; ``testsuites`` carries no ``skipped``) and is read by junitparser, xunitparser
and junit2html (tests/report checks all four). xunitparser merges every suite's properties into
one table, so property names are qualified by the suite's classname and never repeat. The
top-level ``time`` is the run's wall clock when the caller measured it: with ``-j N`` the suites
overlap and their sum overstates it.

Mapping: a failed expectation is a ``<failure>`` (the module is wrong); a crash or timeout is an
``<error>`` (the kernel or VM broke underneath the test); a skipped step is ``<skipped/>``.
The tree is built with ElementTree, never by string pasting, and all text goes through
:func:`~harness.report.text.printable` because console logs contain characters XML 1.0 forbids
and a report that a CI parser rejects hides every result in it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from harness.lifecycle.result import ModuleRun, StepResult
from harness.report.tally import run_name
from harness.report.text import crash_text, one_line, printable


def _seconds(value: float) -> str:
    return f"{value:.3f}"


def _counts(steps: Sequence[StepResult]) -> dict[str, int]:
    statuses = [step.status for step in steps]
    return {
        "tests": len(statuses),
        "failures": statuses.count("fail"),
        "errors": sum(statuses.count(status) for status in ("crash", "timeout", "error", "interrupted")),
        "skipped": statuses.count("skip"),
    }


def build_tree(
    runs: Sequence[ModuleRun], *, name: str = "kmh", elapsed: float | None = None
) -> ET.ElementTree:
    """The JUnit document for ``runs`` (exposed for callers that want to embed or merge it).
    ``elapsed`` is the run's wall-clock time; without it the top-level time is the suites' sum."""
    root = ET.Element("testsuites", name=name)
    totals = {"tests": 0, "failures": 0, "errors": 0}
    seen: dict[str, int] = {}
    for run in runs:
        classname = printable(f"kmh.{run.kernel}.{run.module}", keep="")
        seen[classname] = seen.get(classname, 0) + 1
        if seen[classname] > 1:  # the same module twice on one kernel: keep names unique
            classname += f"#{seen[classname]}"
        suite = _suite(run, classname)
        root.append(suite)
        for key in totals:
            totals[key] += int(suite.get(key, "0"))
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", _seconds(sum(run.duration for run in runs) if elapsed is None else elapsed))
    return ET.ElementTree(root)


def suite_name(run: ModuleRun) -> str:
    """``hello_kmh on 6.1.0-26-amd64 (bookworm)``: the release and, when known, the target."""
    return f"{run_name(run)} ({run.target})" if run.target else run_name(run)


def _suite(run: ModuleRun, classname: str) -> ET.Element:
    suite = ET.Element("testsuite", name=printable(suite_name(run), keep=""))
    for key, value in _counts(run.steps).items():
        suite.set(key, str(value))
    suite.set("time", _seconds(run.duration))
    properties = ET.SubElement(suite, "properties")
    facts = {
        "module": run.module,
        "kernel": run.kernel,
        "target": run.target,
        "source": run.source,
        "verdict": run.verdict,
    }
    for key, fact in facts.items():
        ET.SubElement(properties, "property", name=f"{classname}.{key}", value=printable(fact, keep=""))
    for step in run.steps:
        suite.append(_case(step, classname))
    return suite


def _case(step: StepResult, classname: str) -> ET.Element:
    case = ET.Element("testcase", classname=classname, name=printable(step.name, keep=""))
    case.set("time", _seconds(step.duration))
    message = one_line(step.message) or step.status
    if step.status == "skip":
        ET.SubElement(case, "skipped", message=message)
    elif step.status == "fail":
        failure = ET.SubElement(case, "failure", message=message, type="fail")
        failure.text = _body(step)
    elif step.status in ("crash", "timeout", "error", "interrupted"):
        kind = step.crash.kind if step.crash is not None else step.status
        error = ET.SubElement(case, "error", message=message, type=printable(kind, keep=""))
        error.text = _body(step)
    if step.crash is not None and step.crash.lines:
        out = ET.SubElement(case, "system-out")
        out.text = printable("\n".join(step.crash.lines))
    elif step.passed and step.evidence.strip():
        # What a passing step observed (command output, dmesg) is still worth keeping.
        out = ET.SubElement(case, "system-out")
        out.text = printable(step.evidence)
    return case


def _body(step: StepResult) -> str:
    parts = [step.message.strip()]
    if step.crash is not None:
        parts.append(crash_text(step.crash))
    parts.append(step.evidence.rstrip())
    return printable("\n\n".join(part for part in parts if part))


def render_junit(runs: Sequence[ModuleRun], *, elapsed: float | None = None) -> str:
    """The JUnit document as a string (with its XML declaration)."""
    tree = build_tree(runs, elapsed=elapsed)
    ET.indent(tree)
    root = tree.getroot()
    assert root is not None  # build_tree always makes one
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(runs: Sequence[ModuleRun], path: str | Path, *, elapsed: float | None = None) -> Path:
    """Write the JUnit XML report for ``runs`` to ``path`` (UTF-8); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tree = build_tree(runs, elapsed=elapsed)
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)
    return path

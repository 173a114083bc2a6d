"""KTAP version 1 output (Documentation/dev-tools/ktap.rst), the kernel's own test format.

The top level has one test per module × kernel; each is a nested test, indented two spaces,
whose subtests are its steps. A failed step is ``not ok``; a crash carries the ``ERROR``
directive and a timeout ``TIMEOUT`` (both ``not ok``, as the spec asks); a skipped step is
``ok ... # SKIP``. Evidence goes into diagnostic lines (``# ...``) directly before the result
line they explain, which is where kunit.py and other KTAP parsers look for them.

Every line must stay one line and descriptions may not contain ``#``, so all text is passed
through :func:`~harness.report.text.printable` and split before it is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from harness.lifecycle.result import ModuleRun, StepResult
from harness.report.tally import format_duration, run_name
from harness.report.text import crash_text, one_line, printable

VERSION_LINE = "KTAP version 1"
_INDENT = "  "


def _description(text: str) -> str:
    # "#" starts the directive part of a result line, so it cannot appear in a description; it
    # is kept out of reasons too, since parsers such as kunit.py look for " # SKIP" anywhere.
    return one_line(text).replace("#", "_")


def _diagnostics(text: str) -> list[str]:
    lines = printable(text, keep="\n\t").split("\n")
    return [f"# {line}".rstrip() for line in lines if line.strip()]


def _step_lines(number: int, step: StepResult) -> list[str]:
    lines: list[str] = []
    if not step.passed or step.evidence.strip():
        evidence = step.evidence
        if step.crash is not None:
            lines += _diagnostics(crash_text(step.crash))
            if not evidence.strip() and not step.crash.call_trace:
                # No trace to show (a hang, a timeout): the console tail is the only clue.
                evidence = "\n".join(step.crash.lines)
        lines += _diagnostics(evidence)
    name = _description(step.name)
    reason = _description(step.message)
    if step.status == "pass":
        result = f"ok {number} {name}"
    elif step.status == "skip":
        result = f"ok {number} {name} # SKIP{' ' + reason if reason else ''}"
    elif step.status == "fail":
        result = f"not ok {number} {name}{' # ' + reason if reason else ''}"
    else:
        directive = _DIRECTIVES.get(step.status, "ERROR")
        result = f"not ok {number} {name} # {directive}{' ' + reason if reason else ''}"
    lines.append(result)
    return lines


#: KTAP directives of the statuses that are neither ok nor a plain failure.
_DIRECTIVES = {"timeout": "TIMEOUT", "interrupted": "SKIP interrupted"}


def _run_lines(number: int, run: ModuleRun) -> list[str]:
    nested = [VERSION_LINE, f"# Subtest: {_description(run_name(run))}", f"1..{len(run.steps)}"]
    for index, step in enumerate(run.steps, start=1):
        nested += _step_lines(index, step)
    lines = [f"{_INDENT}{line}" for line in nested]
    verdict = run.verdict
    lines.append(f"# {_description(run_name(run))}: {verdict} in {format_duration(run.duration)}")
    name = _description(run_name(run))
    if verdict == "pass":
        lines.append(f"ok {number} {name}")
    elif verdict == "skipped":
        lines.append(f"ok {number} {name} # SKIP {_description(run.skipped)}")
    elif verdict == "fail":
        lines.append(f"not ok {number} {name}")
    else:
        directive = _DIRECTIVES.get(verdict, "ERROR")
        failure = run.failure
        reason = _description(f"{failure.name}: {failure.message}") if failure is not None else ""
        lines.append(f"not ok {number} {name} # {directive}{' ' + reason if reason else ''}")
    return lines


def render_ktap(runs: Sequence[ModuleRun]) -> str:
    """The KTAP document for ``runs``: a plan over module × kernel runs, each a nested test."""
    lines = [VERSION_LINE, f"1..{len(runs)}"]
    for number, run in enumerate(runs, start=1):
        lines += _run_lines(number, run)
    return "\n".join(lines) + "\n"


def write_ktap(runs: Sequence[ModuleRun], path: str | Path) -> Path:
    """Write the KTAP report for ``runs`` to ``path`` (UTF-8); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_ktap(runs), encoding="utf-8")
    return path

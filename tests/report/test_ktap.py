"""KTAP: read back with a strict parser of the spec (Documentation/dev-tools/ktap.rst).

The parser below accepts only what KTAP version 1 defines: version lines, plans, result lines
and ``#`` diagnostics, with nested tests indented by two spaces. Any other line, a plan that
does not match the results, a number out of sequence or a parent that passes over a failed
subtest is an error, so the writer cannot drift from the spec unnoticed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest

from harness.report import render_ktap, write_ktap

RESULT = re.compile(r"^(?P<ok>ok|not ok) (?P<number>[1-9][0-9]*)(?: (?P<name>[^#]*?))?(?: # (?P<tail>.*))?$")
DIRECTIVES = ("SKIP", "TODO", "XFAIL", "TIMEOUT", "ERROR")


@dataclass
class KtapTest:
    name: str
    ok: bool
    directive: str = ""
    reason: str = ""
    diagnostics: list[str] = field(default_factory=list)
    subtests: list[KtapTest] = field(default_factory=list)


class KtapError(AssertionError):
    pass


def parse_ktap(text: str) -> list[KtapTest]:
    assert text.endswith("\n") and "\r" not in text
    lines = text.split("\n")[:-1]
    tests, end = _parse_block(lines, 0, 0)
    if end != len(lines):
        raise KtapError(f"trailing line {end + 1}: {lines[end]!r}")
    return tests


def _parse_block(lines: list[str], start: int, depth: int) -> tuple[list[KtapTest], int]:
    indent = "  " * depth
    if start >= len(lines) or lines[start] != f"{indent}KTAP version 1":
        raise KtapError(f"line {start + 1}: expected a version line at depth {depth}")
    index = start + 1
    if index < len(lines) and lines[index].startswith(f"{indent}# Subtest: "):
        index += 1
    plan = re.fullmatch(rf"{indent}1\.\.(\d+)", lines[index]) if index < len(lines) else None
    if not plan:
        raise KtapError(f"line {index + 1}: expected a plan")
    planned = int(plan.group(1))
    index += 1
    tests: list[KtapTest] = []
    diagnostics: list[str] = []
    subtests: list[KtapTest] = []
    while index < len(lines):
        line = lines[index]
        if line.startswith(f"{indent}  KTAP version 1"):
            subtests, index = _parse_block(lines, index, depth + 1)
            continue
        if not line.startswith(indent) or (line[len(indent) :].startswith(" ")):
            break  # the parent's line
        body = line[len(indent) :]
        if body.startswith("#"):
            if body != "#" and not body.startswith("# "):
                raise KtapError(f"line {index + 1}: diagnostic without a space: {line!r}")
            diagnostics.append(body[2:])
        else:
            match = RESULT.fullmatch(body)
            if not match:
                raise KtapError(f"line {index + 1}: not a KTAP line: {line!r}")
            if int(match.group("number")) != len(tests) + 1:
                raise KtapError(f"line {index + 1}: test number out of sequence")
            tail = match.group("tail") or ""
            directive, _, reason = tail.partition(" ")
            if directive not in DIRECTIVES:
                directive, reason = "", tail
            test = KtapTest(
                name=match.group("name") or "",
                ok=match.group("ok") == "ok",
                directive=directive,
                reason=reason,
                diagnostics=diagnostics,
                subtests=subtests,
            )
            if test.ok and any(not sub.ok for sub in subtests):
                raise KtapError(f"line {index + 1}: parent passes over a failed subtest")
            if directive in ("TIMEOUT", "ERROR") and test.ok:
                raise KtapError(f"line {index + 1}: {directive} must be 'not ok'")
            tests.append(test)
            diagnostics, subtests = [], []
        index += 1
    if diagnostics and depth > 0:
        raise KtapError("diagnostics after the last result of a nested test")
    if len(tests) != planned:
        raise KtapError(f"plan says {planned} tests, found {len(tests)}")
    return tests, index


def test_the_parser_rejects_what_the_spec_forbids():
    with pytest.raises(KtapError, match="plan says 2"):
        parse_ktap("KTAP version 1\n1..2\nok 1 a\n")
    with pytest.raises(KtapError, match="out of sequence"):
        parse_ktap("KTAP version 1\n1..2\nok 1 a\nok 3 b\n")
    with pytest.raises(KtapError, match="failed subtest"):
        parse_ktap("KTAP version 1\n1..1\n  KTAP version 1\n  1..1\n  not ok 1 x\nok 1 a\n")
    with pytest.raises(KtapError, match="not a KTAP line"):
        parse_ktap("KTAP version 1\n1..1\nok 1 a\nsomething\n")


def test_top_level_plan_covers_every_module_and_kernel(runs):
    tests = parse_ktap(render_ktap(runs))
    assert [test.name for test in tests] == [f"{run.module} on {run.kernel}" for run in runs]
    assert [test.ok for test in tests] == [run.verdict == "pass" for run in runs]


def test_each_run_is_a_nested_test_of_its_steps(runs):
    for test, run in zip(parse_ktap(render_ktap(runs)), runs, strict=True):
        assert [sub.name for sub in test.subtests] == [step.name for step in run.steps]
        for sub, step in zip(test.subtests, run.steps, strict=True):
            assert sub.ok == (step.status in ("pass", "skip"))
            expected = {"skip": "SKIP", "timeout": "TIMEOUT", "crash": "ERROR"}.get(step.status, "")
            assert sub.directive == expected


def test_directives_and_reasons(by_module):
    (crash,) = parse_ktap(render_ktap([by_module["null_deref"]]))
    assert (crash.directive, crash.reason) == ("ERROR", "load: insmod null_deref.ko crashed the kernel")
    load = crash.subtests[3]
    assert not load.ok and load.directive == "ERROR"
    assert load.diagnostics[0].startswith("oops in null_deref_init [null_deref]: BUG: kernel NULL")
    assert "  null_deref_init+0x11/0x1000 [null_deref]" in load.diagnostics
    assert [s.reason for s in crash.subtests[4:]] == ["the VM crashed"] * 5

    (timeout,) = parse_ktap(render_ktap([by_module["busy_loop"]]))
    assert timeout.directive == "TIMEOUT" and not timeout.ok
    assert timeout.subtests[3].reason == "insmod did not return within 30 s"
    assert any("soft lockup" in line for line in timeout.subtests[3].diagnostics)


def test_evidence_becomes_diagnostic_lines_before_the_failed_step(by_module):
    (build,) = parse_ktap(render_ktap([by_module["broken"]]))
    step = build.subtests[1]
    assert (step.name, step.ok, step.reason) == ("build", False, "1 error in broken.c")
    assert step.diagnostics[1] == (
        "modules/broken/broken.c:8:19: error: ‘undeclared_thing’ undeclared (first use in this function)"
    )
    assert build.subtests[0].diagnostics == []  # nothing leaks onto the passing step


def test_hostile_text_cannot_break_the_line_structure(by_module):
    run = by_module["leaky_chrdev"]
    run.module = "leaky#1\nnot ok 1 fake"
    run.steps[-2].message = "left\nbehind # SKIP not really\r\x00"
    run.steps[-2].evidence = "line one\r\nKTAP version 1\n1..5\nok 1 injected\x1b[2J\x07"
    text = render_ktap([run])
    (test,) = parse_ktap(text)
    assert test.name == "leaky_1 not ok 1 fake on 6.1.0-26-amd64"
    cleanup = test.subtests[7]
    assert not cleanup.ok and cleanup.directive == ""
    assert cleanup.reason == "left behind _ SKIP not really\\x0d\\x00"
    assert cleanup.diagnostics == ["line one", "KTAP version 1", "1..5", "ok 1 injected\\x07"]
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", text)


def test_empty_and_written(tmp_path, runs):
    assert parse_ktap(render_ktap([])) == []
    path = write_ktap(runs, tmp_path / "out" / "run.ktap")
    assert path.read_text(encoding="utf-8") == render_ktap(runs)


def test_a_crash_from_the_console_parser_parses_back(parsed_crash_run):
    (test,) = parse_ktap(render_ktap([parsed_crash_run]))
    assert (test.ok, test.directive) == (False, "ERROR")
    unload = test.subtests[6]
    assert (unload.name, unload.directive, unload.reason) == (
        "unload",
        "ERROR",
        "rmmod bug_exit crashed the kernel",
    )
    assert "[    3.100000] kmh-agent: running rmmod bug_exit" in unload.diagnostics
    assert "[  OK  ] Reached target\\x00 multi-user" in unload.diagnostics
    assert [sub.directive for sub in test.subtests[7:]] == ["SKIP", "SKIP"]

"""KUnit results from the kernel log: the KTAP a suite prints when its module is loaded.

A module built from the ``kunit`` template (or any module with ``kunit_test_suite``) runs its
suites when it is loaded (KUnit's module notifier, with CONFIG_KUNIT). KUnit prints KTAP to the
kernel log, one indented block per suite::

        # Subtest: kmh_example
        1..3
        ok 1 kmh_add_test
        # kmh_failing_test: EXPECTATION FAILED at kmh.c:40
        Expected 4 == kmh_add(2, 3), but
        not ok 3 kmh_failing_test
    not ok 1 kmh_example

Each test case becomes a :class:`CaseResult` carrying the diagnostic lines printed before its
result line, so a failed expectation's file, line and values are its evidence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from harness.elf.image import ElfImage
from harness.errors import HarnessError
from harness.vm.console import strip_prefix

#: Where ``kunit_test_suites()`` puts a module's suites; the module loader runs what it finds
#: there (6.0+), so a module without this section runs no KUnit test when it loads.
SUITES_SECTION = ".kunit_test_suites"

_SUBTEST = re.compile(r"^# Subtest: (?P<name>\S+)")
_RESULT = re.compile(
    r"^(?P<not>not )?ok (?P<num>\d+) (?P<name>[^#]*?)\s*(?:#\s*(?P<directive>\w+)\s*(?P<reason>.*))?$"
)


@dataclass(frozen=True)
class CaseResult:
    """One KUnit test case."""

    suite: str
    case: str
    #: "pass", "fail" or "skip"
    status: str
    #: Diagnostic lines KUnit printed for the case (failed expectations, the skip reason).
    diagnostics: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.suite}.{self.case}"


def parse_ktap(lines: list[str]) -> list[CaseResult]:
    """The test cases of every suite in LINES (dmesg lines, with or without timestamps).

    Nesting is followed by name rather than indentation (which changed between kernel
    versions): a result line naming an open subtest closes it. A subtest opened inside a suite
    is a parameterised case; its parameters' results are folded into the case's own line.
    """
    results: list[CaseResult] = []
    stack: list[str] = []  # open subtests: the suite, then a parameterised case
    pending: list[str] = []  # diagnostics since the last result line
    for raw in lines:
        text = strip_prefix(raw).strip()
        subtest = _SUBTEST.match(text)
        if subtest:
            stack.append(subtest.group("name"))
            if len(stack) == 1:
                pending = []
            continue
        if not stack:
            continue
        result = _RESULT.match(text)
        if result is None:
            if text and not re.match(r"^(KTAP version|TAP version|1\.\.\d+|# \S+: pass:\d+|# Totals:)", text):
                pending.append(text)
            continue
        name = result.group("name").strip()
        if name in stack:
            closed = len(stack) - stack.index(name)
            del stack[stack.index(name) :]
            if closed and not stack:
                pending = []
                continue  # the suite's own result
        elif len(stack) > 1:
            continue  # one parameter of a parameterised case
        status = "fail" if result.group("not") else "pass"
        if (result.group("directive") or "").upper() == "SKIP":
            status = "skip"
            pending.append(f"skipped: {result.group('reason')}".strip())
        results.append(CaseResult(stack[0], name, status, tuple(pending)))
        pending = []
    return results


def summary(results: list[CaseResult]) -> str:
    """``KUnit: 2 passed, 1 failed, 0 skipped``."""
    counts = {status: sum(r.status == status for r in results) for status in ("pass", "fail", "skip")}
    return f"KUnit: {counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped"


def runs_kunit_suites(path: Path) -> bool:
    """Whether loading the module at PATH runs KUnit suites: read from the file on the host, so
    modules without suites (nearly all) cost no extra read of the guest's kernel log."""
    try:
        return ElfImage.open(path).has(SUITES_SECTION)
    except (HarnessError, OSError):
        return False  # the load step itself reports an unreadable module

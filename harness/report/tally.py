"""Counting verdicts: the one place that decides what "2 failed, 1 crashed" means.

The terminal summary, the progress printer and the JSON summary block all state the same
totals, so they are computed here once rather than re-derived (and disagreeing) per format.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from harness.lifecycle.result import ModuleRun

#: How each verdict is counted in the final line, in the order the line lists them.
VERDICT_WORDS = (
    ("pass", "passed"),
    ("fail", "failed"),
    ("crash", "crashed"),
    ("timeout", "timed out"),
    ("error", "errored"),
    ("interrupted", "interrupted"),
    ("skipped", "skipped"),
)


@dataclass(frozen=True)
class Tally:
    """Verdict counts over a set of runs, and the time they took."""

    passed: int = 0
    failed: int = 0
    crashed: int = 0
    timed_out: int = 0
    #: No verdict could be given (the harness's own trouble, e.g. a guest lost twice).
    errors: int = 0
    #: Stopped by SIGINT/SIGTERM before finishing.
    interrupted: int = 0
    #: Not run: the module excludes the kernel (not a failure).
    skipped: int = 0
    #: Seconds: the wall-clock time of the whole run when known, else the sum of the runs.
    duration: float = 0.0

    @property
    def total(self) -> int:
        return (
            self.passed
            + self.failed
            + self.crashed
            + self.timed_out
            + self.errors
            + self.interrupted
            + self.skipped
        )

    @property
    def ok(self) -> bool:
        """True when every run passed or was skipped (and there was at least one)."""
        return self.total > 0 and self.passed + self.skipped == self.total

    def count(self, verdict: str) -> int:
        return {
            "pass": self.passed,
            "fail": self.failed,
            "crash": self.crashed,
            "timeout": self.timed_out,
            "error": self.errors,
            "interrupted": self.interrupted,
            "skipped": self.skipped,
        }[verdict]

    def line(self) -> str:
        """``12 passed, 2 failed, 1 crashed, 1 timed out in 48.2s`` (zero counts left out)."""
        if not self.total:
            return f"no modules ran in {format_duration(self.duration)}"
        parts = [f"{self.count(verdict)} {word}" for verdict, word in VERDICT_WORDS if self.count(verdict)]
        return f"{', '.join(parts)} in {format_duration(self.duration)}"


def tally(runs: Iterable[ModuleRun], *, elapsed: float | None = None) -> Tally:
    """Count verdicts. ``elapsed`` is the wall-clock time of the whole run: with ``-j N`` the
    runs overlap, so their summed durations would overstate it."""
    runs = list(runs)
    verdicts = [run.verdict for run in runs]
    return Tally(
        passed=verdicts.count("pass"),
        failed=verdicts.count("fail"),
        crashed=verdicts.count("crash"),
        timed_out=verdicts.count("timeout"),
        errors=verdicts.count("error"),
        interrupted=verdicts.count("interrupted"),
        skipped=verdicts.count("skipped"),
        duration=sum(run.duration for run in runs) if elapsed is None else elapsed,
    )


def format_duration(seconds: float) -> str:
    """``0.4s``, ``48.2s``, ``3m07s``: short enough for a table column."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes}m{rest:02d}s"


def run_name(run: ModuleRun) -> str:
    """How every report names one module × kernel run."""
    return f"{run.module} on {run.kernel}"

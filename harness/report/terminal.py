"""What a person watching ``kmh run`` sees: progress while it runs, then a summary with evidence.

Two audiences share one stream. On a terminal a live status line shows which step is running;
in a CI log (not a TTY) that line would become thousands of carriage-return fragments, so there
only one plain line per finished module × kernel is written. The summary names every non-pass
run with the evidence behind its verdict, so nobody has to open the JUnit or JSON file to learn
why a module failed.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Sequence
from typing import TextIO

from harness.lifecycle.result import ModuleRun, StepResult
from harness.report.grid import kernel_count, make_grid
from harness.report.tally import format_duration, run_name, tally
from harness.report.text import one_line, printable
from harness.vm.crash import Crash

_COLOURS = {
    "pass": "32",
    "fail": "31",
    "crash": "1;31",
    "timeout": "33",
    "skip": "2",
    "error": "35",
    "interrupted": "2",
    "skipped": "2",
}
_CLEAR_LINE = "\r\x1b[K"


def use_color(stream: TextIO) -> bool:
    """Colour only for a person at a terminal; honours the ``NO_COLOR`` convention and dumb
    terminals so logs and pipes get plain text."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return _isatty(stream)


def _isatty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def paint(text: str, status: str, color: bool) -> str:
    """``text`` in the colour of ``status`` (pass/fail/crash/timeout/skip) when ``color``."""
    code = _COLOURS.get(status)
    return f"\x1b[{code}m{text}\x1b[0m" if color and code else text


def verdict_word(status: str) -> str:
    """The upper-case word a report shows for a verdict or step status."""
    return {"timeout": "TIMEOUT", "crash": "CRASH"}.get(status, status.upper())


def failure_note(run: ModuleRun, *, limit: int = 80) -> str:
    """``build: 2 errors``: the first failed step and its message, for one-line places."""
    failure = run.failure
    if failure is None:
        return one_line(f"skipped: {run.skipped}", limit=limit) if run.skipped else ""
    return one_line(f"{failure.name}: {failure.message or failure.status}", limit=limit)


def _cached_note(run: ModuleRun) -> str:
    """``build cached`` when the .ko came from the build cache (make did not run), so a fast
    result is never mistaken for a fresh build."""
    cached = any(step.name == "build" and step.passed and "cached" in step.message for step in run.steps)
    return "build cached" if cached else ""


class ProgressPrinter:
    """Reports progress as the runner goes; the runner calls :meth:`step` after every step and
    :meth:`finished` after every module × kernel. Safe to call from several worker threads."""

    def __init__(
        self,
        stream: TextIO,
        total: int | None = None,
        *,
        color: bool | None = None,
        live: bool | None = None,
        module_width: int = 18,
        kernel_width: int = 20,
    ) -> None:
        self.stream = stream
        self.total = total
        self.color = use_color(stream) if color is None else color
        #: The rewritten status line: only on a terminal, where ``\r`` means something.
        self.live = _isatty(stream) if live is None else live
        #: Column widths; wide enough for Debian releases such as ``6.12.48+deb13-amd64``.
        self.module_width = module_width
        self.kernel_width = kernel_width
        self.done = 0
        self._status_shown = False
        self._lock = threading.Lock()

    def step(self, run: ModuleRun, step: StepResult) -> None:
        """A step of ``run`` finished: refresh the live status line (terminals only)."""
        if not self.live:
            return
        counter = f"{self.done}/{self.total}" if self.total else str(self.done)
        status = f"[{counter} done] {run_name(run)}: {step.name} {step.status}"
        width = max(shutil.get_terminal_size((80, 24)).columns - 1, 20)
        with self._lock:
            self.stream.write(_CLEAR_LINE + one_line(status, limit=width))
            self.stream.flush()
            self._status_shown = True

    def finished(self, run: ModuleRun) -> None:
        """``run`` is complete: write its one permanent line."""
        with self._lock:
            self.done += 1
            self._clear()
            self.stream.write(self.line(run, self.done) + "\n")
            self.stream.flush()

    def line(self, run: ModuleRun, index: int) -> str:
        """``[ 3/20] hello_kmh  6.1.0-56-amd64  PASS  1.8s`` (plus the reason when not a pass)."""
        if self.total:
            digits = len(str(self.total))
            counter = f"[{index:>{digits}}/{self.total}]"
        else:
            counter = f"[{index}]"
        verdict = run.verdict
        word = paint(f"{verdict_word(verdict):<7}", verdict, self.color)
        text = (
            f"{counter} {run.module:<{self.module_width}} {run.kernel:<{self.kernel_width}} "
            f"{word} {format_duration(run.duration):>6}"
        )
        note = failure_note(run)
        return f"{text}  {note}" if note else text.rstrip()

    def close(self) -> None:
        """Remove the live status line so whatever is printed next starts on a clean line."""
        with self._lock:
            self._clear()
            self.stream.flush()

    def _clear(self) -> None:
        if self._status_shown:
            self.stream.write(_CLEAR_LINE)
            self._status_shown = False

    def __enter__(self) -> ProgressPrinter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def render_summary(
    runs: Sequence[ModuleRun],
    *,
    color: bool = False,
    elapsed: float | None = None,
    max_evidence_lines: int = 40,
    max_frames: int = 8,
) -> str:
    """The end-of-run report: a module × kernel × verdict × time table, the evidence of every
    run that did not pass, and the count line. ``elapsed`` is the run's wall-clock time (with
    parallel VMs it is less than the summed durations)."""
    parts = [_table(runs, color)]
    if kernel_count(runs) > 1:
        parts.append(render_grid(runs, color=color))
    for run in runs:
        if run.verdict != "pass" or any(_shown_when_passed(step) for step in run.steps):
            parts.append(_evidence(run, color, max_evidence_lines, max_frames))
    counts = tally(runs, elapsed=elapsed)
    parts.append(paint(counts.line(), "pass" if counts.ok else "fail", color))
    return "\n\n".join(part for part in parts if part) + "\n"


def render_grid(runs: Sequence[ModuleRun], *, color: bool = False, reason_width: int = 24) -> str:
    """Module × kernel: each cell the verdict and, when it did not pass, a short reason."""
    grid = make_grid(runs)
    header = ["MODULE", *grid.kernels]
    body = []
    for row in grid.rows:
        cells = [grid.row_label(row)]
        for kernel in grid.kernels:
            run = grid.cell(row, kernel)
            if run is None:
                cells.append("-")
                continue
            reason = failure_note(run, limit=reason_width)
            cells.append(verdict_word(run.verdict) + (f" {reason}" if reason else ""))
        body.append(cells)
    widths = [max(len(line[i]) for line in (header, *body)) for i in range(len(header))]
    last = len(header) - 1

    def pad(cell: str, column: int) -> str:
        return cell if column == last else cell.ljust(widths[column])

    lines = ["  ".join(pad(cell, column) for column, cell in enumerate(header)).rstrip()]
    for row, cells in zip(grid.rows, body, strict=True):
        shown = [pad(cells[0], 0)]
        for column, (kernel, cell) in enumerate(zip(grid.kernels, cells[1:], strict=True), 1):
            run = grid.cell(row, kernel)
            shown.append(paint(pad(cell, column), run.verdict, color) if run else pad(cell, column))
        lines.append("  ".join(shown).rstrip())
    return "\n".join(lines)


def _table(runs: Sequence[ModuleRun], color: bool) -> str:
    if not runs:
        return ""
    header = ("MODULE", "KERNEL", "VERDICT", "TIME", "DETAIL")
    rows = [
        (
            run.module,
            run.kernel,
            verdict_word(run.verdict),
            format_duration(run.duration),
            failure_note(run) or _cached_note(run),
        )
        for run in runs
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(4)]

    def fmt(row: tuple[str, ...], verdict: str | None) -> str:
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
        cells.append(paint(row[2].ljust(widths[2]), verdict, color) if verdict else row[2].ljust(widths[2]))
        cells.append(row[3].rjust(widths[3]))
        cells.append(row[4])
        return "  ".join(cells).rstrip()

    lines = [fmt(header, None)]
    lines += [fmt(row, run.verdict) for row, run in zip(rows, runs, strict=True)]
    return "\n".join(lines)


def _evidence(run: ModuleRun, color: bool, max_lines: int, max_frames: int) -> str:
    title = f"{verdict_word(run.verdict)} {run_name(run)}"
    lines = [paint(title, run.verdict, color) + (f" ({run.source})" if run.source else "")]
    for step in run.steps:
        if step.passed and not _shown_when_passed(step):
            continue
        message = one_line(step.message) or step.status
        lines.append(f"  {step.name}: {paint(step.status, step.status, color)}: {message}")
        evidence = step.evidence
        if step.crash is not None:
            lines += _crash_lines(step.crash, max_frames)
            if not evidence.strip() and not step.crash.call_trace:
                # No trace to show (a hang, a timeout): the console tail is the only clue.
                evidence = "\n".join(step.crash.lines)
        lines += _indented(evidence, max_lines)
    return "\n".join(lines)


def _shown_when_passed(step: StepResult) -> bool:
    """A passing fault-injection sweep still lists what it failed and how init coped: that list
    is its result (see harness.debugkernel.sweep), where other passing steps have nothing to add;
    a skipped one says why (the kernel lacks the options), since the user asked for it."""
    if step.name != "faults":
        return False
    return step.status == "skip" or (step.status == "pass" and bool(step.evidence.strip()))


def _crash_lines(crash: Crash, max_frames: int) -> list[str]:
    lines = [f"    {one_line(crash.summary())}"]
    facts = []
    if crash.taint:
        facts.append(f"tainted: {crash.taint}")
    if crash.panicked:
        facts.append("kernel panicked")
    if crash.command:
        facts.append(f"during: {one_line(crash.command)}")
    if facts:
        lines.append("    " + "; ".join(facts))
    if crash.call_trace:
        lines.append("    call trace:")
        lines += [f"      {one_line(frame)}" for frame in crash.call_trace[:max_frames]]
        if len(crash.call_trace) > max_frames:
            lines.append(f"      ... {len(crash.call_trace) - max_frames} more frames")
    return lines


def _indented(evidence: str, max_lines: int) -> list[str]:
    text = printable(evidence).expandtabs(8).rstrip()
    if not text:
        return []
    lines = text.splitlines()
    shown = [f"    | {line}".rstrip() for line in lines[:max_lines]]
    if len(lines) > max_lines:
        shown.append(f"    | ... {len(lines) - max_lines} more lines (the JSON and JUnit reports have all)")
    return shown

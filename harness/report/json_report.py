"""JSON for machines: everything a run produced, under keys that never come and go.

Every run, step and crash field is always present (``null`` or empty when it does not apply),
so consumers can index without guarding and two reports diff cleanly. Text is kept as captured
(JSON escapes control characters itself); only lone surrogates, which no UTF-8 encoder accepts,
are replaced by the ``\\xNN`` escape of the byte they stood for. ``format_version`` changes
when a key is renamed or removed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.lifecycle.result import ModuleRun, StepResult
from harness.report.tally import run_name, tally
from harness.vm.crash import Crash

FORMAT = "kmh-report"
FORMAT_VERSION = 1

_SURROGATE = re.compile("[\ud800-\udfff]")


def _text(value: str) -> str:
    def escape(match: re.Match[str]) -> str:
        code = ord(match.group())
        return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"

    return _SURROGATE.sub(escape, value)


def crash_dict(crash: Crash) -> dict[str, Any]:
    """Every field of the crash, plus ``summary`` and ``poisons`` so consumers need not recompute."""
    return {
        "kind": crash.kind,
        "title": _text(crash.title),
        "summary": _text(crash.summary()),
        "function": _text(crash.function),
        "module": _text(crash.module),
        "call_trace": [_text(frame) for frame in crash.call_trace],
        "taint": crash.taint,
        "command": _text(crash.command),
        "panicked": crash.panicked,
        "poisons": crash.poisons,
        "lines": [_text(line) for line in crash.lines],
    }


def step_dict(step: StepResult) -> dict[str, Any]:
    """One step; ``crash`` is ``null`` rather than absent when the step did not crash."""
    return {
        "name": step.name,
        "status": step.status,
        "duration": round(step.duration, 3),
        "message": _text(step.message),
        "evidence": _text(step.evidence),
        "crash": crash_dict(step.crash) if step.crash is not None else None,
    }


def run_dict(run: ModuleRun) -> dict[str, Any]:
    """One module × kernel, with its verdict and the step that decided it up front."""
    failure = run.failure
    return {
        "name": _text(run_name(run)),
        "module": _text(run.module),
        "kernel": run.kernel,
        "target": run.target,
        "source": _text(run.source),
        "verdict": run.verdict,
        "duration": round(run.duration, 3),
        "failed_step": failure.name if failure is not None else None,
        "message": _text(failure.message) if failure is not None else "",
        "steps": [step_dict(step) for step in run.steps],
    }


def to_json(runs: Sequence[ModuleRun], *, elapsed: float | None = None) -> dict[str, Any]:
    """The whole report as plain data: ``format``, ``format_version``, ``summary``, ``runs``."""
    counts = tally(runs, elapsed=elapsed)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "summary": {
            "total": counts.total,
            "passed": counts.passed,
            "failed": counts.failed,
            "crashed": counts.crashed,
            "timed_out": counts.timed_out,
            "errors": counts.errors,
            "interrupted": counts.interrupted,
            "skipped": counts.skipped,
            "ok": counts.ok,
            "duration": round(counts.duration, 3),
            # The run's wall clock (null when the caller did not measure it) and the sum of the
            # module × kernel times, which overlap with -j N; duration is the first when known.
            "wall_clock": round(elapsed, 3) if elapsed is not None else None,
            "module_time": round(sum(run.duration for run in runs), 3),
            "kernels": sorted({run.kernel for run in runs}),
            "targets": sorted({run.target for run in runs if run.target}),
            "line": counts.line(),
        },
        "runs": [run_dict(run) for run in runs],
    }


def write_json(runs: Sequence[ModuleRun], path: str | Path, *, elapsed: float | None = None) -> Path:
    """Write the JSON report for ``runs`` to ``path`` (UTF-8, indented); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(to_json(runs, elapsed=elapsed), indent=2, ensure_ascii=False)
    path.write_text(text + "\n", encoding="utf-8")
    return path

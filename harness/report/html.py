"""A self-contained HTML report: the module × kernel grid, each cell opening its steps and evidence.

One file with its style inline and no script, font or image from anywhere, so it can be
attached to a CI run, mailed, or opened offline years later. Each cell is a ``<details>``
element (the browser opens and closes it without JavaScript) holding the run's steps as a table
and every step's evidence, crash report and kernel warnings as preformatted text. All text goes
through :func:`html.escape` after :func:`~harness.report.text.printable`, so nothing a kernel
printed can inject markup.
"""

from __future__ import annotations

import datetime
import html
from collections.abc import Sequence
from pathlib import Path

from harness.lifecycle.result import ModuleRun, StepResult
from harness.report.grid import make_grid
from harness.report.tally import format_duration, run_name, tally
from harness.report.terminal import failure_note, verdict_word
from harness.report.text import crash_text, printable

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1b1b1b; background: #fff; }
h1 { font-size: 1.4em; margin: 0 0 .3em; }
p.summary { margin: 0 0 1em; font-weight: 600; }
table.grid { border-collapse: collapse; }
table.grid th, table.grid td { border: 1px solid #bbb; padding: 4px 8px; vertical-align: top;
                               text-align: left; }
table.grid th { background: #eee; }
td.cell > details > summary { cursor: pointer; font-weight: 600; list-style: none; }
td.pass { background: #d7f5d9; } td.fail { background: #ffd6d6; } td.crash { background: #ff9f9f; }
td.timeout { background: #ffeeb0; } td.error { background: #ead6ff; } td.interrupted { background: #e6e6e6; }
td.none { background: #fafafa; color: #888; }
span.reason { display: block; font-weight: 400; font-size: .85em; }
table.steps { border-collapse: collapse; margin: .4em 0; }
table.steps td, table.steps th { border: 1px solid #ccc; padding: 2px 6px; font-size: .9em; }
pre { background: #f6f6f6; border: 1px solid #ddd; padding: 6px; max-width: 90ch; overflow-x: auto;
      white-space: pre-wrap; font-size: .85em; }
"""


def _text(value: str) -> str:
    return html.escape(printable(value))


def render_html(runs: Sequence[ModuleRun], *, title: str = "kmh run", elapsed: float | None = None) -> str:
    """The whole report as one HTML document."""
    grid = make_grid(runs)
    counts = tally(runs, elapsed=elapsed)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_text(title)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{_text(title)}</h1>",
        f'<p class="summary" id="summary">{_text(counts.line())} &middot; {len(grid.rows)} module(s) '
        f"&times; {len(grid.kernels)} kernel(s) &middot; {stamp}</p>",
        '<table class="grid" id="grid"><thead><tr><th>module</th>',
    ]
    out += [f'<th class="kernel">{_text(kernel)}</th>' for kernel in grid.kernels]
    out.append("</tr></thead><tbody>")
    for row in grid.rows:
        out.append(f'<tr><th class="module">{_text(grid.row_label(row))}</th>')
        for kernel in grid.kernels:
            run = grid.cell(row, kernel)
            out.append(_cell(run) if run is not None else '<td class="cell none">not run</td>')
        out.append("</tr>")
    out.append("</tbody></table></body></html>")
    return "\n".join(out) + "\n"


def _cell(run: ModuleRun) -> str:
    reason = failure_note(run, limit=60)
    summary = (
        f'<summary><span class="verdict">{verdict_word(run.verdict)}</span> '
        f"{format_duration(run.duration)}"
        + (f'<span class="reason">{_text(reason)}</span>' if reason else "")
        + "</summary>"
    )
    body = [f"<p>{_text(run_name(run))}" + (f" ({_text(run.source)})" if run.source else "") + "</p>"]
    body.append('<table class="steps"><tr><th>step</th><th>status</th><th>time</th><th>message</th></tr>')
    for step in run.steps:
        body.append(
            f'<tr class="{step.status}"><td>{_text(step.name)}</td><td>{_text(step.status)}</td>'
            f"<td>{format_duration(step.duration)}</td><td>{_text(step.message)}</td></tr>"
        )
    body.append("</table>")
    for step in run.steps:
        body += _evidence(step)
    return (
        f'<td class="cell {run.verdict}" data-verdict="{run.verdict}"><details>{summary}'
        + "".join(body)
        + "</details></td>"
    )


def _evidence(step: StepResult) -> list[str]:
    parts = []
    if step.evidence.strip():
        parts.append(f"<p>{_text(step.name)}: evidence</p><pre>{_text(step.evidence.rstrip())}</pre>")
    if step.crash is not None:
        text = crash_text(step.crash) + "\n\n" + "\n".join(step.crash.lines)
        parts.append(f"<p>{_text(step.name)}: kernel report</p><pre>{_text(text.rstrip())}</pre>")
    for warning in step.warnings:
        parts.append(f"<p>{_text(step.name)}: kernel warning</p><pre>{_text(crash_text(warning))}</pre>")
    return parts


def write_html(runs: Sequence[ModuleRun], path: str | Path, *, elapsed: float | None = None) -> Path:
    """Write the HTML report for RUNS to PATH (UTF-8); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(runs, elapsed=elapsed), encoding="utf-8")
    return path

"""Reports of a ``kmh run``: the terminal, JUnit XML and KTAP for CI, JSON for machines.

Every writer takes the same ``list[ModuleRun]`` (see :mod:`harness.lifecycle.result`), so a
run is described once and each format only decides how to show it.
"""

from harness.report.html import render_html, write_html
from harness.report.json_report import to_json, write_json
from harness.report.junit import render_junit, write_junit
from harness.report.ktap import render_ktap, write_ktap
from harness.report.tally import Tally, format_duration, tally
from harness.report.terminal import ProgressPrinter, render_grid, render_summary, use_color

__all__ = [
    "ProgressPrinter",
    "Tally",
    "format_duration",
    "render_grid",
    "render_html",
    "render_junit",
    "render_ktap",
    "render_summary",
    "tally",
    "to_json",
    "use_color",
    "write_html",
    "write_json",
    "write_junit",
    "write_ktap",
]

"""The module × kernel grid of a matrix run, shared by the terminal summary and the HTML report.

Rows are modules (with their source, so two specs of one module name stay apart), columns are
kernels, both in the order the run met them; a cell is the run of that module on that kernel,
or empty when the pair was not planned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from harness.lifecycle.result import ModuleRun


@dataclass(frozen=True)
class Grid:
    """Runs arranged by module (rows) and kernel (columns)."""

    rows: tuple[tuple[str, str], ...]  # (module, source)
    kernels: tuple[str, ...]
    cells: dict[tuple[tuple[str, str], str], ModuleRun]

    def cell(self, row: tuple[str, str], kernel: str) -> ModuleRun | None:
        return self.cells.get((row, kernel))

    def row_label(self, row: tuple[str, str]) -> str:
        """The module name, with its source when another row has the same name."""
        module, source = row
        twins = [r for r in self.rows if r[0] == module]
        return f"{module} ({source})" if len(twins) > 1 and source else module


def make_grid(runs: Sequence[ModuleRun]) -> Grid:
    rows: dict[tuple[str, str], None] = {}
    kernels: dict[str, None] = {}
    cells = {}
    for run in runs:
        row = (run.module, run.source)
        rows.setdefault(row)
        kernels.setdefault(run.kernel)
        cells[(row, run.kernel)] = run
    return Grid(tuple(rows), tuple(kernels), cells)


def kernel_count(runs: Sequence[ModuleRun]) -> int:
    return len({run.kernel for run in runs})

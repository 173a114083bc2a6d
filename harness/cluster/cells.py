"""Cutting a :class:`~harness.lifecycle.runner.Plan` into cells: the unit of work sent to a worker.

A cell is a batch of planned runs on one kernel. Keeping a kernel's modules together is what
makes the local runner fast, and a cell keeps it on a worker: its sources are built in one
batched kbuild and its modules share VM boots. Cells are plain picklable values (specs, kernel
*release names*, the plan index of each run) so a worker on another machine can rebuild the
sub-plan against its own kernel store. This module imports no Dask: it is also what
``--dry-run`` style tooling and the unit tests use.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.lifecycle.runner import Plan
from harness.lifecycle.spec import ModuleSpec

#: Planned runs per cell, chosen by measurement (``bench/cluster.py``, README "Scale out"): on
#: 2 workers under TCG a cell of 5 costs one VM boot and one kbuild (~6 s together) on top of
#: ~2.5 s per module, so smaller cells waste boots while bigger ones leave a worker idle at the
#: end of a run (the last cell decides the wall-clock time).
DEFAULT_CELL_SIZE = 5


@dataclass(frozen=True)
class CellItem:
    """One planned run, by value: what a worker needs to run it and the client to place the result."""

    #: Position of the run in the client's plan (results are put back in plan order).
    index: int
    spec: ModuleSpec
    #: Kernel release the module runs on, and the one it is built against (usually the same).
    kernel: str
    build_kernel: str


@dataclass(frozen=True)
class Cell:
    """A batch of runs on one kernel, executed by one worker with one local runner."""

    #: The Dask key: unique within the run and readable in the scheduler's logs and in reports.
    key: str
    kernel: str
    items: tuple[CellItem, ...] = field(default=())

    @property
    def modules(self) -> list[str]:
        return [item.spec.name for item in self.items]

    def describe(self) -> str:
        """``kernel 6.1.0-56-amd64: hello_kmh, chardev_kmh``: a cell named for people."""
        return f"{self.key} ({self.kernel}: {', '.join(self.modules)})"


def split_plan(plan: Plan, *, size: int = DEFAULT_CELL_SIZE, run_id: str = "run") -> list[Cell]:
    """Cells of at most ``size`` runs, each of one kernel, in plan order.

    Runs of a kernel are dealt round-robin into ``ceil(n / size)`` cells rather than cut into
    consecutive slices, so the cells of a kernel are of nearly equal length (7 runs with size 5
    give 4 + 3, not 5 + 2): the slowest cell sets the wall-clock time of the run.
    """
    if size < 1:
        raise ValueError("cell size must be at least 1")
    by_kernel: dict[str, list[CellItem]] = {}
    for index, item in enumerate(plan.items):
        entry = CellItem(index, item.spec, item.kernel.release, item.build_kernel.release)
        by_kernel.setdefault(item.kernel.release, []).append(entry)
    cells: list[Cell] = []
    for kernel, entries in by_kernel.items():
        count = -(-len(entries) // size)
        for number in range(count):
            key = f"kmh-{run_id}-{kernel}-{number + 1}of{count}"
            cells.append(Cell(key, kernel, tuple(entries[number::count])))
    return cells

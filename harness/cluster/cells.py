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

#: The largest cell, chosen by measurement (``bench/cluster.py``, 20 modules × 2 kernels on 2
#: one-VM workers, 2 cores under TCG; README "Scale out on Dask"): against the local runner
#: ``-j 2`` cells of 5 cost +15 %, cells of 10 +2 %, cells of 20 ±0 in one session, and 10 vs 20
#: was within the machine's noise in another. Each cell pays one kbuild, one VM boot and
#: 0.4–1 s for its process on top of the modules, so bigger is cheaper while every worker has
#: work; above 10 the gain is noise, while a worker lost mid-cell costs a rerun of the whole
#: cell and more workers need more cells.
MAX_CELL_SIZE = 10


def cell_size(runs: int, slots: int) -> int:
    """Runs per cell for ``runs`` runs on a cluster of ``slots`` VMs: enough cells for every VM
    to have one, each as big as possible (up to :data:`MAX_CELL_SIZE`)."""
    return max(1, min(MAX_CELL_SIZE, -(-runs // max(1, slots))))


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
    #: Packed module source directories, by their path on the client (see ``sources``).
    sources: tuple[tuple[str, bytes], ...] = field(default=(), repr=False)

    @property
    def modules(self) -> list[str]:
        return [item.spec.name for item in self.items]

    def describe(self) -> str:
        """``kernel 6.1.0-56-amd64: hello_kmh, chardev_kmh``: a cell named for people."""
        return f"{self.key} ({self.kernel}: {', '.join(self.modules)})"


def split_plan(plan: Plan, *, size: int = MAX_CELL_SIZE, run_id: str = "run") -> list[Cell]:
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

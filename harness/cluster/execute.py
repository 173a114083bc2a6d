"""Running one cell where it lands: rebuild the sub-plan against this machine's store, run it.

This is the body of a cell, executed in a child process of the Dask worker (see
:mod:`harness.cluster.task`) so the worker can stop it, and every VM it booted, at once when the
client cancels the run. It imports no Dask. Protocol: ``python -m harness.cluster.execute IN OUT``
reads a pickled ``(Cell, CellOptions)`` from the file IN and writes the pickled
``list[ModuleRun]`` to the file OUT; progress and diagnostics go to stderr. SIGTERM (a
cancelled run, or the worker gone) interrupts the runner as it does ``kmh run``
(:mod:`harness.lifecycle.interrupt`): it stops the VMs it booted before the process exits.
"""

from __future__ import annotations

import pickle
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness.cluster.cells import Cell
from harness.cluster.sources import unpack_sources
from harness.errors import HarnessError
from harness.kernels.store import KernelStore
from harness.lifecycle.interrupt import Interrupted, interruptible
from harness.lifecycle.result import ModuleRun, StepResult
from harness.lifecycle.runner import Plan, PlannedRun, Runner


@dataclass(frozen=True)
class CellOptions:
    """The runner options of ``kmh run`` that mean the same on every worker."""

    werror: bool = False
    isolate: bool = False
    backend: str = "qemu"
    build_in_vm: bool = False


def run_cell(cell: Cell, options: CellOptions) -> list[ModuleRun]:
    """The cell's runs, in cell order, with verdicts exactly as the local runner gives them.

    Module source directories shipped with the cell are unpacked into a scratch directory that
    lives as long as the runner needs it.

    Kernel targets missing here are fetched by release into this machine's store
    (:meth:`KernelStore.ensure` holds the store's lock, so two cells needing the same kernel at
    once download it once). A kernel that cannot be had fails the cell's runs with an ``error``
    step instead of losing them.
    """
    with tempfile.TemporaryDirectory(prefix="kmh-cell-src-") as scratch:
        return _run(unpack_sources(cell, Path(scratch)), options)


def _run(cell: Cell, options: CellOptions) -> list[ModuleRun]:
    store = KernelStore()
    plan = Plan()
    results: list[ModuleRun] = []
    for item in cell.items:
        run = ModuleRun(module=item.spec.name, source=item.spec.origin, kernel=item.kernel)
        results.append(run)
        try:
            kernel = store.ensure(item.kernel, progress=_say)
            build_kernel = kernel
            if item.build_kernel != item.kernel:
                build_kernel = store.ensure(item.build_kernel, progress=_say)
        except HarnessError as error:
            run.steps.append(StepResult("setup", "error", message=f"on this worker: {error.message}"))
            continue
        plan.items.append(PlannedRun(item.spec, kernel, build_kernel, run))
    if plan.items:
        Runner(
            jobs=1,
            werror=options.werror,
            isolate=options.isolate,
            backend=options.backend,
            build_in_vm=options.build_in_vm,
        ).execute(plan)
    return results


def _say(message: str) -> None:
    print(f"kmh cell: {message}", file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    cell, options = pickle.loads(Path(argv[0]).read_bytes())
    try:
        with interruptible():
            runs = run_cell(cell, options)
    except Interrupted as interruption:
        return interruption.exit_code  # the runner has stopped its VMs; no results to send
    Path(argv[1]).write_bytes(pickle.dumps(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

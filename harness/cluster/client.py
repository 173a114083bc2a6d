"""The client side of ``kmh run --cluster``: submit the cells, stream the results back.

Dask distributed does the distributing (placement by the ``VM`` resource, reruns when a worker
dies, ``KilledWorker`` for a cell that keeps killing them); this module only maps a plan onto it
and maps every way a cell can end back onto :class:`ModuleRun` values, so the progress output and
every report are written exactly as after a local run. Nothing is lost: a cell that ends without
results (the scheduler gave up on it, the scheduler went away, its process broke) gives its runs
an ``error`` step that names the cell and the cause.
"""

from __future__ import annotations

import logging
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import TYPE_CHECKING, TextIO

from harness.cluster.cells import Cell, cell_size, split_plan
from harness.cluster.execute import CellOptions
from harness.cluster.sources import pack_sources
from harness.cluster.task import cell_task
from harness.errors import HarnessError
from harness.lifecycle.result import ModuleRun, StepResult
from harness.lifecycle.runner import Plan, PlannedRun, RunCallback, StepCallback

if TYPE_CHECKING:  # Dask is optional: imported for real only when a cluster is used
    from distributed import Client, Future

#: How long to wait for a first worker on a scheduler that has none yet.
WORKER_WAIT = 60.0
#: Loopback only by default: a local cluster never listens on another interface.
LOCAL_HOST = "127.0.0.1"

TaskFunction = Callable[[Cell, CellOptions, str], list[ModuleRun]]


class ClusterRun:
    """One ``kmh run`` on a Dask cluster: :meth:`execute` returns runs in plan order."""

    def __init__(
        self,
        address: str,
        *,
        options: CellOptions | None = None,
        cell_size: int | None = None,
        on_step: StepCallback | None = None,
        on_finished: RunCallback | None = None,
        messages: TextIO = sys.stderr,
        task: TaskFunction = cell_task,
    ) -> None:
        parse_local(address)  # a mistyped local:N is a usage error before anything starts
        self.address = address
        self.options = options or CellOptions()
        #: Runs per cell; None: sized from the VMs the workers offer (:func:`cell_size`).
        self.cell_size = cell_size
        self.on_step = on_step
        self.on_finished = on_finished
        self.messages = messages
        #: The function a worker runs for a cell (tests swap in one that kills its worker).
        self.task = task
        self.run_id = uuid.uuid4().hex[:8]
        #: Cells that came back with results, and cells that ended without (error verdicts).
        self.finished_cells: list[Cell] = []
        self.lost_cells: list[Cell] = []

    def execute(self, plan: Plan) -> list[ModuleRun]:
        """Every planned run ends as one ModuleRun, put in its plan item as the local runner does.

        On an interruption (Ctrl-C, SIGTERM as :class:`Interrupted`) the cells are cancelled and
        stopped on their workers, finished results are kept, every other run gets an
        ``interrupted`` step, and the exception goes on to the caller, which writes the reports.
        """
        distributed = require_distributed()
        cells: list[Cell] = []
        with connect(self.address) as client:
            slots = _vm_slots(client, self.address)
            size = self.cell_size or cell_size(len(plan.items), slots)
            cells = [pack_sources(cell) for cell in split_plan(plan, size=size, run_id=self.run_id)]
            futures = {
                client.submit(
                    self.task, cell, self.options, self.run_id, key=cell.key, pure=False, resources={"VM": 1}
                ): cell
                for cell in cells
            }
            try:
                for future in distributed.as_completed(futures, loop=client.loop):
                    cell = futures[future]
                    results = self._outcome(future, cell)
                    (self.finished_cells if future.status == "finished" else self.lost_cells).append(cell)
                    for item, run in zip(cell.items, results, strict=True):
                        self._record(plan.items[item.index], run)
            except BaseException as interruption:
                # Ctrl-C, SIGTERM or any failure here: no cell of this run may keep a VM on a worker.
                client.cancel(list(futures), force=True)
                _stop_cells(client, self.run_id)
                name = getattr(interruption, "name", type(interruption).__name__)
                for planned in plan.items:
                    if not planned.finished:
                        message = f"interrupted by {name} before it finished"
                        planned.run.steps.append(StepResult("interrupted", "interrupted", message=message))
                        self._record(planned, planned.run)
                raise
        self._say_lost(cells)
        return [planned.run for planned in plan.items]

    def _record(self, planned: PlannedRun, run: ModuleRun) -> None:
        """``run`` is the final word on ``planned``: store it there and report it, once."""
        run.target = run.target or planned.run.target  # the kernel as the user named it, client-side
        planned.run = run
        planned.finished = True
        if self.on_step:
            for step in run.steps:
                self.on_step(run, step)
        if self.on_finished:
            self.on_finished(run)

    def _say_lost(self, cells: list[Cell]) -> None:
        """One line naming the cells that ended without results (their runs carry the cause)."""
        lost = [cell.key for cell in self.lost_cells]
        if lost:
            done = len(cells) - len(lost)
            print(
                f"kmh run: {done} of {len(cells)} cells finished; no verdicts from {', '.join(lost)}",
                file=self.messages,
            )

    def _outcome(self, future: Future, cell: Cell) -> list[ModuleRun]:
        """The cell's runs, or error runs saying why it has none."""
        if future.status == "finished":
            return future.result()
        if future.status == "cancelled":
            why = "the scheduler went away before the cell finished"
        else:
            error = future.exception()
            name = type(error).__name__
            if name == "KilledWorker":
                why = f"the cell killed the workers that ran it and the scheduler gave up ({error})"
            else:
                why = f"the cell failed on its worker: {name}: {error}"
        return [_error_run(item.spec.name, item.spec.origin, item.kernel, cell, why) for item in cell.items]


def _error_run(module: str, source: str, kernel: str, cell: Cell, why: str) -> ModuleRun:
    run = ModuleRun(module=module, source=source, kernel=kernel)
    first, _, rest = why.partition("\n")
    run.steps.append(StepResult("cluster", "error", message=f"cell {cell.key}: {first}", evidence=rest))
    return run


def require_distributed() -> ModuleType:
    """The ``distributed`` module, or the one-line error naming the extra that installs it."""
    try:
        import distributed
    except ImportError:
        raise HarnessError("--cluster needs Dask distributed: pip install 'kmod-harness[cluster]'") from None
    # Dask logs lost connections, reruns and given-up cells with tracebacks; every one of them
    # ends as a verdict or a line of the run's own output, which says what matters.
    logging.getLogger("distributed").setLevel(logging.CRITICAL)
    return distributed


def parse_local(address: str) -> int | None:
    """``local`` → one worker per CPU, ``local:N`` → N workers; None for a scheduler address."""
    if address != "local" and not address.startswith("local:"):
        return None
    count = address.partition(":")[2]
    if not count:
        return os.cpu_count() or 1
    if not count.isdigit() or int(count) < 1:
        raise HarnessError(f"--cluster {address}: write local or local:N with N a number of workers")
    return int(count)


@contextmanager
def connect(address: str) -> Iterator[Client]:
    """A client of the scheduler at ``address``, or of a LocalCluster started here for ``local[:N]``.

    A local cluster listens on 127.0.0.1 only and has no dashboard; each worker is a process
    with one thread and one VM, the same as ``dask worker --nthreads 1 --resources VM=1``.
    TLS and other connection settings come from Dask's own configuration (see README).
    """
    distributed = require_distributed()
    workers = parse_local(address)
    if workers is not None:
        try:
            cluster = distributed.LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                host=LOCAL_HOST,
                # No dashboard; the scheduler's plain HTTP routes on a free loopback port, not 8787.
                dashboard_address=None,
                scheduler_kwargs={"dashboard_address": f"{LOCAL_HOST}:0"},
                resources={"VM": 1},
            )
        except (OSError, RuntimeError, TimeoutError) as error:
            raise HarnessError(f"--cluster {address}: the local workers did not start: {error}") from None
        with cluster, distributed.Client(cluster, set_as_default=False) as client:
            yield client
        return
    if address.startswith("tls://"):
        security = distributed.security.Security()  # from Dask's configuration (files, DASK_* env)
        if not (security.tls_ca_file and security.tls_client_cert):
            raise HarnessError(
                f"--cluster {address}: no TLS settings for the client; set distributed.comm.tls.ca-file "
                "and client.cert/client.key (DASK_DISTRIBUTED__COMM__TLS__CA_FILE, ...; see README)"
            )
    try:
        client = distributed.Client(address, set_as_default=False, timeout=30)
    except (OSError, TimeoutError, ValueError, TypeError, RuntimeError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise HarnessError(f"--cluster: cannot reach a Dask scheduler at {address}: {reason}") from None
    try:
        yield client
    finally:
        client.close()


def _vm_slots(client: Client, address: str) -> int:
    """The VMs the workers offer in all; fails fast when none could ever run a cell."""
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT)
    except TimeoutError:
        raise HarnessError(f"--cluster: the scheduler at {address} has no workers") from None
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    slots = [int(worker.get("resources", {}).get("VM", 0)) for worker in workers]
    if not any(slots):
        raise HarnessError(
            f"--cluster: no worker of {address} offers a VM; start workers with --resources VM=N"
        )
    return sum(slots)


def _stop_cells(client: Client, run_id: str) -> None:
    """Terminate this run's cell processes (and so their VMs) on every worker."""
    from harness.cluster.task import cancel_run

    try:
        client.run(cancel_run, run_id)
    except Exception:  # noqa: BLE001 - the scheduler may be gone; workers then lose their cells anyway
        pass

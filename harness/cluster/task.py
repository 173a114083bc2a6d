"""The Dask task of a cell, on the worker side: run the cell in a child process, stoppable.

A running Dask task cannot be interrupted, and a cell may have a VM booted. So the task runs the
cell in a child process (:mod:`harness.cluster.execute`) and only waits for it; when the client
cancels the run (Ctrl-C), it calls :func:`cancel_run` on every worker, which terminates the
children of that run. QEMU dies with the child that started it (``PR_SET_PDEATHSIG``), and the
child dies with the worker the same way, so a worker killed with SIGKILL leaves no VM behind
either. This module is imported by the workers only; it imports no Dask.
"""

from __future__ import annotations

import pickle
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from harness.cluster.cells import Cell
from harness.cluster.execute import CellOptions
from harness.lifecycle.result import ModuleRun
from harness.processes import spawn_tied

#: Seconds a cancelled cell gets to close its VMs after SIGTERM before it is killed.
TERMINATE_GRACE = 10.0

_lock = threading.Lock()
_running: dict[str, set[subprocess.Popen[bytes]]] = {}
_cancelled: set[str] = set()


class CellFailed(Exception):
    """The cell's child process ended without results (killed, or the harness broke)."""


class CellCancelled(Exception):
    """The client cancelled the run while this cell was running."""


def cell_task(cell: Cell, options: CellOptions, run_id: str) -> list[ModuleRun]:
    """Run ``cell`` to completion on this worker; its results, in cell order."""
    with tempfile.TemporaryDirectory(prefix="kmh-cell-") as tmp:
        inputs, output, log_path = Path(tmp, "in"), Path(tmp, "out"), Path(tmp, "log")
        inputs.write_bytes(pickle.dumps((cell, options)))
        argv = [sys.executable, "-m", "harness.cluster.execute", str(inputs), str(output)]
        with open(log_path, "wb") as log:
            with _lock:
                if run_id in _cancelled:
                    raise CellCancelled(cell.key)
                # SIGTERM, not SIGKILL: the cell closes its VMs when the worker dies.
                child = spawn_tied(argv, log, death_signal=signal.SIGTERM)
                _running.setdefault(run_id, set()).add(child)
            try:
                code = child.wait()
            finally:
                with _lock:
                    _running.get(run_id, set()).discard(child)
        if run_id in _cancelled:
            raise CellCancelled(cell.key)
        if code != 0 or not output.exists():
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
            how = f"was killed by signal {-code}" if code < 0 else f"exited with {code}"
            raise CellFailed(f"the cell's process {how}\n{tail}".rstrip())
        return pickle.loads(output.read_bytes())


def cancel_run(run_id: str) -> int:
    """Stop every cell of ``run_id`` on this worker (run by the client on all workers); how many."""
    with _lock:
        _cancelled.add(run_id)
        children = list(_running.get(run_id, ()))
    for child in children:
        child.terminate()
    for child in children:
        try:
            child.wait(timeout=TERMINATE_GRACE)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return len(children)



"""``kmh run --cluster``: the plan's cells on Dask distributed workers, here or on other machines.

Layered on the local runner's public API: the plan is cut into cells of one kernel
(:mod:`~harness.cluster.cells`), each cell runs on a worker as a local :class:`Runner` in a child
process (:mod:`~harness.cluster.task`, :mod:`~harness.cluster.execute`), and the client
(:mod:`~harness.cluster.client`) streams the results back into the same callbacks and reports.
Dask itself is imported only when a cluster is used: ``kmh run`` without ``--cluster`` never
loads it, and it is an optional extra (``kmod-harness[cluster]``).
"""

from __future__ import annotations

from harness.cluster.client import ClusterRun
from harness.cluster.execute import CellOptions
from harness.errors import HarnessError
from harness.lifecycle.runner import Runner


def cluster_runner(address: str, local: Runner, *, backend: str = "qemu") -> ClusterRun:
    """A cluster run with the settings and callbacks of ``local``, the runner it stands in for."""
    if local.jobs != 1:
        raise HarnessError(
            "-j sets the VMs of the local runner; with --cluster a worker runs as many VMs as its "
            "--resources VM=N (local:N starts N workers)"
        )
    options = CellOptions(
        werror=local.werror, isolate=local.isolate, backend=backend, build_in_vm=local.build_in_vm
    )
    return ClusterRun(address, options=options, on_step=local.on_step, on_finished=local.on_finished)


__all__ = ["CellOptions", "ClusterRun", "cluster_runner"]

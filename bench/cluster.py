"""Benchmark: the same plan (20 modules × 2 kernels) on the local runner and on Dask, same run.

Three ways of running 40 module × kernel cycles with two VMs at a time:

1. the in-process runner, ``kmh run -j 2``;
2. ``--cluster local:2``: a LocalCluster of two one-VM workers started by the run itself;
3. a ``dask scheduler`` and two ``dask worker --nthreads 1 --resources VM=1`` processes on
   127.0.0.1, started before the clock runs (as a cluster is: a standing service).

It prints each wall-clock time, the cluster/local ratios (target: overhead ≤ 15 %), whether the
verdicts are identical, and the per-cell overhead of the cluster path measured on empty cells
(scheduling round trip + the cell's child process + pickling, no kbuild and no VM). With
``--cell-sizes 5,10,20`` it runs the loopback cluster once per cell size: how the largest cell
(:data:`harness.cluster.cells.MAX_CELL_SIZE`) was chosen; by default cells are sized as
``kmh run --cluster`` sizes them.

    .venv/bin/python bench/cluster.py [--count 20] [--cell-sizes 5,10,20] [--rounds 2]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from harness.cluster import ClusterRun
from harness.cluster.cells import Cell
from harness.lifecycle.runner import Runner, make_plan
from harness.lifecycle.spec import spec_for_template

TEMPLATES = ("hello", "params", "chardev", "misc", "procfs")
KERNELS = ("bookworm", "bookworm-backports")
DASK = str(Path(sys.executable).with_name("dask"))


def specs(count: int):  # type: ignore[no-untyped-def]
    return [
        spec_for_template(TEMPLATES[i % len(TEMPLATES)], name=f"bench_{TEMPLATES[i % len(TEMPLATES)]}_{i}")
        for i in range(count)
    ]


def verdicts(runs) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    return [(run.module, run.kernel, run.verdict) for run in runs]


def timed(label: str, action):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    runs = action()
    elapsed = time.perf_counter() - started
    passed = sum(run.verdict == "pass" for run in runs)
    print(f"{label:<44} {elapsed:7.1f} s   ({passed}/{len(runs)} pass)", flush=True)
    return elapsed, runs


class LoopbackCluster:
    """``dask scheduler`` + N ``dask worker`` processes on 127.0.0.1, stopped by PID."""

    def __init__(self, workers: int, directory: Path) -> None:
        self.directory = directory
        scheduler_file = directory / "scheduler.json"
        self.processes = [
            self._start(
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(scheduler_file),
            )
        ]
        deadline = time.monotonic() + 60
        while not scheduler_file.exists():
            if time.monotonic() > deadline:
                raise SystemExit("the scheduler did not start")
            time.sleep(0.1)
        time.sleep(0.2)
        self.address = json.loads(scheduler_file.read_text())["address"]
        for number in range(workers):
            self.processes.append(
                self._start(
                    "worker",
                    self.address,
                    "--host",
                    "127.0.0.1",
                    "--nthreads",
                    "1",
                    "--resources",
                    "VM=1",
                    "--no-dashboard",
                    "--name",
                    f"bench{number}",
                )
            )
        from distributed import Client

        with Client(self.address, set_as_default=False) as client:
            client.wait_for_workers(workers, timeout=60)

    def _start(self, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.directory / f"{args[0]}{len(getattr(self, 'processes', []))}.log", "wb")  # noqa: SIM115
        return subprocess.Popen([DASK, *args], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        for process in reversed(self.processes):  # workers first: they outlive a stopped scheduler
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def cell_overhead(address: str, cells: int = 20) -> tuple[float, float]:
    """Seconds per empty cell through the whole cluster path, and per bare Dask task."""
    import distributed

    from harness.cluster.execute import CellOptions
    from harness.cluster.task import cell_task

    with distributed.Client(address, set_as_default=False) as client:
        started = time.perf_counter()
        futures = [client.submit(abs, i, pure=False, resources={"VM": 1}) for i in range(cells)]
        client.gather(futures)
        bare = (time.perf_counter() - started) / cells
        empty = [Cell(f"kmh-bench-empty-{i}", "none") for i in range(cells)]
        started = time.perf_counter()
        futures = [
            client.submit(
                cell_task, cell, CellOptions(), "bench", key=cell.key, pure=False, resources={"VM": 1}
            )
            for cell in empty
        ]
        client.gather(futures)
        whole = (time.perf_counter() - started) / cells
    return whole, bare


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=20, help="modules (each runs on both kernels)")
    parser.add_argument("--cell-sizes", default="0", help="comma-separated cell sizes (0: as kmh sizes them)")
    parser.add_argument("--skip-local", action="store_true", help="only the loopback cluster (size sweeps)")
    parser.add_argument(
        "--rounds", type=int, default=1, help="run the variants N times (rotated), keep the best"
    )
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the scheduler and workers below are stopped too.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    sizes = [int(size) or None for size in args.cell_sizes.split(",")]
    plan_specs = specs(args.count)
    print(f"{args.count} modules x {len(KERNELS)} kernels, two VMs at a time", flush=True)
    best: dict[str, tuple[float, list]] = {}

    def measure(name: str, label: str, action) -> None:  # type: ignore[no-untyped-def]
        load = os.getloadavg()[0]
        elapsed, runs = timed(f"{label} [load {load:.1f}]", action)
        left = [p for p in psutil.Process().children(recursive=True) if "qemu" in p.name()]
        if left:
            print(f"  warning: {len(left)} VM(s) of this variant still running", flush=True)
        if name not in best or elapsed < best[name][0]:
            best[name] = (elapsed, runs)

    with tempfile.TemporaryDirectory(prefix="kmh-bench-") as tmp:
        cluster = LoopbackCluster(2, Path(tmp))
        try:
            variants = []
            if not args.skip_local:
                variants.append(
                    (
                        "local",
                        "local runner -j 2",
                        lambda: Runner(jobs=2).execute(make_plan(plan_specs, KERNELS)),
                    )
                )
                variants.append(
                    (
                        "local:2",
                        f"--cluster local:2 (cells of {sizes[0] or 'kmh size'}, incl. start)",
                        lambda: ClusterRun("local:2", cell_size=sizes[0], messages=io.StringIO()).execute(
                            make_plan(plan_specs, KERNELS)
                        ),
                    )
                )
            for size in sizes:
                variants.append(
                    (
                        f"loopback ({size or 'kmh'})",
                        f"scheduler + 2 workers on 127.0.0.1 (cells of {size or 'kmh size'})",
                        lambda size=size: ClusterRun(cluster.address, cell_size=size).execute(
                            make_plan(plan_specs, KERNELS)
                        ),
                    )
                )
            for number in range(args.rounds):
                # Each round starts with another variant: on a shared machine the load drifts.
                shift = number % len(variants)
                for name, label, action in variants[shift:] + variants[:shift]:
                    measure(name, label, action)
            whole, bare = cell_overhead(cluster.address)
        finally:
            cluster.stop()
    if "local" in best:
        local, local_runs = best["local"]
        print(f"best of {args.rounds} round(s):")
        for name, (elapsed, runs) in best.items():
            same = "identical" if verdicts(runs) == verdicts(local_runs) else "DIFFERENT"
            ratio = elapsed / local
            print(
                f"  {name:<16} {elapsed:6.1f} s  {ratio:5.2f}x local ({(ratio - 1) * 100:+.0f} %), "
                f"{same} verdicts"
            )
    print(
        f"per-cell overhead: {whole * 1000:.0f} ms per empty cell (child process, pickling, scheduling); "
        f"{bare * 1000:.1f} ms of it is Dask's round trip"
    )


if __name__ == "__main__":
    main()

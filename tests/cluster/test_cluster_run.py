"""``kmh run --cluster`` for real: a Dask scheduler and two workers on 127.0.0.1 running shipped specs.

The verdicts must be the local runner's for the same plan, and no fault of the cluster (a worker
SIGKILLed mid-cell, Ctrl-C) may lose a result or leave a cell process or a VM behind.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from harness.cluster import ClusterRun
from harness.lifecycle.runner import Runner, make_plan
from harness.lifecycle.spec import load_spec
from harness.paths import REPO_ROOT
from tests.cluster.conftest import WAIT, descendants, wait_gone

pytestmark = pytest.mark.vm

#: A pass, a pass with a device node, a crash, a build failure and a module whose init fails in
#: the guest: the ways a run ends, on a healthy cluster.
SPECS = [
    "modules/hello.toml",
    "modules/chardev.toml",
    "modules/bad/null_deref.toml",
    "modules/bad/compile_error.toml",
    "modules/bad/init_error.toml",
]
KERNELS = ["bookworm", "bookworm-backports"]


def _plan():  # type: ignore[no-untyped-def]
    return make_plan([load_spec(REPO_ROOT / path) for path in SPECS], KERNELS)


def _verdicts(runs) -> list[tuple[str, str, str, str | None]]:  # type: ignore[no-untyped-def]
    return [(run.module, run.kernel, run.verdict, run.failure.name if run.failure else None) for run in runs]


@pytest.fixture(scope="module")
def local_verdicts(kernel_61, kernel_612):  # type: ignore[no-untyped-def]
    """What the in-process runner says about the same plan (the reference)."""
    return _verdicts(Runner(jobs=2).execute(_plan()))


def test_scheduler_and_two_workers_give_the_local_verdicts(dask_cluster, local_verdicts):
    seen: list[str] = []
    # Cells of 3: two cells per kernel, so both workers build and boot, and cells share boots.
    cluster = ClusterRun(dask_cluster.address, cell_size=3, on_finished=lambda run: seen.append(run.module))
    runs = cluster.execute(_plan())
    assert _verdicts(runs) == local_verdicts
    assert sorted(seen) == sorted(run.module for run in runs)  # streamed to the callback, once each
    assert len(cluster.finished_cells) == 4 and not cluster.lost_cells
    # The kernel as the user named it (the matrix report's column) survives the trip too.
    assert [run.target for run in runs] == [item.run.target for item in _plan().items]
    assert {run.target for run in runs} == set(KERNELS)
    # The crash report crossed the wire intact (pickled back from the worker).
    crashed = [run for run in runs if run.verdict == "crash"]
    assert len(crashed) == 2 and all(run.crash.module == "kmh_null_deref" for run in crashed)
    # Both agree with what each spec promises, so they are not equal by being wrong the same way.
    assert [run.verdict for run in runs] == [item.spec.outcome.verdict for item in _plan().items]


def _kmh(*args: str, **kwargs) -> subprocess.Popen:  # type: ignore[no-untyped-def]
    return subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", *args],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def _cell_processes(worker_pid: int) -> list[psutil.Process]:
    found = []
    for process in descendants(worker_pid):
        try:
            if "harness.cluster.execute" in " ".join(process.cmdline()):
                found.append(process)
        except psutil.NoSuchProcess:
            pass
    return found


def _wait_for_cell(workers, timeout: float = WAIT):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for worker in workers:
            if _cell_processes(worker.pid):
                return worker
        time.sleep(0.2)
    raise AssertionError("no cell started on any worker")


def _json_verdicts(path: Path) -> dict[tuple[str, str], str]:
    report = json.loads(path.read_text())
    return {(run["source"], run["kernel"]): run["verdict"] for run in report["runs"]}


def test_worker_killed_mid_cell_loses_nothing(dask_cluster, local_verdicts, tmp_path):
    report = tmp_path / "report.json"
    kmh = _kmh(
        *SPECS, *[f"--kernel={k}" for k in KERNELS], "--cluster", dask_cluster.address, "--json", str(report)
    )
    victim = _wait_for_cell(dask_cluster.workers)
    tree = descendants(victim.pid)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=WAIT)
    out, err = kmh.communicate(timeout=600)
    assert kmh.returncode == 1, err  # crash and fail verdicts, as locally
    runs = json.loads(report.read_text())["runs"]
    assert [(r["module"], r["kernel"], r["verdict"], r["failed_step"]) for r in runs] == local_verdicts
    # Reported once each: the rerun cell's modules appear once in the progress output.
    progress = [line for line in err.splitlines() if line.startswith("[")]
    assert len(progress) == len(local_verdicts), err
    # The killed worker's cell process and its VM died with it.
    assert not wait_gone(tree, timeout=30)


def test_ctrl_c_cancels_and_leaves_no_vm_on_the_workers(dask_cluster, tmp_path):
    report = tmp_path / "report.json"
    kmh = _kmh(
        "modules/hello.toml",
        "modules/chardev.toml",
        "--kernel=bookworm",
        "--cluster",
        dask_cluster.address,
        "--json",
        str(report),
    )
    worker = _wait_for_cell(dask_cluster.workers)
    deadline = time.monotonic() + WAIT
    while not any("qemu" in p.name() for p in descendants(worker.pid)):
        assert time.monotonic() < deadline, "the cell never booted a VM"
        time.sleep(0.2)
    kmh.send_signal(signal.SIGINT)
    _out, err = kmh.communicate(timeout=WAIT)
    assert kmh.returncode == 130, err
    assert "interrupted by SIGINT" in err
    # The report is written, with every run: those the interruption stopped say so.
    runs = json.loads(report.read_text())["runs"]
    assert [run["module"] for run in runs] == ["hello_kmh", "kmh_chardev"]
    assert "interrupted" in {run["verdict"] for run in runs}
    # Workers stay up, with nothing of the run left under them.
    deadline = time.monotonic() + 30
    while any(descendants(w.pid) for w in dask_cluster.workers):
        left = [p.cmdline() for w in dask_cluster.workers for p in descendants(w.pid)]
        assert time.monotonic() < deadline, left
        time.sleep(0.2)
    assert all(w.poll() is None for w in dask_cluster.workers)


def test_local_cluster_mode(tmp_path, local_verdicts):
    report = tmp_path / "report.json"
    kmh = _kmh(
        "modules/hello.toml",
        "modules/bad/compile_error.toml",
        "--kernel=bookworm-backports",
        "--cluster",
        "local:2",
        "--json",
        str(report),
        start_new_session=True,
    )
    out, err = kmh.communicate(timeout=600)
    assert kmh.returncode == 1, err
    runs = json.loads(report.read_text())["runs"]
    got = [(r["module"], r["kernel"], r["verdict"], r["failed_step"]) for r in runs]
    expected = [v for v in local_verdicts if v[1] == got[0][1] and v[0] in ("hello_kmh", "kmh_broken")]
    assert got == expected
    assert "1 passed, 1 failed" in out
    # The local cluster's workers went with the command.
    session = [p for p in psutil.process_iter() if _sid(p) == kmh.pid]
    assert not wait_gone(session, timeout=30)


def _sid(process: psutil.Process) -> int | None:
    try:
        return os.getsid(process.pid)
    except (ProcessLookupError, PermissionError):
        return None


def test_cell_that_kills_its_workers_ends_as_an_error_naming_it(kernel_61):
    import dask

    def kill_my_worker(cell, options, run_id):  # type: ignore[no-untyped-def]
        os.kill(os.getpid(), signal.SIGKILL)

    plan = make_plan([load_spec(REPO_ROOT / "modules/hello.toml")], ["bookworm"])
    messages = io.StringIO()
    # The LocalCluster's scheduler runs in this process, so this setting is the scheduler's: the
    # cell may kill one worker (the nanny restarts it) and is given up after the second.
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        cluster = ClusterRun("local:1", task=kill_my_worker, messages=messages)
        [run] = cluster.execute(plan)
    assert run.verdict == "error"
    [cell] = cluster.lost_cells
    assert run.failure.name == "cluster" and cell.key in run.failure.message
    assert "killed the workers" in run.failure.message
    assert f"0 of 1 cells finished; no verdicts from {cell.key}" in messages.getvalue()


def test_scheduler_gone_reports_the_finished_cells(scheduler_only, kernel_61, tmp_path):
    started = tmp_path / "started"

    def quick_or_stuck(cell, options, run_id):  # type: ignore[no-untyped-def]
        # Runs on the worker, which cannot import this test module: everything it needs is here.
        from harness.lifecycle.result import ModuleRun, StepResult

        if cell.modules != ["hello_kmh"]:
            started.touch()
            time.sleep(20)
        runs = []
        for item in cell.items:  # a made-up pass: this tests the client, not the cycle
            run = ModuleRun(item.spec.name, item.spec.origin, item.kernel, required=("load",))
            run.steps.append(StepResult("load", "pass"))
            runs.append(run)
        return runs

    scheduler_only.start_worker(vms=2)
    scheduler_only.wait_for_workers(1)
    specs = [load_spec(REPO_ROOT / "modules/hello.toml"), load_spec(REPO_ROOT / "modules/chardev.toml")]
    plan = make_plan(specs, ["bookworm"])
    messages = io.StringIO()
    cluster = ClusterRun(scheduler_only.address, task=quick_or_stuck, cell_size=1, messages=messages)
    result: list = []
    thread = threading.Thread(target=lambda: result.append(cluster.execute(plan)))
    thread.start()
    deadline = time.monotonic() + WAIT
    while not (started.exists() and cluster.finished_cells):  # one cell back, one running
        assert time.monotonic() < deadline
        time.sleep(0.1)
    scheduler_only.scheduler.send_signal(signal.SIGKILL)
    thread.join(timeout=WAIT)
    assert not thread.is_alive()
    [runs] = result
    assert [run.verdict for run in runs] == ["pass", "error"]
    assert "scheduler went away" in runs[1].failure.message
    assert [cell.modules for cell in cluster.finished_cells] == [["hello_kmh"]]
    assert "1 of 2 cells finished" in messages.getvalue()

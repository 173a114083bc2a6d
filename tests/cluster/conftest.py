"""A real Dask scheduler and workers as separate processes on 127.0.0.1, reaped by PID.

The scheduler writes its address (random port) to a scheduler file; workers run without a nanny
so the PID the test holds is the process that runs the cells (and can be SIGKILLed). Teardown
stops workers before the scheduler (a worker without its scheduler keeps retrying) and kills
whatever is left of each process tree, so nothing outlives the test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from harness.paths import REPO_ROOT

DASK = str(Path(sys.executable).with_name("dask"))
#: Bound on every wait for a process to come up or go away.
WAIT = 60.0


@dataclass
class DaskCluster:
    """A scheduler and its workers, all started by the test."""

    directory: Path
    #: Extra arguments of every ``dask scheduler`` / ``dask worker`` (e.g. the --tls-* flags).
    flags: tuple[str, ...] = ()
    scheduler: subprocess.Popen | None = None
    address: str = ""
    workers: list[subprocess.Popen] = field(default_factory=list)

    def start_scheduler(self) -> None:
        scheduler_file = self.directory / "scheduler.json"
        self.scheduler = _start(
            [
                DASK,
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(scheduler_file),
                *self.flags,
            ],
            self.directory / "scheduler.log",
        )
        deadline = time.monotonic() + WAIT
        while not scheduler_file.exists() or not scheduler_file.read_text().strip():
            assert self.scheduler.poll() is None, (self.directory / "scheduler.log").read_text()
            assert time.monotonic() < deadline, "the scheduler did not come up"
            time.sleep(0.2)
        time.sleep(0.2)  # the file is written in one go, but give it a moment to be complete
        self.address = json.loads(scheduler_file.read_text())["address"]
        assert self.address.split("://")[1].startswith("127.0.0.1:")

    def start_worker(self, vms: int = 1) -> subprocess.Popen:
        number = len(self.workers)
        worker = _start(
            [
                DASK,
                "worker",
                self.address,
                "--host",
                "127.0.0.1",
                "--nthreads",
                str(vms),
                "--resources",
                f"VM={vms}",
                "--no-nanny",
                "--no-dashboard",
                "--name",
                f"w{number}",
                *self.flags,
            ],
            self.directory / f"worker{number}.log",
        )
        self.workers.append(worker)
        return worker

    def wait_for_workers(self, count: int, security: object = None) -> None:
        from distributed import Client

        with Client(self.address, set_as_default=False, timeout=WAIT, security=security) as client:
            client.wait_for_workers(count, timeout=WAIT)

    def stop(self) -> None:
        for worker in self.workers:
            _stop(worker)
        if self.scheduler is not None:
            _stop(self.scheduler)


def _start(argv: list[str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as output:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            start_new_session=True,
        )


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL: the process and every descendant it still has, by PID."""
    try:
        tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=15)
    for child in tree[1:]:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(tree[1:], timeout=15)


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def wait_gone(processes: list[psutil.Process], timeout: float = WAIT) -> list[psutil.Process]:
    """The processes still alive after ``timeout``."""
    _gone, alive = psutil.wait_procs(processes, timeout=timeout)
    return alive


@pytest.fixture
def dask_cluster(tmp_path: Path) -> Iterator[DaskCluster]:
    """A scheduler and two one-VM workers on loopback."""
    cluster = DaskCluster(tmp_path)
    try:
        cluster.start_scheduler()
        cluster.start_worker()
        cluster.start_worker()
        cluster.wait_for_workers(2)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def scheduler_only(tmp_path: Path) -> Iterator[DaskCluster]:
    """A scheduler; the test starts its workers."""
    cluster = DaskCluster(tmp_path)
    try:
        cluster.start_scheduler()
        yield cluster
    finally:
        cluster.stop()


def _is_resource_tracker(process: psutil.Process) -> bool:
    """multiprocessing's helper, started once per Python process and ended with it."""
    try:
        return "multiprocessing.resource_tracker" in " ".join(process.cmdline())
    except psutil.NoSuchProcess:
        return False


@pytest.fixture(autouse=True)
def _no_leftover_processes() -> Iterator[None]:
    """Whatever a cluster test started (workers, cell processes, QEMU) is gone when it ends."""
    before = {p.pid for p in psutil.Process(os.getpid()).children(recursive=True)}
    yield
    left = [
        p
        for p in psutil.Process(os.getpid()).children(recursive=True)
        if p.pid not in before and not _is_resource_tracker(p)
    ]
    alive = wait_gone(left, timeout=30)
    assert not alive, f"left running: {[p.cmdline() for p in alive]}"

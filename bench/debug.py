"""Figures for the debug kernel target against the stock kernel it is built from (medians).

    python bench/debug.py [-n 3] [--build]

build (cold)      ``kmh kernel add bookworm:debug`` into an empty scratch store: download (cached
                  .deb reused), unpack, configure, make, install; wall clock and the CPU seconds
                  (user + system) of the build, which is what a quiet 2-core machine needs / 2.
                  Only with --build: it takes the machine's both cores for many minutes.
boot-to-ready     a cold boot (no snapshot) until the agent's ready message
restore-to-ready  a restore from the saved snapshot until ready
hello cycle       in a running VM: upload hello.ko + insmod + grep /proc/modules + rmmod
faults sweep      the ``faults`` step of ``kmh run modules/debug/faults_clean.toml`` (each
                  allocation of init failed in turn, every failed init checked, kmemleak once),
                  and the loads it took; ``--faults`` measures only this
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.kernels.store import KernelStore
from harness.kernels.target import KernelTarget
from harness.lifecycle.runner import Runner, make_plan
from harness.lifecycle.spec import load_spec
from harness.vm import VM, VMConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vm import build_hello, hello_cycle  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FAULTS_SPEC = REPO / "modules" / "debug" / "faults_clean.toml"


def measure_build() -> dict[str, list[float]]:
    """A cold build of bookworm:debug in a scratch store (the shared store's .debs are reused)."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "KMH_CACHE": tmp}
        apt = KernelStore().archive.state_dir
        os.symlink(apt, Path(tmp) / "apt")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        kmh = [str(Path(sys.executable).parent / "kmh"), "kernel", "add", "bookworm:debug"]
        subprocess.run(kmh, check=True, env=env)
        wall = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"build wall": [wall], "build cpu": [cpu], "build quiet 2-core est.": [cpu / 2]}


def measure_vm(kernel: KernelTarget, rounds: int) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {"boot-to-ready": [], "restore-to-ready": [], "hello cycle": []}
    with tempfile.TemporaryDirectory() as tmp:
        hello = build_hello(kernel, Path(tmp))
        VM(kernel).start().close()  # the default configuration gets its snapshot
        for _ in range(rounds):
            with VM(kernel, VMConfig(snapshot=False)) as vm:
                figures["boot-to-ready"].append(vm.boot_seconds)
            with VM(kernel) as vm:
                assert vm.restored
                figures["restore-to-ready"].append(vm.boot_seconds)
                for _ in range(3):
                    started = time.monotonic()
                    hello_cycle(vm, hello)
                    figures["hello cycle"].append(time.monotonic() - started)
    return figures


def measure_faults(rounds: int) -> dict[str, list[float]]:
    """The sweep's own step time (the cycle before it is the ordinary one) and its loads."""
    spec = dataclasses.replace(load_spec(FAULTS_SPEC), inject_faults=True)
    figures: dict[str, list[float]] = {"faults sweep": [], "faults sweep loads": [], "whole cycle": []}
    for _ in range(rounds):
        started = time.monotonic()
        run = Runner(jobs=1).execute(make_plan([spec]))[0]
        figures["whole cycle"].append(time.monotonic() - started)
        step = run.step("faults")
        assert step is not None and step.status == "pass", [(s.name, s.status, s.message) for s in run.steps]
        figures["faults sweep"].append(step.duration)
        loads = sum(1 for line in step.evidence.splitlines() if line.startswith(("allocation #", "load #")))
        figures["faults sweep loads"].append(float(loads))
    return figures


def _print(kernel: str, figures: dict[str, list[float]]) -> None:
    for figure, values in figures.items():
        median = statistics.median(values)
        unit, scale = ("ms", 1000) if median < 1 else ("s", 1)
        if figure.endswith("loads"):
            unit, scale = "", 1
        print(
            f"{kernel:22} {figure:24} {median * scale:9.2f}{unit:>2} "
            f"{min(values) * scale:9.2f}{unit:>2} {max(values) * scale:9.2f}{unit:>2}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", "--rounds", type=int, default=3)
    parser.add_argument("--build", action="store_true", help="also time a cold build (many minutes)")
    parser.add_argument("--faults", action="store_true", help="only the fault-injection sweep")
    args = parser.parse_args()
    store = KernelStore()
    print(f"{'kernel':22} {'figure':24} {'median':>11} {'min':>11} {'max':>11}")
    if args.build:
        _print("bookworm:debug", measure_build())
    if not args.faults:
        for name in ("bookworm", "bookworm:debug"):
            kernel = store.ensure(name)
            _print(kernel.release, measure_vm(kernel, args.rounds))
    _print(store.ensure("bookworm:debug").release, measure_faults(args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())

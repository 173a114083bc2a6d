"""What the optional Python layer costs a VM, measured in one run (medians, interleaved rounds).

    python bench/python_layer.py [--kernel bookworm] [--kernel bookworm-backports] [-n 5]

boot-to-ready      VM.start() until the agent's ready message, without / with the Python layer,
                   "cold" (a real boot: snapshot=False) and "restored" (from the saved snapshot of
                   the same configuration, what runs after the first one get)
start()            the whole VM.start(): image assembly (concatenating the layers) and boot
cost ...           per round, the Python VM minus the plain VM just before it (paired)
python -c pass     first interpreter start in a fresh (restored) guest
import pyroute2    ``from pyroute2 import IPRoute`` right after, what every netlink check pays
initramfs          bytes of the assembled image

Rounds alternate plain and Python VMs so both see the same machine load. The layer is built
(and cached) before timing starts: its one-off build is reported separately.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from harness.kernels.store import KernelStore
from harness.kernels.target import KernelTarget
from harness.vm import image
from harness.vm.python_layer import GUEST_PYTHON, python_layer
from harness.vm.qemu import VM, VMConfig

IMPORT = f"{GUEST_PYTHON} -c 'from pyroute2 import IPRoute'"


def measure(kernel: KernelTarget, rounds: int) -> dict[str, list[float]]:
    """Interleaved plain and Python VMs of KERNEL; every figure is a list of samples (seconds)."""
    figures: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        figures.setdefault(name, []).append(value)

    for _ in range(rounds):
        for mode, snapshot in (("cold", False), ("restored", True)):
            for python in (False, True):
                label = f"{mode} {'python' if python else 'plain'}"
                started = time.monotonic()
                with VM(kernel, VMConfig(python=python, snapshot=snapshot)) as vm:
                    add(f"start() {label}", time.monotonic() - started)
                    add(f"boot-to-ready {label}", vm.boot_seconds)
            # Paired: this round's Python VM minus the plain one just before it.
            for figure in ("boot-to-ready", "start()"):
                after, before = figures[f"{figure} {mode} python"][-1], figures[f"{figure} {mode} plain"][-1]
                add(f"cost {figure} {mode}", after - before)
        with VM(kernel, VMConfig(python=True)) as vm:
            started = time.monotonic()
            assert vm.run(f"{GUEST_PYTHON} -c pass", timeout=60).ok
            add("python -c pass (first)", time.monotonic() - started)
            started = time.monotonic()
            result = vm.run(IMPORT, timeout=120)
            assert result.ok, result
            add("import pyroute2", time.monotonic() - started)
    return figures


def image_size(kernel: KernelTarget, python: bool) -> int:
    layers = [image.base_layer(kernel), image.modules_layer(kernel)]
    if python:
        layers.append(python_layer())
    return sum(layer.stat().st_size for layer in layers)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kernel", action="append", help="kernel target (repeatable); default bookworm")
    parser.add_argument("-n", "--rounds", type=int, default=5)
    args = parser.parse_args()
    started = time.monotonic()
    layer = python_layer()
    print(f"python layer: {layer.stat().st_size / 1e6:.1f} MB ({time.monotonic() - started:.1f} s to get)")
    store = KernelStore()
    print(f"{'kernel':22} {'figure':30} {'median':>8} {'min':>8} {'max':>8}")
    for name in args.kernel or ["bookworm"]:
        kernel = store.ensure(name)
        figures = measure(kernel, args.rounds)
        for figure, values in figures.items():
            print(
                f"{kernel.release:22} {figure:30} {statistics.median(values):7.2f}s "
                f"{min(values):7.2f}s {max(values):7.2f}s"
            )
        plain, python = image_size(kernel, False), image_size(kernel, True)
        print(f"{kernel.release:22} {'initramfs plain/python':30} {plain / 1e6:6.1f}MB {python / 1e6:6.1f}MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

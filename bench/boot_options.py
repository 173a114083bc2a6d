"""Which cheap kernel command-line and QEMU changes shorten a cold boot to ready (issue 16).

Every variant boots the same kernel with the same initramfs and agent, without a snapshot; the
variants are interleaved round by round so they share the machine's load, and each is reported
with its best and median boot-to-ready against the baseline's. Only changes that leave what a
module sees alone are candidates: no ``acpi=off``, ``ipv6.disable``, ``rodata=off``, nothing
that removes a subsystem, no other CPU model (a module may test CPU features).

    .venv/bin/python bench/boot_options.py [--kernel bookworm] [-n 5] [--variant NAME]...
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Callable
from dataclasses import replace

from harness.kernels.store import KernelStore
from harness.vm import VM, VMConfig
from harness.vm.launcher import QemuLauncher

#: name -> (extra kernel parameters, extra QEMU arguments, config changes)
VARIANTS: dict[str, tuple[str, tuple[str, ...], dict[str, object]]] = {
    "baseline": ("", (), {}),
    # The early TSC calibration against the PIT/HPET, which under TCG times emulated hardware.
    "tsc_early_khz": ("tsc_early_khz={khz}", (), {}),
    # No clocksource watchdog for the TSC (under TCG the TSC follows the host's clock).
    "tsc=reliable": ("tsc=reliable", (), {}),
    "mem 192M": ("", (), {"memory_mb": 192}),
    "mem 384M": ("", (), {"memory_mb": 384}),
    "tb-size 256": ("", ("@tb-size=256",), {}),
}


def boot_seconds(kernel, variant: str, khz: str) -> float:  # type: ignore[no-untyped-def]
    params, qemu, changes = VARIANTS[variant]
    config = replace(VMConfig(snapshot=False), extra_params=params.format(khz=khz), **changes)
    accel_options = [arg[1:] for arg in qemu if arg.startswith("@")]
    original = QemuLauncher.argv
    if accel_options:

        def argv(self, qemu_path, accel_name, tmp):  # type: ignore[no-untyped-def]
            line = original(self, qemu_path, accel_name, tmp)
            at = line.index("-accel") + 1
            line[at] = ",".join([line[at], *accel_options]) if line[at] == "tcg" else line[at]
            return line

        QemuLauncher.argv = argv  # type: ignore[method-assign]
    try:
        with VM(kernel, config) as vm:
            return vm.boot_seconds
    finally:
        QemuLauncher.argv = original  # type: ignore[method-assign]


def tsc_khz(kernel) -> str:  # type: ignore[no-untyped-def]
    """The TSC frequency the guest's kernel detects (its own dmesg), for tsc_early_khz=."""
    import re

    with VM(kernel, VMConfig(snapshot=False)) as vm:
        text = vm.run("dmesg").stdout
    found = re.search(r"tsc: Detected ([\d.]+) MHz", text)
    return str(int(float(found.group(1)) * 1000)) if found else "0"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kernel", default="bookworm")
    parser.add_argument("-n", "--rounds", type=int, default=5)
    parser.add_argument("--variant", action="append", choices=list(VARIANTS))
    args = parser.parse_args()
    kernel = KernelStore().ensure(args.kernel)
    variants = ["baseline", *[v for v in (args.variant or VARIANTS) if v != "baseline"]]
    khz = tsc_khz(kernel)
    times: dict[str, list[float]] = {variant: [] for variant in variants}
    report: Callable[[str], None] = print
    report(f"{kernel.release}, {args.rounds} rounds, load {os.getloadavg()[0]:.2f}, tsc {khz} kHz")
    for _ in range(args.rounds):
        for variant in variants:
            times[variant].append(boot_seconds(kernel, variant, khz))
    base = statistics.median(times["baseline"])
    for variant, values in times.items():
        median = statistics.median(values)
        report(
            f"{variant:16} best {min(values):6.2f} s  median {median:6.2f} s  "
            f"({(median - base) * 1000:+6.0f} ms against baseline)"
        )
    report(f"load {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

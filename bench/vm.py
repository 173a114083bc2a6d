"""Figures for the disposable VM, all measured in one run (medians).

    python bench/vm.py [--kernel bookworm] [--kernel bookworm-backports] [-n 5]

boot-to-ready     VM.start() until the agent's ready message (QEMU start included)
rtt true          one vm.run(["true"]) round trip (fork+exec in the guest)
rtt sh -c true    one vm.run("true") round trip through the guest shell
hello cycle       in a running VM: upload hello.ko + insmod + grep /proc/modules + rmmod
cold vm run       the whole `kmh vm run -- true` process: image assembly, boot, run, poweroff
boot plain/python boot-to-ready without / with the optional Python layer (netlink checks),
                  interleaved rounds; "python cost" is the median of the per-round differences
kernel floor      the same QEMU line and kernel command line booting a tiny static /init that
                  powers off at once: QEMU start to QEMU exit. No harness code runs in the guest,
                  so this is what the kernel's own start-up costs under this accelerator
kernel to /init   the guest's /proc/uptime when that /init starts: the kernel's start-up alone
                  (without QEMU's start, the firmware and the power-off)
kmh share         boot-to-ready minus kernel floor: what kmh's initramfs, agent and handshake add
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.kernels.store import KernelStore
from harness.kernels.target import KernelTarget
from harness.vm import VM, VMConfig

TARGETS = {
    "boot-to-ready": 1.5,  # issue 16
    "rtt true": 0.010,
    "hello cycle": 0.150,
    "cold vm run": 3.0,
    "fresh VM + hello": 0.5,
}
HELLO = Path(__file__).resolve().parent.parent / "tests" / "vm" / "data" / "modules" / "kmh_hello.c"


def build_hello(kernel: KernelTarget, workdir: Path) -> Path:
    shutil.copy(HELLO, workdir / "kmh_hello.c")
    (workdir / "Kbuild").write_text("obj-m += kmh_hello.o\n")
    subprocess.run(
        ["make", "-s", "-C", str(kernel.kbuild_dir), f"M={workdir}", "modules"],
        check=True,
        capture_output=True,
    )
    return workdir / "kmh_hello.ko"


def hello_cycle(vm: VM, hello: Path) -> None:
    vm.put(hello, "/tmp/kmh_hello.ko")
    assert vm.run("insmod /tmp/kmh_hello.ko").ok
    assert vm.run("grep -q '^kmh_hello ' /proc/modules").ok
    assert vm.run("rmmod kmh_hello").ok


def measure(kernel: KernelTarget, rounds: int) -> dict[str, list[float]]:
    names = ("boot-to-ready", "restore-to-ready", "start()", "close()", "fresh VM + hello")
    figures: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        hello = build_hello(kernel, Path(tmp))
        VM(kernel).start().close()  # make sure the default configuration has its snapshot
        for _ in range(rounds):
            started = time.monotonic()
            vm = VM(kernel, VMConfig(snapshot=False)).start()
            figures["start()"].append(time.monotonic() - started)
            figures["boot-to-ready"].append(vm.boot_seconds)
            started = time.monotonic()
            vm.close()
            figures["close()"].append(time.monotonic() - started)

            started = time.monotonic()
            with VM(kernel) as vm:
                assert vm.restored
                figures["restore-to-ready"].append(vm.boot_seconds)
                hello_cycle(vm, hello)
            figures["fresh VM + hello"].append(time.monotonic() - started)

        with VM(kernel) as vm:
            for name, command in (("rtt true", ["true"]), ("rtt sh -c true", "true")):
                figures[name] = []
                for _ in range(20 * rounds):
                    started = time.monotonic()
                    assert vm.run(command).ok
                    figures[name].append(time.monotonic() - started)
            figures["hello cycle"] = []
            for _ in range(4 * rounds):
                started = time.monotonic()
                hello_cycle(vm, hello)
                figures["hello cycle"].append(time.monotonic() - started)

    kmh = [str(Path(sys.executable).parent / "kmh"), "vm", "run", "--kernel", kernel.release, "--", "true"]
    figures["cold vm run"], figures["snap vm run"] = [], []
    for _ in range(rounds):
        for name, snapshot in (("cold vm run", "0"), ("snap vm run", "1")):
            started = time.monotonic()
            subprocess.run(kmh, check=True, env={**os.environ, "KMH_VM_SNAPSHOT": snapshot})
            figures[name].append(time.monotonic() - started)
    return figures


#: The tiny /init of the kernel-floor figure: say when it started, then power off.
FLOOR_INIT = r"""
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <unistd.h>
int main(void) {
    char buf[64] = "kmh-floor uptime ";
    mount("proc", "/proc", "proc", 0, 0);
    int fd = open("/proc/uptime", O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, buf + 17, sizeof buf - 18) : 0;
    int out = open("/dev/console", O_WRONLY);
    if (out >= 0 && n > 0) write(out, buf, 17 + n);
    reboot(RB_POWER_OFF);
    return 0;
}
"""


def measure_floor(kernel: KernelTarget, rounds: int) -> dict[str, list[float]]:
    """The kernel's own start-up under this QEMU line: kmh's argv and kernel command line with
    the initramfs replaced by one static /init that powers off. Rounds alternate with kmh's own
    cold boots, so both see the same load; "kmh share" is the median of per-round differences."""
    import re

    from harness.vm import accel
    from harness.vm.cpio import directory, regular, write_archive
    from harness.vm.launcher import QemuLauncher

    config = VMConfig(snapshot=False)
    qemu = shutil.which(config.qemu)
    assert qemu, "qemu not found"
    figures: dict[str, list[float]] = {"kernel floor": [], "kernel to /init": [], "kmh share": []}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "init.c").write_text(FLOOR_INIT)
        subprocess.run(["gcc", "-static", "-Os", "-o", str(tmp / "init"), str(tmp / "init.c")], check=True)
        with open(tmp / "initramfs.cpio", "wb") as out:
            entries = [
                directory("proc"),
                directory("dev"),
                regular("init", (tmp / "init").read_bytes(), 0o755),
            ]
            write_archive(out, entries)
        name = accel.choose(qemu, config.accel).name
        argv = QemuLauncher(kernel, config).argv(qemu, name, tmp)
        argv = [
            a.replace(f"path={tmp / 'agent.sock'}", f"path={tmp / 'agent.sock'},server=on,wait=off")
            for a in argv
        ]
        for _ in range(rounds):
            started = time.monotonic()
            subprocess.run(argv, check=True, capture_output=True, timeout=120)
            figures["kernel floor"].append(time.monotonic() - started)
            found = re.search(r"kmh-floor uptime ([\d.]+)", (tmp / "console.log").read_text(errors="replace"))
            assert found, (tmp / "console.log").read_text(errors="replace")[-2000:]
            figures["kernel to /init"].append(float(found.group(1)))
            with VM(kernel, config) as vm:
                figures.setdefault("kmh boot (paired)", []).append(vm.boot_seconds)
                figures["kmh share"].append(vm.boot_seconds - figures["kernel floor"][-1])
    return figures


def measure_python_layer(kernel: KernelTarget, rounds: int) -> dict[str, list[float]]:
    """Boot cost of the Python layer: plain and Python boots alternate, so both see the same load."""
    from harness.vm import VMConfig
    from harness.vm.python_layer import python_layer

    python_layer()  # built and cached before timing
    figures: dict[str, list[float]] = {"boot plain": [], "boot python": [], "python cost": []}
    for _ in range(rounds):
        for python in (False, True):
            with VM(kernel, VMConfig(python=python, snapshot=False)) as vm:
                figures["boot python" if python else "boot plain"].append(vm.boot_seconds)
        figures["python cost"].append(figures["boot python"][-1] - figures["boot plain"][-1])
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kernel", action="append", help="kernel target (repeatable); default bookworm")
    parser.add_argument("-n", "--rounds", type=int, default=5)
    parser.add_argument(
        "--floor-only", action="store_true", help="only the kernel floor, against kmh's own cold boot"
    )
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores")
    store = KernelStore()
    print(f"{'kernel':22} {'figure':18} {'median':>10} {'min':>10} {'max':>10} {'target':>8}")
    for name in args.kernel or ["bookworm"]:
        kernel = store.ensure(name)
        if args.floor_only:
            figures = measure_floor(kernel, args.rounds)
        else:
            figures = {
                **measure(kernel, args.rounds),
                **measure_floor(kernel, args.rounds),
                **measure_python_layer(kernel, args.rounds),
            }
        for figure, values in figures.items():
            target = TARGETS.get(figure)
            unit, scale = ("ms", 1000) if statistics.median(values) < 1 else ("s", 1)
            verdict = "" if target is None else ("ok" if statistics.median(values) <= target else "MISS")
            print(
                f"{kernel.release:22} {figure:18} {statistics.median(values) * scale:8.2f}{unit:>2} "
                f"{min(values) * scale:8.2f}{unit:>2} {max(values) * scale:8.2f}{unit:>2} "
                f"{'' if target is None else f'{target * scale:g}{unit}':>8} {verdict}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Figures for .ko inspection, all from one run on one machine (issue 3).

* ``depmod -n`` vs ``kmh deps`` over a whole module tree (the 6.1 target: 4023 plain .ko);
* ``modinfo`` vs ``kmh modinfo`` with every module of the tree in one process each;
* one cold ``kmh inspect`` process vs one ``modinfo`` process;
* peak RSS of each kmh process.

Each command runs ``--repeat`` times after one warm-up (page cache warm, as the anchors in the
design notes were measured); the table shows the median and the best wall time, and the largest
peak RSS. Outputs are checked to be identical before anything is timed.

Usage: python bench/elf.py [--kernel bookworm] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from harness.kernels.store import KernelStore

TARGETS = {"deps": 2.5, "modinfo": 2.5, "inspect": 0.100}
STRETCH_DEPS = 1.0
MEMORY_MB = 100
GNU_TIME = "/usr/bin/time"


@dataclass
class Timing:
    walls: list[float]
    cpus: list[float]
    peak_rss_mb: float

    @property
    def median(self) -> float:
        return statistics.median(self.walls)

    @property
    def best(self) -> float:
        return min(self.walls)

    @property
    def cpu(self) -> float:
        return statistics.median(self.cpus)


def run_once(command: list[str], cwd: Path) -> tuple[float, bytes]:
    """(wall seconds, stdout) of one run of COMMAND."""
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, check=False)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        error = result.stderr.decode(errors="replace")
        raise SystemExit(f"{' '.join(command[:3])}... failed ({result.returncode}): {error[:500]}")
    return wall, result.stdout


def run_timed(command: list[str], cwd: Path) -> tuple[float, float, float]:
    """(wall s, user+sys CPU s, peak RSS MB) of one run, via GNU time: a wait4 in this process
    would also count the pages the child had before exec, i.e. this benchmark's own memory."""
    start = time.perf_counter()
    result = subprocess.run([GNU_TIME, "-f", "%U %S %M", *command], cwd=cwd, capture_output=True, check=False)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        error = result.stderr.decode(errors="replace")[-500:]
        raise SystemExit(f"{' '.join(command[:3])}... failed: {error}")
    user, system, rss = result.stderr.decode().strip().splitlines()[-1].split()
    return wall, float(user) + float(system), int(rss) / 1024


def measure(command: list[str], cwd: Path, repeat: int) -> Timing:
    run_once(command, cwd)  # warm-up
    runs = [run_timed(command, cwd) for _ in range(repeat)]
    return Timing([r[0] for r in runs], [r[1] for r in runs], max(r[2] for r in runs))


def kmh_command() -> list[str]:
    script = Path(sys.executable).with_name("kmh")
    return [str(script)] if script.exists() else [sys.executable, "-m", "harness.cli"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernel", default="bookworm", help="kernel target whose tree is measured")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    kernel = KernelStore().get(args.kernel)
    tree = kernel.modules_dir
    kmh = kmh_command()
    relpaths = sorted(str(p.relative_to(tree)) for p in tree.rglob("*.ko*"))
    single = next(p for p in relpaths if p.endswith("/usb-storage.ko") or p.endswith("/usb-storage.ko.xz"))
    for tool in ("depmod", "modinfo", GNU_TIME):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (kmod, GNU time)")

    depmod = ["depmod", "-n", "-b", str(kernel.root), kernel.release]
    cases = {
        "deps": (depmod, [*kmh, "deps", str(tree)]),
        "modinfo": (["modinfo", *relpaths], [*kmh, "modinfo", *relpaths]),
        "inspect": (["modinfo", single], [*kmh, "inspect", single]),
    }

    # Parity first: a fast wrong answer is not a result.
    expected = run_once(depmod, tree)[1]
    dep_section = expected[: expected.index(b"# Aliases extracted from modules themselves.\n")]
    parity_deps = run_once(cases["deps"][1], tree)[1] == dep_section
    parity_modinfo = run_once(cases["modinfo"][1], tree)[1] == run_once(cases["modinfo"][0], tree)[1]
    del expected, dep_section

    print(f"kernel {kernel.release}: {len(relpaths)} modules; {os.cpu_count()} CPUs; repeat {args.repeat}")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"parity: kmh deps == depmod -n modules.dep: {parity_deps}")
    print(f"parity: kmh modinfo == modinfo (all modules): {parity_modinfo}")
    python = [sys.executable, "-c"]
    floor = {
        "python -c pass": measure([*python, "pass"], tree, args.repeat).median,
        "python + import plumbum.cli (kmh's CLI layer)": measure(
            [*python, "import plumbum.cli"], tree, args.repeat
        ).median,
        "python + import harness.elf.module (the reader)": measure(
            [*python, "import harness.elf.module"], tree, args.repeat
        ).median,
    }
    print("start-up floor of any kmh process, same run:")
    for label, value in floor.items():
        print(f"  {label:<50} {value * 1000:6.1f} ms")
    print()
    header = f"{'measure':<10} {'kmod median':>12} {'kmh median':>11} {'kmh best':>9} {'kmh CPU':>8} "
    header += f"{'ratio':>6} {'kmh peak RSS':>13} {'target':>7}  verdict"
    print(header)
    verdicts = [parity_deps, parity_modinfo]
    for name, (reference, ours_command) in cases.items():
        theirs = measure(reference, tree, args.repeat)
        mine = measure(ours_command, tree, args.repeat)
        target = TARGETS[name]
        ok = mine.median <= target and mine.peak_rss_mb <= MEMORY_MB
        verdicts.append(ok)
        note = "ok" if ok else "MISSED"
        if name == "deps":
            note += f" (stretch {STRETCH_DEPS:.1f} s: {'ok' if mine.median <= STRETCH_DEPS else 'missed'})"
        unit = 1000 if name == "inspect" else 1
        suffix = "ms" if name == "inspect" else "s"
        print(
            f"{name:<10} {theirs.median * unit:>10.3f}{suffix:>2} {mine.median * unit:>9.3f}{suffix:>2} "
            f"{mine.best * unit:>7.3f}{suffix:>2} {mine.cpu * unit:>6.3g}{suffix:>2} "
            f"{mine.median / theirs.median:>5.1f}x {mine.peak_rss_mb:>10.1f} MB "
            f"{target * unit:>5.3g}{suffix:<2}  {note}"
        )
    print()
    print("targets: deps <= 2.5 s (stretch <= 1 s), modinfo over all <= 2.5 s, cold inspect <= 100 ms,")
    print(f"peak RSS <= {MEMORY_MB} MB; verdicts use the median wall clock (page cache warm);")
    print("kmh CPU is user+sys of the process, less sensitive to other load on the machine")
    return 0 if all(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())

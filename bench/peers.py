"""Benchmark: kmh beside virtme-ng, measured in the same run on the same kernel and .ko.

One cycle is boot + insmod + rmmod + poweroff of the same hello .ko on the same Debian kernel:

    vng --force-9p [--disable-kvm] -r <the target's vmlinuz> -e 'insmod X.ko && rmmod X && echo OK'
    kmh vm run --kernel <target> --put X.ko -- 'insmod X.ko && rmmod X && echo OK'

virtme-ng is installed from PyPI into a throwaway venv (deleted afterwards). The two tools take
turns, round after round, so both see the same machine load. kmh is timed cold (a full boot,
``KMH_VM_SNAPSHOT=0``) and warm (its saved boot snapshot restored); virtme-ng has no snapshot,
so each of its runs is a boot. Its first run (cold caches) is shown apart. The ratio is
virtme-ng's median over kmh's. If virtme-ng cannot be installed or run here, the bench says why
(its output's last lines) and still prints kmh's figures.

    .venv/bin/python bench/peers.py [--kernel bookworm] [-n 3]
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
from harness.vm.accel import choose

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from vm import build_hello  # noqa: E402 - bench/vm.py builds the same hello .ko

MARK = "kmh-peer-cycle-ok"
#: virtme-ng has no timeout of its own; a silent boot hang must not hang the bench.
VNG_TIMEOUT = 300


def install_vng(venv: Path) -> tuple[Path | None, str]:
    """virtme-ng in a fresh venv: (its bin dir, '') or (None, why it could not be installed)."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "virtme-ng"], capture_output=True, text=True
    )
    if pip.returncode != 0 or not (venv / "bin" / "vng").exists():
        return None, "pip install virtme-ng failed: " + _last(pip.stderr or pip.stdout)
    return venv / "bin", ""


def vng_cycle(bin_dir: Path, kernel: KernelTarget, ko: Path, tcg: bool) -> tuple[float, str]:
    """One virtme-ng cycle: (seconds, '') or (seconds, why it failed)."""
    script = f"insmod {ko} && rmmod {ko.stem} && echo {MARK}"
    # --verbose: without a script channel the output comes over the console, shown only then.
    argv = [str(bin_dir / "vng"), "--verbose", "--force-9p", "-r", str(kernel.vmlinuz), "-e", script]
    if tcg:
        argv.insert(1, "--disable-kvm")
    # vng runs virtme-run and friends from PATH; it works in a temp dir (it mounts the host's).
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}
    started = time.perf_counter()
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, env=env, timeout=VNG_TIMEOUT, cwd=tempfile.gettempdir()
        )
    except subprocess.TimeoutExpired:
        return time.perf_counter() - started, f"vng did not finish within {VNG_TIMEOUT} s"
    elapsed = time.perf_counter() - started
    # vng exits 255 when it has no virtio-serial script channel (Debian builds virtio_console
    # as a module its initramfs does not load) even when the script passed. Its init then runs
    # the script on the console, where kernel messages can cut into the script's own output,
    # so its own report of the script's exit code decides (or the mark, when it got through).
    output = result.stdout + result.stderr
    if "script exited with code 0" not in output and MARK not in output:
        return elapsed, f"vng exit {result.returncode}: " + _last(output)
    return elapsed, ""


def kmh_cycle(kernel: KernelTarget, ko: Path, *, snapshot: bool) -> float:
    script = f"insmod {ko.name} && rmmod {ko.stem} && echo {MARK}"
    kmh = Path(sys.executable).parent / "kmh"
    argv = [str(kmh), "vm", "run", "--kernel", kernel.release, "--put", str(ko), "--", script]
    env = {**os.environ, "KMH_VM_SNAPSHOT": "1" if snapshot else "0"}
    started = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - started
    if MARK not in result.stdout:
        raise SystemExit(f"kmh vm run failed (exit {result.returncode}): {_last(result.stderr)}")
    return elapsed


def _last(text: str, lines: int = 6) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:] if line.strip())


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kernel", default="bookworm")
    parser.add_argument("-n", "--rounds", type=int, default=3)
    args = parser.parse_args()
    kernel = KernelStore().ensure(args.kernel)
    tcg = choose("qemu-system-x86_64").name == "tcg"
    load = os.getloadavg()[0]
    print(f"kernel {kernel.release}, accelerator {'tcg' if tcg else 'kvm'}, load average {load:.1f}")
    figures: dict[str, list[float]] = {"vng": [], "kmh cold": [], "kmh warm": []}
    vng_first: float | None = None
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="kmh-peers-") as tmp:
        ko = build_hello(kernel, Path(tmp))
        bin_dir, why_not = install_vng(Path(tmp) / "venv")
        if why_not:
            failures.append(why_not)
        kmh_cycle(kernel, ko, snapshot=True)  # kmh's snapshot of this configuration exists
        for round_ in range(args.rounds + 1):
            if bin_dir is not None:
                seconds, failed = vng_cycle(bin_dir, kernel, ko, tcg)
                if failed:
                    failures.append(failed)
                elif round_ == 0:
                    vng_first = seconds
                else:
                    figures["vng"].append(seconds)
            if round_ == 0:
                continue  # the first round only warms virtme-ng's caches
            figures["kmh cold"].append(kmh_cycle(kernel, ko, snapshot=False))
            figures["kmh warm"].append(kmh_cycle(kernel, ko, snapshot=True))
        shutil.rmtree(Path(tmp) / "venv", ignore_errors=True)
    print(f"{'cycle (boot+insmod+rmmod+poweroff)':36} {'median':>8} {'min':>8} {'max':>8}")
    for name, values in figures.items():
        if values:
            print(f"{name:36} {statistics.median(values):7.2f}s {min(values):7.2f}s {max(values):7.2f}s")
    if vng_first is not None:
        print(f"{'vng first run (cold caches)':36} {vng_first:7.2f}s")
    for failure in failures:
        print(f"virtme-ng failed: {failure}")
    if not figures["vng"]:
        print("virtme-ng could not run here (see above): no ratio")
        return 1
    vng = statistics.median(figures["vng"])
    warm, cold = statistics.median(figures["kmh warm"]), statistics.median(figures["kmh cold"])
    print(f"kmh warm is {vng / warm:.1f}x faster than virtme-ng per cycle (target >= 10x)")
    print(f"kmh cold is {vng / cold:.1f}x faster than virtme-ng per cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: lifecycle runs of 20 modules with a fresh VM per module vs shared VM boots.

Same run, same kernel, same generated modules; prints wall time and per-module time for both, and
the cold end-to-end time of the README's main job (``kmh run modules/hello.toml`` as a new
process: render, build, boot, verify, report). Each run's time is split into the batched kbuild
(one make for all modules, shown once) and the guest steps (load ... reload, per module), so a
change to either side shows where it landed. Targets from issue 16: 20 modules with shared boots
<= 5 s, the cold main job <= 1.5 s.

    .venv/bin/python bench/run.py [--kernel bookworm] [--count 20]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from harness.lifecycle.runner import Runner, make_plan
from harness.lifecycle.spec import spec_for_template

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = ("hello", "params", "misc", "procfs", "chardev")
GUEST_STEPS = ("load", "verify", "exercise", "unload", "cleanup", "reload")


def specs(count: int):  # type: ignore[no-untyped-def]
    return [spec_for_template(TEMPLATES[i % len(TEMPLATES)], name=f"bench_run_{i}") for i in range(count)]


def measure(label: str, count: int, kernel: str, *, isolate: bool) -> float:
    plan = make_plan(specs(count), [kernel])
    started = time.perf_counter()
    runs = Runner(isolate=isolate).execute(plan)
    elapsed = time.perf_counter() - started
    passed = sum(run.verdict == "pass" for run in runs)
    print(f"{label:<28} {elapsed:7.1f} s total  {elapsed / count:5.2f} s/module  ({passed}/{count} passed)")
    build = max((step.duration for run in runs for step in run.steps if step.name == "build"), default=0.0)
    guest = sum(step.duration for run in runs for step in run.steps if step.name in GUEST_STEPS)
    print(f"{'':<28} {build:7.1f} s batched build, {guest / count * 1000:5.0f} ms guest steps/module")
    return elapsed


def main_job(kernel: str, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "harness.cli", "run", "modules/hello.toml", "--kernel", kernel],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
        times.append(time.perf_counter() - started)
    median = statistics.median(times)
    print(
        f"{'kmh run modules/hello.toml':<28} {median:7.2f} s median of {repeat} (cold; target <= 1.5 s)"
    )
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kernel", default="bookworm")
    parser.add_argument("--count", type=int, default=20)
    args = parser.parse_args()
    main_job(args.kernel)
    shared = measure("shared VM boots", args.count, args.kernel, isolate=False)
    fresh = measure("one VM per module", args.count, args.kernel, isolate=True)
    print(f"sharing boots is {fresh / shared:.1f}x faster (target: 20 modules <= 5 s)")


if __name__ == "__main__":
    main()

"""Benchmark: 20 rendered modules built with one kbuild per module vs one batched kbuild, then
incremental rebuilds against plain ``make``.

Both variants build the same sources from scratch (fresh build directories) against the same
kernel target, in the same run, so the ratio is meaningful on a busy machine too. Then: a no-op
rebuild of all 20 with kmh against plain make's no-op rerun over the same 20 directories
(target: within 2x), and a one-file change in one of the 20, for both.

    .venv/bin/python bench/build.py [--kernel bookworm] [--count 20]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from harness.buildenv import command_for
from harness.kbuild import build_modules
from harness.kernels.store import KernelStore
from harness.kernels.target import KernelTarget
from harness.templates import write_module

TEMPLATES = ("hello", "params", "chardev", "misc", "procfs")


def render(count: int, root: Path) -> list[Path]:
    directories = []
    for index in range(count):
        template = TEMPLATES[index % len(TEMPLATES)]
        source = write_module(template, f"bench_{template}_{index}", root / f"m{index}")
        directories.append(source.directory)
    return directories


def timed(label: str, action) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    results = action()
    elapsed = time.perf_counter() - started
    built = sum(1 for result in results if result.ok)
    print(f"{label:<34} {elapsed:7.2f} s   ({built} modules built)")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kernel", default="bookworm")
    parser.add_argument("--count", type=int, default=20)
    args = parser.parse_args()
    kernel = KernelStore().ensure(args.kernel)
    with tempfile.TemporaryDirectory(prefix="kmh-bench-") as tmp:
        root = Path(tmp)
        sources = render(args.count, root / "src")
        print(f"kernel {kernel.release}, {args.count} rendered modules")
        separate = timed(
            "one make per module",
            lambda: [r for s in sources for r in build_modules([s], kernel, build_root=root / "separate")],
        )
        batched = timed(
            "one batched make for all", lambda: build_modules(sources, kernel, build_root=root / "batched")
        )
        print(f"batched is {separate / batched:.1f}x faster (target >= 3x)")
        incremental(kernel, sources, root)


def incremental(kernel: KernelTarget, sources: list[Path], root: Path) -> None:
    """No-op and one-file rebuilds: kmh (stable copies, same build root as the batched build)
    against plain make over one directory holding the same 20 module directories."""
    plain = root / "plain"
    for source in sources:
        shutil.copytree(source, plain / source.name)
    (plain / "Kbuild").write_text(f"obj-y += {' '.join(f'{s.name}/' for s in sources)}\n")
    argv, _ = command_for(
        kernel,
        ["make", f"-j{os.cpu_count() or 1}", "-C", str(kernel.kbuild_dir), f"M={plain}", "modules"],
        writable=[plain],
    )

    def make() -> float:
        started = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        return time.perf_counter() - started

    make()
    hit = timed(
        "kmh: build cache hit (no make)", lambda: build_modules(sources, kernel, build_root=root / "batched")
    )
    # The figures below are kbuild's own incremental builds, which a cache miss runs.
    os.environ["KMH_BUILD_CACHE"] = "off"
    kmh_noop = timed(
        "kmh: no-op rebuild (cache off)", lambda: build_modules(sources, kernel, build_root=root / "batched")
    )
    print(f"a cache hit is {hit / make():.2f}x plain make's no-op rerun")
    plain_noop = make()
    print(f"{'plain make: no-op rerun':<34} {plain_noop:7.2f} s")
    print(f"kmh no-op rebuild is {kmh_noop / plain_noop:.2f}x plain make's (target <= 2x)")
    changed = sources[len(sources) // 2]
    for tree in (changed, plain / changed.name):
        for source_file in tree.glob("*.c"):
            source_file.write_text(source_file.read_text() + "/* touched */\n")
            later = source_file.stat().st_mtime + 2
            os.utime(source_file, (later, later))
            break
    kmh_one = timed(
        "kmh: one file changed", lambda: build_modules(sources, kernel, build_root=root / "batched")
    )
    plain_one = make()
    print(f"{'plain make: one file changed':<34} {plain_one:7.2f} s")
    print(f"kmh one-file rebuild is {kmh_one / plain_one:.2f}x plain make's")


if __name__ == "__main__":
    main()

"""Benchmark: 20 rendered modules built with one kbuild per module vs one batched kbuild.

Both variants build the same sources from scratch (fresh build directories) against the same
kernel target, in the same run, so the ratio is meaningful on a busy machine too.

    .venv/bin/python bench/build.py [--kernel bookworm] [--count 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from harness.kbuild import build_modules
from harness.kernels.store import KernelStore
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


if __name__ == "__main__":
    main()

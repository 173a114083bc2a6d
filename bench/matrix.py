"""Benchmark: the kernel matrix. Build environments cold and warm, the templates' kbuild per
kernel in its environment (and on the host where both are possible), and every shipped spec on
five kernels with per-kernel times.

    .venv/bin/python bench/matrix.py [--cold sid] [--skip-specs]

"Cold" creates an environment from the archive into a scratch store (the cached ones are left
alone); "warm" is finding the cached one. The host comparison builds bookworm's 6.1 with the
host toolchain and in a bookworm environment (``KMH_BUILDENV=always``), the only kernel both
can build: trixie's and newer kbuild programs need a newer glibc than the host's.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

from harness.buildenv import EnvironmentStore, recipe_for
from harness.kbuild import build_modules
from harness.kernels.debian import resolve
from harness.kernels.store import KernelStore
from harness.lifecycle.runner import Runner, make_plan
from harness.lifecycle.spec import load_spec
from harness.paths import REPO_ROOT
from harness.templates import write_module

MATRIX = ("bullseye", "bookworm", "trixie", "trixie-backports", "sid")
TEMPLATES = {
    "b_hello": ("hello", {}),
    "b_params": ("params", {}),
    "b_chardev": ("chardev", {}),
    "b_misc": ("misc", {}),
    "b_procfs": ("procfs", {}),
    "b_exp": ("exporter", {}),
    "b_cons": ("consumer", {"exporter_prefix": "b_exp"}),
}


def render(root: Path) -> list[Path]:
    for name, (template, params) in TEMPLATES.items():
        write_module(template, name, root / name, params)
    return [root / name for name in TEMPLATES]


def kbuild(sources: list[Path], kernel, build_root: Path) -> tuple[float, str]:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    results = build_modules(sources, kernel, werror=True, build_root=build_root)
    elapsed = time.perf_counter() - started
    assert all(result.ok for result in results), [r.log[-500:] for r in results if not r.ok]
    return elapsed, results[0].environment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cold", nargs="*", default=["sid"], help="suites whose environment to create cold")
    parser.add_argument("--skip-specs", action="store_true", help="skip the shipped-spec matrix")
    args = parser.parse_args()
    store = KernelStore()
    kernels = {suite: store.ensure(suite) for suite in MATRIX}

    print("== build environments")
    with tempfile.TemporaryDirectory(prefix="kmh-bench-env-") as scratch:
        for suite in args.cold:
            recipe = recipe_for(kernels.get(suite) or store.ensure(suite))
            started = time.perf_counter()
            env = EnvironmentStore(Path(scratch)).ensure(recipe)
            print(
                f"cold {recipe.name:<22} {time.perf_counter() - started:7.1f} s  {env.size() / 1e6:6.0f} MB"
            )
    for suite, kernel in kernels.items():
        started = time.perf_counter()
        env = EnvironmentStore().for_kernel(kernel)
        name = env.name if env else "host"
        print(f"warm {suite:<18} {name:<22} {(time.perf_counter() - started) * 1000:7.1f} ms")

    print("== kbuild of the 7 templates (-Werror, fresh build directory, then again unchanged)")
    with tempfile.TemporaryDirectory(prefix="kmh-bench-kbuild-") as tmp:
        sources = render(Path(tmp) / "src")
        for suite, kernel in kernels.items():
            cold, environment = kbuild(sources, kernel, Path(tmp) / f"build-{suite}")
            warm, _ = kbuild(sources, kernel, Path(tmp) / f"build-{suite}")
            print(
                f"{suite:<18} {kernel.release:<22} in {environment:<20} {cold:6.1f} s  (again {warm:4.1f} s)"
            )
        bookworm = kernels["bookworm"]
        if not bookworm.toolchain:  # a target added before toolchains were recorded
            toolchain = resolve(store.archive, bookworm.release).toolchain
            bookworm = dataclasses.replace(bookworm, toolchain=toolchain)
        os.environ["KMH_BUILDENV"] = "always"
        try:
            started = time.perf_counter()
            env = EnvironmentStore().for_kernel(bookworm)
            print(f"(bookworm environment created in {time.perf_counter() - started:.1f} s, not counted)")
            assert env is not None
            elapsed, environment = kbuild(sources, bookworm, Path(tmp) / "build-bookworm-env")
        finally:
            del os.environ["KMH_BUILDENV"]
            EnvironmentStore().remove_unused(store.list())  # that bookworm environment is the bench's
        print(f"{'bookworm':<18} {kernels['bookworm'].release:<22} in {environment:<20} {elapsed:6.1f} s")

    if args.skip_specs:
        return
    print("== every shipped spec, per kernel (one Runner each, -j 1)")
    specs_files = sorted((REPO_ROOT / "modules").rglob("*.toml"))
    total = 0.0
    for suite, kernel in kernels.items():
        specs = [load_spec(path) for path in specs_files]
        started = time.perf_counter()
        runs = Runner(jobs=1).execute(make_plan(specs, [suite]))
        elapsed = time.perf_counter() - started
        total += elapsed
        verdicts = {}
        for run in runs:
            verdicts[run.verdict] = verdicts.get(run.verdict, 0) + 1
        print(f"{suite:<18} {kernel.release:<22} {elapsed:6.1f} s  {len(runs)} specs  {verdicts}")
    print(f"{'total':<41} {total:6.1f} s")


if __name__ == "__main__":
    main()

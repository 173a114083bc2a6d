"""Per-suite build environments for real: what each kernel needs, what is inside, and that a
half-made or impossible environment is never used."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time

import pytest

from harness.buildenv import HOST, EnvironmentStore, Recipe, recipe_for
from harness.buildenv.sandbox import wrap
from harness.kbuild import build_modules
from harness.kernels.store import KernelStore
from harness.kernels.target import KernelTarget
from harness.templates import write_module


@pytest.fixture(scope="module")
def trixie(kernel_store: KernelStore) -> KernelTarget:
    return kernel_store.ensure("trixie")


def test_each_suite_gets_its_own_compiler(kernel_61, kernel_store):
    assert recipe_for(kernel_61).name == HOST
    bullseye, trixie, backports, sid = (
        recipe_for(kernel_store.ensure(s)) for s in ("bullseye", "trixie", "trixie-backports", "sid")
    )
    assert "linux-compiler-gcc-10-x86" in bullseye.packages and "libssl1.1" in bullseye.packages
    assert "gcc-14" in trixie.packages and "libelf1t64" in trixie.packages
    assert "gcc-16" in sid.packages and sid.suites == ("sid",)
    # 7.3 from trixie-backports is built with trixie's gcc-14: one environment serves both.
    assert backports.name == trixie.name
    assert len({bullseye.name, trixie.name, sid.name}) == 3


def test_inside_there_is_the_suites_toolchain_and_no_network(trixie):
    env = EnvironmentStore().for_kernel(trixie)
    assert env is not None and env.release == "trixie"
    script = (
        "x86_64-linux-gnu-gcc-14 --version | head -1; cat /etc/debian_version; "
        "tail -n +3 /proc/net/dev | cut -d: -f1; "
        f"test -f {trixie.kbuild_dir}/Makefile && echo headers-visible; "
        "touch /usr/kmh-probe 2>/dev/null || echo read-only"
    )
    result = subprocess.run(
        wrap(env.root, ["sh", "-c", script], readonly=[trixie.root]), capture_output=True, text=True
    )
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert result.returncode == 0, result.stderr
    assert "(Debian 14." in lines[0]
    assert lines[1].startswith("13")
    assert lines[2:-2] == ["lo"]  # a network namespace of its own: loopback only
    assert lines[-2:] == ["headers-visible", "read-only"]


def test_a_killed_creation_is_never_used_and_is_cleaned_up(tmp_path):
    store_root = tmp_path / "envs"
    code = (
        "import sys; from pathlib import Path; from harness.buildenv import EnvironmentStore, Recipe;"
        f"EnvironmentStore(Path({str(store_root)!r})).ensure(Recipe('bullseye', ('bullseye',), ('make',)))"
    )
    creator = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    deadline = time.monotonic() + 120
    while not list(store_root.glob(".*.partial-*")) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2)  # mmdebstrap is now writing into the partial directory
    os.killpg(creator.pid, signal.SIGKILL)
    creator.wait()
    store = EnvironmentStore(store_root)
    assert list(store_root.glob(".*.partial-*")), "the creation was killed before it started"
    assert store.list() == []
    assert store.get(Recipe("bullseye", ("bullseye",), ("make",))) is None
    store.remove_unused([])
    assert not list(store_root.glob(".*.partial-*"))


def test_an_impossible_environment_fails_that_kernels_builds_only(tmp_path, kernel_61, trixie):
    broken = dataclasses.replace(trixie, toolchain=(*trixie.toolchain, "kmh-no-such-package"))
    write_module("hello", "env_hello", tmp_path / "hello", {})
    (failed,) = build_modules([tmp_path / "hello"], broken, build_root=tmp_path / "build")
    assert not failed.ok
    assert "no build environment for" in failed.log
    assert "cannot create the trixie build environment" in failed.log and "kmh-no-such-package" in failed.log
    (fine,) = build_modules([tmp_path / "hello"], kernel_61, build_root=tmp_path / "build")
    assert fine.ok and fine.environment == HOST
    assert not [p for p in EnvironmentStore().root.iterdir() if "partial" in p.name]


def test_kernel_list_shows_environments_and_sizes(trixie, kernel_61):
    result = subprocess.run(
        [sys.executable, "-m", "harness.cli", "kernel", "list"], capture_output=True, text=True, check=True
    )
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:]}
    assert result.stdout.split()[:7] == ["RELEASE", "VERSION", "SUITE", "FLAVOUR", "SIZE", "BUILD", "ENV"]
    trixie_row = rows[trixie.release]
    assert recipe_for(trixie).name in trixie_row and trixie_row.count("MB") == 2
    assert HOST in rows[kernel_61.release]


def test_environments_no_kernel_uses_are_removed(tmp_path, trixie, kernel_61):
    store = EnvironmentStore(tmp_path / "envs")
    used, unused = recipe_for(trixie), Recipe("bullseye", ("bullseye",), ("make",))
    for recipe in (used, unused):
        root = tmp_path / "envs" / recipe.name
        (root / "usr").mkdir(parents=True)
        (root / "kmh-environment.json").write_text(
            f'{{"name": "{recipe.name}", "release": "{recipe.release}", "suites": [], "packages": []}}'
        )
    (tmp_path / "envs" / f".{unused.name}.partial-1").mkdir()
    removed = store.remove_unused([trixie, kernel_61])
    assert [env.name for env in removed] == [unused.name]
    assert [env.name for env in store.list()] == [used.name]
    assert sorted(p.name for p in (tmp_path / "envs").iterdir()) == [".lock", used.name]

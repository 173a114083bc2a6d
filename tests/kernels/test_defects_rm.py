"""Issue 13 regression: ``kmh kernel rm`` while a run uses that kernel.

The rm used to succeed and the run then blamed the module for the vanished kernel. Every process
that uses a target now holds a shared lock on it for its lifetime and rm takes it exclusively, so
rm refuses with a clear line while the target is in use; once it succeeds, the target's guest
images, snapshots and build copies in the cache go with it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.kernels.target import KernelTarget

KMH = str(Path(sys.executable).parent / "kmh")

HOLDER = """
import sys
from harness.kernels.store import KernelStore
KernelStore().get(sys.argv[1])
print("held", flush=True)
sys.stdin.read()
"""


def kmh(cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KMH_CACHE": str(cache)}
    return subprocess.run([KMH, *args], capture_output=True, text=True, timeout=120, env=env)


def copy_target(real: KernelTarget, cache: Path) -> Path:
    """A private copy of a real target (hard links: instant, and rm of it leaves the original)."""
    root = cache / "kernels" / real.release
    root.parent.mkdir(parents=True)
    subprocess.run(["cp", "-al", str(real.root), str(root)], check=True)
    metadata = root / KernelTarget.METADATA
    metadata.unlink()  # a file of its own, not a link to the shared store's
    shutil.copy(real.root / KernelTarget.METADATA, metadata)
    return root


def derived_dirs(cache: Path, release: str) -> list[Path]:
    return [
        cache / "images" / release / "snapshots",
        cache / "build" / release,
        cache / "guest-build" / release,
    ]


def test_rm_refuses_while_another_process_uses_the_target(tmp_path: Path, kernel_61: KernelTarget) -> None:
    cache = tmp_path / "cache"
    root = copy_target(kernel_61, cache)
    for directory in derived_dirs(cache, kernel_61.release):
        directory.mkdir(parents=True)
        (directory / "layer").write_text("x")
    env = {**os.environ, "KMH_CACHE": str(cache)}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, "bookworm"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        refused = kmh(cache, "kernel", "rm", kernel_61.release)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        (line,) = refused.stderr.strip().splitlines()
        assert "in use" in line and kernel_61.release in line
        assert (root / KernelTarget.METADATA).is_file()
    finally:
        holder.communicate("", timeout=30)
    removed = kmh(cache, "kernel", "rm", "bookworm")
    assert removed.returncode == 0, removed.stderr
    assert not root.exists()
    assert not (cache / "images" / kernel_61.release).exists()
    assert [d for d in derived_dirs(cache, kernel_61.release) if d.exists()] == []
    assert kernel_61.vmlinux.is_file(), "the shared store's target is untouched"


@pytest.mark.vm
def test_rm_during_a_real_run_is_refused_and_the_run_passes(tmp_path: Path, kernel_61: KernelTarget) -> None:
    cache = tmp_path / "cache"
    root = copy_target(kernel_61, cache)
    lock = cache / "kernels" / ".locks" / f"{kernel_61.release}.lock"
    report = tmp_path / "run.json"
    env = {**os.environ, "KMH_CACHE": str(cache)}
    run = subprocess.Popen(
        [KMH, "run", "--template", "hello", "--kernel", kernel_61.release, "--json", str(report)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 120
        while not _held_by_someone(lock):
            assert run.poll() is None, run.communicate()
            assert time.monotonic() < deadline, "the run never took the kernel's lock"
            time.sleep(0.1)
        refused = kmh(cache, "kernel", "rm", kernel_61.release)
        assert refused.returncode == 2 and "in use" in refused.stderr, refused.stderr
    finally:
        out, err = run.communicate(timeout=900)
    assert run.returncode == 0, out + err
    assert json.loads(report.read_text())["runs"][0]["verdict"] == "pass"
    assert (cache / "images" / kernel_61.release).is_dir(), "the run made guest images"
    assert kmh(cache, "kernel", "rm", kernel_61.release).returncode == 0
    assert not root.exists() and not (cache / "images" / kernel_61.release).exists()


def _held_by_someone(lock: Path) -> bool:
    if not lock.exists():
        return False
    with lock.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False

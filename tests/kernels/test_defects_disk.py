"""Issue 13 regressions: ``kmh kernel add`` on a (nearly) full disk, and apt that never answers.

A nearly full disk made apt retry its downloads into ENOSPC (and, on the reporting machine, hang
until killed); a full disk during unpacking gave a screen of tar errors or a traceback. Now every
external command has a time limit and running out of space is one line, found before downloading
when the archive's sizes say it cannot fit. The disks here are real small tmpfs mounts used as
``KMH_CACHE``, holding copies of the store's own package lists (and .debs), so no test downloads.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.kernels import apt
from harness.kernels.apt import AptArchive
from harness.kernels.store import KernelStore
from harness.kernels.target import KernelTarget
from harness.kernels.unpack import extract_vmlinux, unpack_debs

KMH = str(Path(sys.executable).parent / "kmh")
MIB = 1024 * 1024


def mount_tmpfs(path: Path, size_bytes: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(path)], check=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    yield mount
    if os.path.ismount(mount):
        subprocess.run(["umount", "-l", str(mount)], check=True)


def target_debs(kernel: KernelTarget) -> list[Path]:
    """The store's downloaded .debs the target was made from."""
    archives = KernelStore().archive.archives_dir
    quoted = kernel.version.replace(":", "%3a")
    debs = [path for name in kernel.packages for path in archives.glob(f"{name}_{quoted}_*.deb")]
    if len(debs) != len(kernel.packages):
        # The store only keeps what it downloaded; fetch the missing ones once (the real store).
        debs = KernelStore().archive.view("bookworm").download([(n, kernel.version) for n in kernel.packages])
    return debs


def seed_cache(cache: Path, debs: list[Path]) -> None:
    """A cache with fresh copies of the store's bookworm package lists (so no apt update) and DEBS."""
    source = KernelStore().archive.view("bookworm")
    source.update()  # the lists exist (and are fresh) in the real store
    state = cache / "apt" / "views" / "bookworm"
    state.mkdir(parents=True)
    shutil.copytree(source.lists_dir, state / "lists")
    for name in ("sources.list", "status"):
        shutil.copy2(source.state_dir / name, state / name)
    (state / "updated").touch()
    archives = cache / "apt" / "archives"
    archives.mkdir()
    for deb in debs:
        shutil.copy2(deb, archives / deb.name)


def used_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def kernel_add(cache: Path, spec: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KMH_CACHE": str(cache)}
    return subprocess.run([KMH, "kernel", "add", spec], capture_output=True, text=True, timeout=300, env=env)


def assert_one_line_out_of_space(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "tar:" not in result.stderr, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("kmh: error:")]
    assert len(errors) == 1 and result.stderr.rstrip().endswith(errors[0]), result.stderr[-2000:]
    assert "space" in errors[0], errors[0]
    return errors[0]


def test_add_with_no_room_to_download_says_so_before_downloading(small_disk: Path, kernel_61) -> None:
    mount_tmpfs(small_disk, 64 * MIB)
    seed_cache(small_disk, [])
    started = time.monotonic()
    result = kernel_add(small_disk, "bookworm")
    line = assert_one_line_out_of_space(result)
    assert str(small_disk) in line
    assert time.monotonic() - started < 60
    leftovers = list((small_disk / "apt" / "archives").rglob("*.deb*"))
    assert leftovers == [], "nothing was downloaded into the full disk"


def test_add_with_no_room_to_unpack_is_one_line_and_leaves_nothing(small_disk: Path, kernel_61) -> None:
    debs = target_debs(kernel_61)
    size = sum(deb.stat().st_size for deb in debs) + 64 * MIB
    mount_tmpfs(small_disk, size)
    seed_cache(small_disk, debs)
    result = kernel_add(small_disk, "bookworm")
    assert_one_line_out_of_space(result)
    assert [p.name for p in (small_disk / "kernels").iterdir() if p.name != ".lock"] == []


def test_unpacking_into_a_full_disk_is_one_line(small_disk: Path, kernel_61) -> None:
    mount_tmpfs(small_disk, 16 * MIB)
    image = next(deb for deb in target_debs(kernel_61) if deb.name.startswith("linux-image-"))
    with pytest.raises(HarnessError) as caught:
        unpack_debs([image], small_disk)
    assert "space" in caught.value.message and "\n" not in caught.value.message


def test_extracting_vmlinux_into_a_full_disk_is_one_line(small_disk: Path, kernel_61) -> None:
    mount_tmpfs(small_disk, 8 * MIB)
    with pytest.raises(HarnessError) as caught:
        extract_vmlinux(kernel_61.vmlinuz, small_disk / "vmlinux")
    assert "space" in caught.value.message and "\n" not in caught.value.message
    assert list(small_disk.iterdir()) == [], "the partial file is removed"


@pytest.fixture
def silent_mirror() -> Iterator[str]:
    """An HTTP 'mirror' on 127.0.0.1 that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/debian"
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    server.close()


def test_apt_that_never_answers_is_stopped_by_a_time_limit(
    tmp_path: Path, silent_mirror: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KMH_DEBIAN_MIRROR", silent_mirror)
    monkeypatch.setenv("KMH_DEBIAN_SECURITY_MIRROR", silent_mirror + "-security")
    monkeypatch.setattr(apt, "UPDATE_TIMEOUT", 4.0)
    archive = AptArchive(tmp_path / "apt", apt.SUITE_GROUPS["bookworm"])
    started = time.monotonic()
    with pytest.raises(HarnessError, match="did not finish within 4 s"):
        archive.update(force=True)
    assert time.monotonic() - started < 30


def test_the_archive_knows_every_package_size_in_one_query(kernel_61: KernelTarget) -> None:
    wanted = [(name, kernel_61.version) for name in kernel_61.packages]
    sizes = KernelStore().archive.view("bookworm").sizes(wanted)
    assert set(sizes) == set(wanted)
    download, unpacked = sizes[(f"linux-image-{kernel_61.release}", kernel_61.version)]
    assert 10 * MIB < download < unpacked

"""Issue 13 regression: report paths are checked before a run, never created at ``/``.

A ``--junit`` path under a regular file used to give a traceback after every module had run (and
the JSON and KTAP were never written); missing parents were created at any depth, even at ``/``.
The CLI cases run the real ``kmh`` script; the unwritable case is a real read-only tmpfs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.report.destinations import check_report_paths

KMH = str(Path(sys.executable).parent / "kmh")


def kmh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KMH, *args], capture_output=True, text=True, timeout=600)


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory on a read-only file system: unwritable even for root."""
    mount = tmp_path / "ro"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def bad_paths(tmp_path: Path, read_only: Path) -> dict[str, tuple[str, str]]:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    return {
        "under a file": (str(a_file / "report.xml"), "is not a directory"),
        "two under a file": (str(a_file / "sub" / "report.xml"), "is not a directory"),
        "a directory": (str(tmp_path), "is a directory"),
        "two levels missing": (str(tmp_path / "no" / "such" / "report.xml"), "does not exist"),
        "new directory at /": (f"/kmh-absent-{uuid.uuid4().hex}/report.xml", "does not exist"),
        "read-only": (str(read_only / "report.xml"), "cannot write"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "under a file",
        "two under a file",
        "a directory",
        "two levels missing",
        "new directory at /",
        "read-only",
    ],
)
def test_bad_report_paths_are_refused_before_the_plan(tmp_path: Path, read_only_dir: Path, case: str) -> None:
    path, message = bad_paths(tmp_path, read_only_dir)[case]
    ktap = tmp_path / "ok.ktap"
    result = kmh("run", "--template", "hello", "--ktap", str(ktap), "--junit", path, "--dry-run")
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--junit" in lines[0] and message in lines[0], result.stderr
    assert not Path(path).parent.exists() or Path(path).parent.is_dir() or case.endswith("file")
    if case == "new directory at /":
        assert not Path(path).parent.exists(), "nothing is created at /"


def test_a_bad_path_stops_a_real_run_before_anything_is_built(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    started = time.monotonic()
    result = kmh(
        "run", "--template", "hello", "--junit", str(blocker / "r.xml"), "--json", str(tmp_path / "r.json")
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "[1/1]" not in result.stderr
    assert time.monotonic() - started < 30, "refused before the build and the VM"
    assert not (tmp_path / "r.json").exists()


def test_one_missing_level_is_created_and_existing_files_are_fine(tmp_path: Path) -> None:
    existing = tmp_path / "old.json"
    existing.write_text("{}")
    chosen = check_report_paths(
        {"--junit": str(tmp_path / "out" / "r.xml"), "--json": str(existing), "--ktap": None}
    )
    assert (tmp_path / "out").is_dir()
    assert chosen == {"--junit": tmp_path / "out" / "r.xml", "--json": existing}
    assert existing.read_text() == "{}", "checking does not truncate"
    assert [p.name for p in (tmp_path / "out").iterdir()] == [], "the probe file is removed"


def test_two_reports_on_one_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="same file as --junit"):
        check_report_paths({"--junit": str(tmp_path / "r"), "--json": str(tmp_path / "r")})


def test_fifos_are_refused_and_dev_null_is_fine(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(HarnessError, match="not a regular file"):
        check_report_paths({"--ktap": str(fifo)})
    assert check_report_paths({"--ktap": "/dev/null"}) == {"--ktap": Path("/dev/null")}

"""Issue 13 regressions: what a module directory may hold, and one directory named twice.

A symlink to ``/dev/zero`` in a module directory filled the disk while its sources were copied
(then a traceback); a FIFO gave a traceback; the same directory given twice to ``kmh build`` was
built twice in one kbuild run, racing itself (``fixdep: error opening file``). The copy runs into
a small real tmpfs here, so a regression fails fast instead of filling the machine's disk.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.kbuild import build_modules
from tests.kbuild.test_kbuild import HELLO, write_module

pytestmark = pytest.mark.kbuild

KMH = str(Path(sys.executable).parent / "kmh")


@pytest.fixture
def small_build_root(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs as the build root: endless copies hit its end in milliseconds."""
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


@pytest.mark.parametrize(
    ("make_entry", "named", "what"),
    [
        (lambda d: (d / "zero.h").symlink_to("/dev/zero"), "zero.h", "not a regular file"),
        (lambda d: os.mkfifo(d / "pipe"), "pipe", "FIFO"),
        (lambda d: (d / "passwd.h").symlink_to("/etc/passwd"), "passwd.h", "outside"),
        (lambda d: (d / "dangling.h").symlink_to(d / "absent"), "dangling.h", "dangling"),
        (lambda d: (d / "sub").symlink_to("/usr/include"), "sub", "directory"),
    ],
    ids=["symlink-dev-zero", "fifo", "symlink-outside", "dangling-symlink", "symlinked-directory"],
)
def test_special_files_are_refused_by_name(tmp_path, kernel_61, small_build_root, make_entry, named, what):
    source = write_module(tmp_path / "mod", "special", HELLO.format(name="special"))
    make_entry(source)
    with pytest.raises(HarnessError) as caught:
        build_modules([source], kernel_61, build_root=small_build_root)
    message = caught.value.message
    assert named in message and what in message and str(source) in message, message
    assert "\n" not in message


def test_symlink_to_a_file_inside_the_tree_is_followed(tmp_path, kernel_61):
    source = write_module(tmp_path / "mod", "linked", HELLO.format(name="linked") + '#include "alias.h"\n')
    (source / "real.h").write_text("#define LINKED_OK 1\n")
    (source / "alias.h").symlink_to("real.h")
    (result,) = build_modules([source], kernel_61, build_root=tmp_path / "out")
    assert result.ok, result.log
    copied = result.build_dir / "alias.h"
    assert copied.is_file() and not copied.is_symlink()


def test_kmh_build_with_a_fifo_is_one_line_exit_2(tmp_path):
    source = write_module(tmp_path / "mod", "fifo_mod", HELLO.format(name="fifo_mod"))
    os.mkfifo(source / "pipe")
    result = subprocess.run([KMH, "build", str(source)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "pipe" in line and "FIFO" in line


def test_the_same_directory_twice_is_built_once_and_reported_for_both(tmp_path, kernel_61):
    source = write_module(tmp_path / "twice", "twice", HELLO.format(name="twice"))
    alias = tmp_path / "alias"
    alias.symlink_to(source)
    results = build_modules([source, source, alias], kernel_61, build_root=tmp_path / "out")
    assert len(results) == 3
    # One build for all three names: a second umbrella entry for the same copy is what raced.
    assert results[0] is results[1] is results[2]
    assert all(result.ok for result in results), results[0].log
    assert len({result.modules[0].path for result in results}) == 1
    compiled = [line for line in results[0].log.splitlines() if "CC [M]" in line and "twice.o" in line]
    assert len(compiled) == 1, compiled
    assert "fixdep" not in results[0].log

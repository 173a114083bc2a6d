"""Debian's own DKMS packages built with kmh against 6.1 and 6.12, each against plain make.

Plain make is the package's build as a user runs it by hand on the same headers: its MAKE[0]
command line (``make KERNEL_DIR=... v4l2loopback``, ``make -C <headers> M=<dir>``...) in a fresh
copy at the path dkms.conf names, the headers at /lib/modules/<release>/build as installed
headers are (a bubblewrap mount namespace puts them there), no kmh. kmh must build every module
plain make builds, and fail (with a result, not a traceback) where plain make fails."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from harness.dkms import build_dkms, read_dkms_conf
from harness.kernels.target import KernelTarget
from tests.dkms.conftest import PACKAGES

pytestmark = pytest.mark.kbuild


def plain_make(tree: Path, kernel: KernelTarget, workdir: Path) -> set[str]:
    """The declared modules the package's own MAKE[0] builds in a plain copy of TREE."""
    dkms_tree = workdir / "plain"
    conf = read_dkms_conf(tree, kernel, dkms_tree)
    copy = dkms_tree / conf.package / conf.version / "build"
    shutil.copytree(tree, copy, symlinks=True)
    # As on a machine with the headers installed: /lib/modules/<release>/build is them.
    headers = [
        "--tmpfs",
        "/usr/lib/modules",
        "--symlink",
        str(kernel.kbuild_dir),
        f"/usr/lib/modules/{kernel.release}/build",
    ]
    argv = ["bwrap", "--dev-bind", "/", "/", *headers, "--chdir", str(copy), "bash", "-c", conf.make]
    subprocess.run(argv, capture_output=True, check=False, timeout=900)
    return {ko.stem for ko in copy.rglob("*.ko")} & {module.name for module in conf.modules}


@pytest.mark.parametrize("package", PACKAGES)
def test_kmh_builds_what_plain_make_builds(package, dkms_trees, kernel, tmp_path):
    tree = dkms_trees[package]
    built = build_dkms(tree, kernel, dkms_tree=tmp_path / "dkms")
    assert not built.skipped, built.skipped
    declared = [module.name for module in built.conf.modules]
    by_plain = plain_make(tree, kernel, tmp_path)
    by_kmh = {name for name, result in built.results.items() if result.modules}
    assert by_plain <= by_kmh, (package, kernel.release, by_plain, by_kmh, built.log[-3000:])
    assert built.ok == (by_plain == set(declared))
    for result in built.results.values():
        for module in result.modules:
            assert module.path.is_file() and module.path.suffix == ".ko"

"""Bad input to the debug kernel and --tree paths: one clear line, nothing half-made in the store."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness.debugkernel import build as debug_build
from harness.debugkernel.config import missing_options, read_config
from harness.debugkernel.tree import check_tree
from harness.errors import HarnessError
from harness.kernels.apt import DebianArchive
from harness.paths import REPO_ROOT


def _kmh(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "harness.cli", *args]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)


def test_tree_that_was_never_built_names_what_is_missing(tmp_path):
    (tmp_path / ".config").write_text("CONFIG_MODULES=y\n")
    result = _kmh("kernel", "add", "--tree", str(tmp_path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "Module.symvers" in lines[0] and "kernel image" in lines[0] and ".config" not in lines[0]


def test_tree_without_symvers_only(tmp_path):
    (tmp_path / ".config").write_text("CONFIG_MODULES=y\nCONFIG_PVH=y\n")
    (tmp_path / "vmlinux").write_bytes(b"\x7fELF")
    (tmp_path / "include" / "config").mkdir(parents=True)
    (tmp_path / "include" / "config" / "kernel.release").write_text("6.1.0-mine\n")
    with pytest.raises(HarnessError, match=r"is missing Module\.symvers \(run 'make modules' in the tree\)$"):
        check_tree(tmp_path)


def test_tree_without_modules_support(tmp_path):
    (tmp_path / ".config").write_text("# CONFIG_MODULES is not set\nCONFIG_PVH=y\n")
    (tmp_path / "Module.symvers").write_text("")
    (tmp_path / "vmlinux").write_bytes(b"\x7fELF")
    (tmp_path / "include" / "config").mkdir(parents=True)
    (tmp_path / "include" / "config" / "kernel.release").write_text("6.1.0-mine\n")
    with pytest.raises(HarnessError, match="CONFIG_MODULES is not set"):
        check_tree(tmp_path)


def test_spec_and_tree_together_are_refused(tmp_path):
    result = _kmh("kernel", "add", "bookworm", "--tree", str(tmp_path))
    assert result.returncode == 2 and "either SPEC or --tree" in result.stderr


def test_suite_without_a_debug_recipe(tmp_path):
    with pytest.raises(HarnessError, match="no debug kernel recipe for suite 'bookworm-backports'"):
        debug_build.build_debug_target(tmp_path, DebianArchive(tmp_path / "apt"), "bookworm-backports")


def test_debug_spec_without_a_suite_is_one_line():
    result = _kmh("kernel", "add", "6.1.0-56-amd64:debug")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_failed_build_leaves_nothing_behind(tmp_path, monkeypatch, kernel_61):
    """The build is killed (here: make fails) after the source was unpacked: no target, no staging."""
    from harness.kernels.store import KernelStore

    store = KernelStore()
    calls = []

    def broken_make(self, tree, goals, **_kwargs):
        calls.append(goals)
        raise HarnessError("building the debug kernel failed: No space left on device")

    def fake_unpack(deb, staging, release, progress):
        tree = staging / "usr" / "src" / f"linux-headers-{release}"
        tree.mkdir(parents=True)
        (tree / "Makefile").write_text("# a source tree\n")
        return tree

    monkeypatch.setattr(debug_build, "_unpack_source", fake_unpack)
    monkeypatch.setattr(debug_build, "_configure", lambda builder, tree, progress: None)
    monkeypatch.setattr(debug_build.Builder, "make", broken_make)
    root = tmp_path / "kernels"
    root.mkdir()
    with pytest.raises(HarnessError, match="No space left on device"):
        debug_build.build_debug_target(root, store.archive, "bookworm", progress=None)
    assert calls == [["bzImage", "modules"]]
    assert [p.name for p in root.iterdir() if not p.name.endswith(".lock")] == []


def test_config_check_names_lost_options():
    assert missing_options({"MODULES": "y"})[:2] == ["MODULE_UNLOAD", "MODVERSIONS"]


def test_read_config_of_a_stock_kernel_has_no_debug_features(kernel_61):
    config = read_config(kernel_61.config)
    assert config["MODULES"] == "y" and "KASAN" not in config and "DEBUG_KMEMLEAK" not in config


@pytest.mark.vm
def test_inject_faults_on_a_stock_kernel_is_one_skipped_line(kernel_61, tmp_path):
    """``kmh run --inject-faults`` on Debian's kernel: the module's cycle passes, the sweep is
    skipped naming the options the kernel lacks, in the terminal and the JSON report alike."""
    report = tmp_path / "run.json"
    spec = "modules/hello.toml"
    result = _kmh("run", "--inject-faults", spec, "--kernel", "bookworm", "--json", str(report))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    line = "faults: skip: fault injection needs CONFIG_FAULT_INJECTION, CONFIG_FAILSLAB"
    assert line in result.stdout
    steps = json.loads(report.read_text())["runs"][0]["steps"]
    assert [(s["name"], s["status"]) for s in steps][-1] == ("faults", "skip")

"""Issue 13 regression: a module named like a built-in of the kernel (``kmh new hello printk``).

``kmh check`` said loadable, but the guest refused it: the kernel made ``/sys/module/printk`` at
boot for the built-in printk code's parameters, and a module whose name is already there is
refused (``-EINVAL``, "module is already loaded"). The names come from the target's own vmlinux
(its ``__param`` and ``__modver`` tables), modules.builtin and module tree, never from a list.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.elf import check_loadable
from harness.elf.builtin import builtin_module_names, sysfs_builtin_names
from harness.kbuild import build_modules
from harness.kernels.target import KernelTarget

KMH = str(Path(sys.executable).parent / "kmh")


def kmh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KMH, *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def named_modules(kernel_61: KernelTarget, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """hello rendered as printk (a built-in with parameters), bitrev (a built-in without any),
    dummy (a module of the tree) and kmh_plain, built for 6.1 with real kbuild."""
    root = tmp_path_factory.mktemp("names")
    directories = []
    for name in ("printk", "bitrev", "dummy", "kmh_plain"):
        result = kmh("new", "hello", name, "-o", str(root / name))
        assert result.returncode == 0, result.stderr
        directories.append(root / name)
    results = build_modules(directories, kernel_61, build_root=root / "out")
    assert all(r.ok for r in results), results[0].log
    return {r.modules[0].name: r.modules[0].path for r in results}


def test_the_targets_sysfs_names_come_from_vmlinux(kernel: KernelTarget) -> None:
    names = sysfs_builtin_names(kernel)
    assert {"printk", "kernel", "sysrq", "workqueue"} <= names
    assert "bitrev" not in names and "kmh_hello" not in names
    assert "bitrev" in builtin_module_names(kernel)


def test_a_module_named_like_a_builtin_with_sysfs_is_not_loadable(named_modules, kernel_61) -> None:
    result = check_loadable(named_modules["printk"], kernel_61)
    assert not result.loadable
    (reason,) = result.reasons
    assert reason.kind == "name-taken" and "/sys/module/printk" in reason.message


def test_cli_check_says_not_loadable(named_modules) -> None:
    result = kmh("check", str(named_modules["printk"]), "--kernel", "bookworm")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "NOT loadable" in result.stdout and "name-taken" in result.stdout


def test_names_of_other_builtins_and_tree_modules_are_notes(named_modules, kernel_61) -> None:
    bitrev = check_loadable(named_modules["bitrev"], kernel_61)
    assert bitrev.loadable and any("built-in" in note and "modprobe" in note for note in bitrev.notes)
    dummy = check_loadable(named_modules["dummy"], kernel_61)
    assert dummy.loadable and any("drivers/net/dummy.ko" in note for note in dummy.notes), dummy.notes
    plain = check_loadable(named_modules["kmh_plain"], kernel_61)
    assert plain.loadable and plain.notes == ()


def test_new_with_a_kernel_refuses_a_taken_name(tmp_path: Path, kernel_61) -> None:
    result = kmh("new", "hello", "printk", "--kernel", "bookworm", "-o", str(tmp_path / "p"))
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "printk" in line and kernel_61.release in line
    assert not (tmp_path / "p").exists()
    assert kmh("new", "hello", "kmh_free", "--kernel", "bookworm", "-o", str(tmp_path / "f")).returncode == 0


@pytest.mark.vm
def test_the_guest_agrees(named_modules) -> None:
    """The rule is the kernel's: printk is refused in a real guest, bitrev and dummy load."""
    puts = [arg for name in ("printk", "bitrev", "dummy") for arg in ("--put", str(named_modules[name]))]
    script = "for m in printk bitrev dummy; do /sbin/insmod $m.ko; echo $m=$?; done"
    result = kmh("vm", "run", "--kernel", "bookworm", *puts, "--", "sh", "-c", script)
    codes = dict(line.split("=") for line in result.stdout.split() if "=" in line)
    assert codes["bitrev"] == "0" and codes["dummy"] == "0", result.stdout + result.stderr
    assert codes["printk"] != "0"

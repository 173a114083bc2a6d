"""``kmh doctor`` on this host, and on the same host with tools hidden from PATH.

Hiding is done the way a user's machine lacks a tool: a PATH made of links to every program of
the system's bin directories except the hidden ones, given to a real ``kmh`` subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.doctor import Finding, diagnose, install_lines

SYSTEM_BIN = ("/usr/local/bin", "/usr/bin", "/bin", "/usr/local/sbin", "/usr/sbin", "/sbin")


def kmh(*args: str, path: str | None = None, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, **extra_env)
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, env=env, timeout=300
    )


def path_without(tmp_path: Path, *hidden: str, replace: dict[str, str] | None = None) -> str:
    """A one-directory PATH with every system program except HIDDEN (and REPLACE's substitutes)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, target in (replace or {}).items():
        (bin_dir / name).symlink_to(target)
    for directory in SYSTEM_BIN:
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            link = bin_dir / entry.name
            if entry.name not in hidden and not link.is_symlink():
                link.symlink_to(entry.path)
    return str(bin_dir)


def test_this_host_has_everything_required():
    result = kmh("doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[0].split() == ["FEATURE", "CHECK", "STATUS", "DETAIL"]
    for name in ("make", "pahole", "qemu-system-x86_64", "busybox (static)", "libc.a (static agent)", "KVM"):
        assert f" {name} " in result.stdout, name
    assert "Everything kmh run needs is here." in result.stdout
    required = [f for f in diagnose() if not f.advisory]
    assert required and all(f.ok for f in required), [f for f in required if not f.ok]


def test_hidden_tools_are_named_with_their_install_line(tmp_path):
    result = kmh("doctor", path=path_without(tmp_path, "bison", "qemu-system-x86_64"))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any(line.split()[:3] == ["kbuild", "bison", "MISSING"] for line in lines), result.stdout
    assert any(line.split()[:3] == ["vm", "qemu-system-x86_64", "MISSING"] for line in lines)
    assert "  apt-get install --no-install-recommends bison qemu-system-x86" in lines
    assert lines[-1] == "2 required check(s) failed: bison, qemu-system-x86_64"


def test_dynamic_busybox_is_not_the_static_one(tmp_path):
    result = kmh("doctor", path=path_without(tmp_path, replace={"busybox": "/usr/bin/ls"}))
    assert result.returncode == 1
    assert "is dynamically linked (Debian's busybox, not busybox-static)" in result.stdout
    lines = result.stdout.splitlines()
    assert lines[lines.index("To install what is missing:") + 1].endswith(" busybox-static")


def test_vagrant_is_required_only_when_asked(tmp_path):
    path = path_without(tmp_path, "vagrant")
    relaxed, strict = kmh("doctor", path=path), kmh("doctor", "--require", "vagrant", path=path)
    assert relaxed.returncode == 0
    assert any(line.split()[:3] == ["vagrant", "vagrant", "warn"] for line in relaxed.stdout.splitlines())
    assert strict.returncode == 1
    assert any(line.split()[:3] == ["vagrant", "vagrant", "MISSING"] for line in strict.stdout.splitlines())


def test_install_lines_group_apt_and_pip():
    findings = [
        Finding("vm", "cpio", "cpio", problem="cpio not found on PATH"),
        Finding("kbuild", "bc", "bc", problem="bc not found on PATH"),
        Finding("kbuild", "make", "make"),
        Finding("cluster", "distributed", "kmod-harness[cluster]", problem="x", advisory=True, pip=True),
    ]
    sudo = "" if os.geteuid() == 0 else "sudo "
    assert install_lines(findings) == [
        f"{sudo}apt-get install --no-install-recommends bc cpio",
        "pip install 'kmod-harness[cluster]'",
    ]


@pytest.mark.parametrize(
    ("hidden", "args", "message"),
    [
        ("make", ["build", "{module}", "--kernel", "bookworm"], "make is not installed (kbuild runs it)"),
        # Found in make's output: the compiler the kernel's headers name.
        ("gcc-12", ["build", "{module}", "--kernel", "bookworm"], "gcc-12 is not installed (kbuild for 6.1"),
        ("qemu-system-x86_64", ["vm", "accel"], "qemu-system-x86_64 is not installed (VMs boot with it)"),
    ],
)
def test_other_commands_point_to_doctor(tmp_path, kernel_61, hidden, args, message):
    module = tmp_path / "mod"
    module.mkdir()
    (module / "Kbuild").write_text("obj-m := mod.o\n")
    (module / "mod.c").write_text('#include <linux/module.h>\nMODULE_LICENSE("GPL");\n')
    result = kmh(*[a.format(module=module) for a in args], path=path_without(tmp_path, hidden))
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"kmh: error: {message}")
    assert line.endswith("run `kmh doctor` to see everything this host is missing")


def test_the_ci_example_installs_what_doctor_requires():
    """docs/github-actions.yml must install every Debian package a required check names."""
    workflow = (Path(__file__).resolve().parents[2] / "docs" / "github-actions.yml").read_text()
    command = workflow.split("apt-get install", 1)[1].split("\n\n", 1)[0]
    installed = set(command.replace("\\", " ").split())
    required = {f.package for f in diagnose() if not f.advisory and f.package and not f.pip}
    assert required <= installed, required - installed


def test_kernel_add_without_apt_names_it(tmp_path):
    """An empty store of its own, so the first thing `kernel add` needs is apt-get."""
    result = kmh(
        "kernel", "add", "bookworm", path=path_without(tmp_path, "apt-get"), KMH_CACHE=str(tmp_path / "cache")
    )
    assert result.returncode == 2
    line = result.stderr.splitlines()[-1]
    assert line.startswith("kmh: error: apt-get is not installed (kernel targets are downloaded")
    assert "apt-get install apt, or run `kmh doctor`" in line

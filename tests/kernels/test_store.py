"""Kernel targets: Debian packages resolved, unpacked privately and usable without installing them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from harness.errors import HarnessError
from harness.kernels.debian import parse_spec, resolve
from harness.kernels.store import KernelStore
from harness.paths import REPO_ROOT

SPECS = ["buster", "6.1", "linux-image-amd64", "", "bookworm-updates", "bullseye-backports"]


@pytest.mark.parametrize("spec", SPECS)
def test_nonsense_specs_are_refused_before_any_download(spec):
    with pytest.raises(HarnessError, match="unknown kernel spec"):
        parse_spec(spec)


def test_spec_forms():
    assert parse_spec("bookworm") == ("bookworm", "amd64")
    assert parse_spec("bookworm-backports:cloud-amd64") == ("bookworm-backports", "cloud-amd64")
    assert parse_spec("6.1.0-56-amd64") == ("", "6.1.0-56-amd64")
    assert parse_spec("6.12.95+deb12-rt-amd64") == ("", "6.12.95+deb12-rt-amd64")


def test_targets_by_suite_shorthand(kernel_61, kernel_612):
    assert kernel_61.suite == "bookworm" and kernel_61.major_minor == (6, 1)
    assert kernel_612.suite == "bookworm-backports" and kernel_612.major_minor == (6, 12)
    store = KernelStore()
    assert store.get("bookworm") == kernel_61
    assert store.get(kernel_612.release) == kernel_612


@pytest.mark.parametrize("fixture", ["kernel_61", "kernel_612"])
def test_unpacked_target_is_self_contained(request, fixture):
    target = request.getfixturevalue(fixture)
    for path in (target.vmlinuz, target.config, target.symvers, target.kbuild_dir / "Makefile"):
        assert path.is_file(), path
    assert (target.modules_dir / "kernel").is_dir()
    assert "include /usr/src" not in (target.kbuild_dir / "Makefile").read_text()
    absolute = [p for p in target.root.rglob("*") if p.is_symlink() and os.readlink(p).startswith("/")]
    assert absolute == []
    assert (target.modules_dir / "build").resolve() == target.kbuild_dir.resolve()
    with target.vmlinux.open("rb") as handle:
        elf = ELFFile(handle)
        assert elf["e_machine"] == "EM_X86_64"
        notes = [n for s in elf.iter_sections() if s["sh_type"] == "SHT_NOTE" for n in s.iter_notes()]
        # XEN_ELFNOTE_PHYS32_ENTRY (18): the PVH entry QEMU's -kernel uses for an ELF vmlinux.
        assert any(n["n_name"] == "Xen" and n["n_type"] == 18 for n in notes)
    assert "CONFIG_LOCALVERSION" in target.config.read_text()


def test_the_host_is_untouched(kernel_61, kernel_612):
    for target in (kernel_61, kernel_612):
        assert not Path(f"/lib/modules/{target.release}").exists()
        assert not Path(f"/boot/vmlinuz-{target.release}").exists()
        assert not Path(f"/usr/src/linux-headers-{target.release}").exists()


def test_unknown_name_lists_installed_targets(kernel_61):
    with pytest.raises(HarnessError, match=f"installed: .*{kernel_61.release}"):
        KernelStore().get("6.1.0-1-amd64")


def test_archive_resolution_of_flavours_and_exact_releases(kernel_61):
    archive = KernelStore().archive
    archive.update()
    cloud = resolve(archive, "bookworm:cloud-amd64")
    assert cloud.release.endswith("-cloud-amd64") and cloud.flavour == "cloud-amd64"
    names = [name for name, _ in cloud.packages]
    assert names[0] == f"linux-image-{cloud.release}"
    assert any(n.startswith("linux-kbuild-") for n in names)
    assert any(n.endswith("-common") for n in names)
    exact = resolve(archive, kernel_61.release)
    assert exact.version == kernel_61.version
    with pytest.raises(HarnessError, match="no Debian kernel 6.1.0-1-amd64; newest releases available: "):
        resolve(archive, "6.1.0-1-amd64")
    with pytest.raises(HarnessError, match="flavours are .*cloud-amd64"):
        resolve(archive, "bookworm:nonsense-amd64")


def test_cli_user_errors_are_one_line_and_exit_2():
    result = subprocess.run(
        [sys.executable, "-m", "harness.cli", "kernel", "add", "buster"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("kmh: error: unknown kernel spec 'buster'")
    assert "Traceback" not in result.stderr

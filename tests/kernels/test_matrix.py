"""The kernel matrix for real: bullseye (5.10), bookworm (6.1), trixie (6.12), trixie-backports
(7.3) and sid (7.2), each added from the archive, built for in its own suite's environment with
every template and -Werror, and booted in QEMU (from the snapshot once it exists)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from harness.buildenv import HOST, recipe_for
from harness.elf.check import check_loadable
from harness.elf.module import open_module
from harness.kbuild import build_modules
from harness.kernels.target import KernelTarget
from harness.templates import write_module
from harness.vm import VM
from tests.conftest import MATRIX

TEMPLATES = {
    "m_hello": ("hello", {}),
    "m_params": ("params", {}),
    "m_chardev": ("chardev", {}),
    "m_misc": ("misc", {}),
    "m_procfs": ("procfs", {}),
    "m_exp": ("exporter", {}),
    "m_cons": ("consumer", {"exporter_prefix": "m_exp"}),
    "m_net": ("netdev", {}),
}


def test_each_kernel_is_its_suites_version(matrix_kernel: KernelTarget) -> None:
    expected = MATRIX[matrix_kernel.suite]
    assert ".".join(map(str, matrix_kernel.major_minor)) == expected
    kernel = matrix_kernel
    for path in (kernel.vmlinuz, kernel.config, kernel.system_map, kernel.symvers):
        assert path.is_file(), path
    assert (matrix_kernel.modules_dir / "kernel").is_dir()
    absolute = [p for p in matrix_kernel.root.rglob("*") if p.is_symlink() and os.readlink(p).startswith("/")]
    assert absolute == []
    with matrix_kernel.vmlinux.open("rb") as handle:
        assert ELFFile(handle)["e_machine"] == "EM_X86_64"


def test_only_the_hosts_own_release_builds_with_the_host_toolchain(matrix_kernel: KernelTarget) -> None:
    recipe = recipe_for(matrix_kernel)
    assert (recipe.name == HOST) == (matrix_kernel.suite == "bookworm")
    if recipe.name != HOST:
        assert recipe.name.startswith(matrix_kernel.suite.split("-")[0] + "-")


@pytest.fixture(scope="module")
def built(matrix_kernel: KernelTarget, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    sources = tmp_path_factory.mktemp(f"templates-{matrix_kernel.release}")
    directories = []
    for name, (template, params) in TEMPLATES.items():
        write_module(template, name, sources / name, params)
        directories.append(sources / name)
    return build_modules(directories, matrix_kernel, werror=True)


@pytest.mark.kbuild
def test_every_template_builds_warning_free_in_the_kernels_environment(built, matrix_kernel) -> None:
    expected_env = recipe_for(matrix_kernel).name
    for result in built:
        assert result.ok, result.log[-3000:]
        assert result.warnings == []
        assert result.environment == expected_env
        (module,) = result.modules
        info = open_module(module.path).info()
        assert info.vermagic.split()[0] == matrix_kernel.release
        check = check_loadable(module.path, matrix_kernel, [r.build_dir for r in built])
        assert check.loadable, check.reasons


@pytest.mark.kbuild
def test_check_says_when_crcs_cannot_be_compared(built, matrix_kernel) -> None:
    """Debian's 7.x kernels have MODVERSIONS off: every CRC in Module.symvers is 0."""
    modversions = "CONFIG_MODVERSIONS=y" in matrix_kernel.config.read_text()
    crcs = {line.split()[0] for line in matrix_kernel.symvers.read_text().splitlines()}
    assert (crcs == {"0x00000000"}) == (not modversions)
    assert modversions == (matrix_kernel.major_minor < (7, 0))
    hello = next(r for r in built if r.source_dir.name == "m_hello").modules[0].path
    notes = " ".join(check_loadable(hello, matrix_kernel).notes)
    assert ("CRCs cannot be compared" in notes) == (not modversions)


@pytest.mark.kbuild
def test_compiler_diagnostics_name_the_users_files(matrix_kernel: KernelTarget, tmp_path: Path) -> None:
    source = tmp_path / "broken"
    source.mkdir()
    (source / "Kbuild").write_text("obj-m += broken.o\n")
    code = '#include <linux/module.h>\nint x = undeclared_kmh;\nMODULE_LICENSE("GPL");\n'
    (source / "broken.c").write_text(code)
    (result,) = build_modules([source], matrix_kernel)
    assert not result.ok
    (error,) = result.errors
    assert error.file == source / "broken.c" and error.line == 2
    assert "undeclared_kmh" in error.message


@pytest.mark.vm
def test_boots_and_loads_a_module_built_in_its_environment(built, matrix_kernel: KernelTarget) -> None:
    hello = next(r for r in built if r.source_dir.name == "m_hello").modules[0].path
    with VM(matrix_kernel) as vm:
        assert vm.run("uname -r").stdout.strip() == matrix_kernel.release
        vm.put(hello, "/tmp/m_hello.ko")
        loaded = vm.run("insmod /tmp/m_hello.ko && grep -c '^m_hello ' /proc/modules && rmmod m_hello")
        assert loaded.ok, loaded.stderr
        assert loaded.stdout.strip() == "1"
        # virtio is built in from 6.12 on and a module before: either way the guest channel works.
        builtin = (matrix_kernel.modules_dir / "modules.builtin").read_text()
        modular = vm.run("cat /proc/modules").stdout
        assert "virtio_pci" in builtin or "virtio_pci" in modular
    # The first boot saved a snapshot; the next guest of the same configuration restores it.
    with VM(matrix_kernel) as again:
        assert again.restored
        assert again.run("uname -r").stdout.strip() == matrix_kernel.release

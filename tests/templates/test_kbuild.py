"""Every template, with defaults and with edge-case parameters, built for real by kbuild with -Werror
against both kernel targets; the .ko files are then read back (name, vermagic, license, parameters,
dependencies) so a build that "succeeded" with the wrong contents still fails.

All good modules of one kernel are built by ONE kbuild run: a top directory whose Kbuild lists each
module directory (``obj-m += name/``), which kbuild descends into and links in one modpost pass.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from plumbum import local

from harness.kernels.target import KernelTarget
from harness.templates import render, write_module

pytestmark = pytest.mark.kbuild

HOSTILE = '"); evil(); (" */ /* %s%n \\ ??/ \n\ttab é ✓'
INT_MIN, INT_MAX = -(2**31), 2**31 - 1


@dataclass(frozen=True)
class Case:
    module: str
    template: str
    params: dict[str, object]

    @property
    def id(self) -> str:
        return self.module


CASES = [
    Case("t_hello", "hello", {}),
    Case(
        "t_hello_hostile_" + "x" * 39,  # 55 characters: MODULE_NAME_LEN - 1
        "hello",
        {"greeting": HOSTILE, "author": HOSTILE, "description": HOSTILE, "license": "Dual BSD/GPL"},
    ),
    Case("t_hello_proprietary", "hello", {"license": "Proprietary", "greeting": ""}),
    Case("t_hello_einval", "hello", {"init_error": "EINVAL"}),
    Case("t_params", "params", {}),
    Case(
        "t_params_min",
        "params",
        {
            "int_value": INT_MIN,
            "bool_value": "false",
            "string_value": HOSTILE,
            "array_values": "",
            "array_size": "1",
            "mode": "0000",
        },
    ),
    Case(
        "t_params_max",
        "params",
        {
            "int_value": INT_MAX,
            "array_values": [INT_MIN, INT_MAX, *range(62)],
            "array_size": 64,
            "mode": "0664",
            "license": "Dual MIT/GPL",
        },
    ),
    Case("t_chardev", "chardev", {}),
    Case(
        "t_chardev_tiny",
        "chardev",
        {"buffer_size": 1, "message": "x", "device_name": "tiny_node", "mode": "0600", "leak": "class"},
    ),
    Case(
        "t_chardev_big",
        "chardev",
        {
            "buffer_size": 1 << 20,
            "message": HOSTILE,
            "leak": "chrdev-region",
            "license": "GPL v2",
            "inject_failures": True,
        },
    ),
    Case("t_misc", "misc", {}),
    Case("t_misc_edge", "misc", {"device_name": "edge_misc", "message": "", "mode": "0400"}),
    Case("t_procfs", "procfs", {}),
    Case("t_procfs_edge", "procfs", {"entry_name": "edge_proc", "message": HOSTILE, "mode": "0644"}),
    Case("t_exporter", "exporter", {}),
    Case("t_consumer", "consumer", {"exporter_prefix": "t_exporter"}),
    Case("t_exporter_edge", "exporter", {"prefix": "p" * 40, "value": INT_MIN}),
    Case(
        "t_consumer_edge",
        "consumer",
        {"exporter_prefix": "p" * 40, "use_gpl": False, "license": "Proprietary", "a": INT_MAX, "b": INT_MIN},
    ),
    # The bad variants that do build (their defects show at run time).
    Case("t_bad_init_error", "bad_init_error", {}),
    Case("t_bad_null_deref", "bad_null_deref", {}),
    Case("t_bad_bug_exit", "bad_bug_exit", {}),
    Case("t_bad_loop_init", "bad_loop_init", {}),
    Case("t_bad_hold_ref", "bad_hold_ref", {}),
    Case("t_bad_chardev_leak", "bad_chardev_leak", {}),
]

#: Modules whose dependencies modpost must record (consumer -> exporter).
DEPENDS = {"t_consumer": "t_exporter", "t_consumer_edge": "t_exporter_edge"}


def modinfo(ko: Path) -> dict[str, list[str]]:
    """The .modinfo section as key -> values (a key such as parm repeats)."""
    with ko.open("rb") as stream:
        section = ELFFile(stream).get_section_by_name(".modinfo")
        assert section is not None, f"{ko} has no .modinfo"
        data = section.data()
    info: dict[str, list[str]] = {}
    for entry in data.split(b"\0"):
        if entry:
            key, _, value = entry.decode("utf-8").partition("=")
            info.setdefault(key, []).append(value)
    return info


def undefined_symbols(ko: Path) -> set[str]:
    with ko.open("rb") as stream:
        symtab = ELFFile(stream).get_section_by_name(".symtab")
        return {s.name for s in symtab.iter_symbols() if s.name and s["st_shndx"] == "SHN_UNDEF"}


def kbuild(kernel: KernelTarget, directory: Path, *extra: str) -> tuple[int, str]:
    """One real kbuild run over ``directory``; warnings are errors. Returns (exit code, output)."""
    make = local["make"][
        "-C",
        kernel.kbuild_dir,
        f"M={directory}",
        f"-j{os.cpu_count() or 2}",
        "KCFLAGS=-Werror",
        *extra,
        "modules",
    ]
    code, out, err = make.run(retcode=None)
    return code, out + err


@dataclass(frozen=True)
class Batch:
    kernel: KernelTarget
    root: Path
    code: int
    output: str


@pytest.fixture(scope="module")
def batch(kernel: KernelTarget, tmp_path_factory: pytest.TempPathFactory) -> Batch:
    root = tmp_path_factory.mktemp(f"batch-{kernel.release}")
    for case in CASES:
        write_module(case.template, case.module, root / case.module, case.params)
    (root / "Kbuild").write_text("".join(f"obj-m += {case.module}/\n" for case in CASES))
    code, output = kbuild(kernel, root)
    return Batch(kernel, root, code, output)


def test_the_batch_builds_warning_free(batch: Batch) -> None:
    assert batch.code == 0, batch.output[-4000:]
    assert "warning" not in batch.output.lower(), batch.output  # modpost warns in capitals


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_module_is_built_with_its_modinfo(batch: Batch, case: Case) -> None:
    ko = batch.root / case.module / f"{case.module}.ko"
    assert ko.is_file(), batch.output[-4000:]
    info = modinfo(ko)
    params = render(case.template, case.module, case.params).params
    assert info["name"] == [case.module]
    assert info["vermagic"][0].startswith(batch.kernel.release + " ")
    # The strings arrive byte for byte: escaping changed the C, not the value.
    assert info["license"] == [params["license"]]
    assert info["author"] == [params["author"]]
    assert info["description"] == [params["description"]]
    if case.module in DEPENDS:
        assert info["depends"] == [DEPENDS[case.module]]
    else:
        assert info.get("depends", [""]) == [""]


def test_parameters_are_declared_with_their_types(batch: Batch) -> None:
    info = modinfo(batch.root / "t_params" / "t_params.ko")
    assert sorted(info["parmtype"]) == ["enabled:bool", "label:charp", "number:int", "values:array of int"]
    assert "number:An int parameter" in info["parm"]


def test_exporter_symbols_are_exported_with_their_licenses(batch: Batch) -> None:
    symvers = (batch.root / "Module.symvers").read_text().splitlines()
    exports = {(f[1], f[2], f[3]) for f in (line.split("\t") for line in symvers)}
    exporter = str(batch.root / "t_exporter" / "t_exporter")
    assert ("t_exporter_add", exporter, "EXPORT_SYMBOL") in exports
    assert ("t_exporter_value", exporter, "EXPORT_SYMBOL") in exports
    assert ("t_exporter_multiply", exporter, "EXPORT_SYMBOL_GPL") in exports


def test_consumer_links_against_the_exporter(batch: Batch) -> None:
    ko = batch.root / "t_consumer" / "t_consumer.ko"
    assert {"t_exporter_add", "t_exporter_multiply", "t_exporter_value"} <= undefined_symbols(ko)
    edge = batch.root / "t_consumer_edge" / "t_consumer_edge.ko"
    assert "p" * 40 + "_multiply" not in undefined_symbols(edge)


# -- modules that must not build, and plain make ---------------------------------------------------


def test_compile_error_points_at_its_source_line(kernel: KernelTarget, tmp_path: Path) -> None:
    source = write_module("bad_compile", "t_bad_compile", tmp_path / "t_bad_compile")
    assert source.directory is not None
    text = source.files["t_bad_compile.c"].splitlines()
    line = next(i for i, t in enumerate(text, 1) if "kmh_function_that_does_not_exist" in t)
    code, output = kbuild(kernel, source.directory)
    assert code != 0
    assert re.search(rf"t_bad_compile\.c:{line}:\d+: error: implicit declaration of function", output), output
    assert not (source.directory / "t_bad_compile.ko").exists()


def test_modpost_refuses_gpl_user_next_to_its_exporter(kernel: KernelTarget, tmp_path: Path) -> None:
    write_module("exporter", "t_gexp", tmp_path / "t_gexp")
    write_module("bad_gpl_user", "t_gpl_user", tmp_path / "t_gpl_user", {"exporter_prefix": "t_gexp"})
    (tmp_path / "Kbuild").write_text("obj-m += t_gexp/\nobj-m += t_gpl_user/\n")
    code, output = kbuild(kernel, tmp_path)
    assert code != 0
    assert "GPL-incompatible module t_gpl_user.ko uses GPL-only symbol 't_gexp_multiply'" in output


def test_gpl_user_builds_alone_when_modpost_only_warns(kernel: KernelTarget, tmp_path: Path) -> None:
    source = write_module("bad_gpl_user", "t_gpl_alone", tmp_path / "m", {"exporter_prefix": "t_gexp"})
    assert source.directory is not None
    code, output = kbuild(kernel, source.directory, "KBUILD_MODPOST_WARN=1")
    assert code == 0, output
    ko = source.directory / "t_gpl_alone.ko"
    assert modinfo(ko)["license"] == ["Proprietary"]
    assert "t_gexp_multiply" in undefined_symbols(ko)


def test_rendered_makefile_builds_with_plain_make(kernel: KernelTarget, tmp_path: Path) -> None:
    source = write_module("chardev", "t_plain", tmp_path / "t_plain")
    assert source.directory is not None
    code, out, err = local["make"]["-C", source.directory, f"KDIR={kernel.kbuild_dir}"].run(retcode=None)
    assert code == 0, out + err
    assert modinfo(source.directory / "t_plain.ko")["name"] == ["t_plain"]

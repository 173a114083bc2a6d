"""Bad input ends in one clear line and exit 2, never a traceback; and a bounded fuzz test proves
no exception other than HarnessError escapes the public API on mutated real modules.

The bad files are made from a real module (uas.ko of the 6.1 target) by changing exactly the
thing under test: the class byte for "32-bit", e_machine for "foreign architecture", a section
name for "missing section", and so on.
"""

from __future__ import annotations

import lzma
import os
import re
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.elf import open_module, read_module
from harness.elf.modinfo_text import render_modinfo
from harness.elf.tree import module_facts
from harness.errors import HarnessError
from harness.kernels.target import KernelTarget
from tests.elf.elf_helpers import FULL, run_kmh


@pytest.fixture(scope="module")
def uas(kernel_61: KernelTarget) -> bytes:
    return (kernel_61.modules_dir / "kernel/drivers/usb/storage/uas.ko").read_bytes()


def with_bytes(data: bytes, offset: int, new: bytes) -> bytes:
    return data[:offset] + new + data[offset + len(new) :]


def section_header_offset(data: bytes, index: int) -> int:
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    return shoff + 64 * index


def rename_section(data: bytes, old: bytes, new: bytes) -> bytes:
    """Rename a section in .shstrtab, the last string table before the section headers."""
    assert len(old) == len(new)
    at = data.rindex(old + b"\0", 0, struct.unpack_from("<Q", data, 0x28)[0])
    return with_bytes(data, at, new)


CASES: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "empty": (lambda d: b"", "empty file"),
    "text": (lambda d: b"hello, world\n" * 10, "not an ELF file"),
    "truncated-header": (lambda d: d[:40], "truncated"),
    "truncated-middle": (lambda d: d[: len(d) // 2], "truncated or corrupt"),
    "truncated-table": (lambda d: d[: section_header_offset(d, 5)], "the section header table ends"),
    "32-bit": (lambda d: with_bytes(d, 4, b"\x01"), "32-bit"),
    "big-endian": (lambda d: with_bytes(d, 5, b"\x02"), "big-endian"),
    "bad-class": (lambda d: with_bytes(d, 4, b"\x07"), "unknown class"),
    "aarch64": (lambda d: with_bytes(d, 18, struct.pack("<H", 183)), "AArch64"),
    "executable": (
        lambda d: with_bytes(d, 16, struct.pack("<H", 2)),
        "not a kernel module: it is an executable",
    ),
    "shared-object": (lambda d: with_bytes(d, 16, struct.pack("<H", 3)), "shared object"),
    "no-modinfo": (lambda d: rename_section(d, b".modinfo", b".modinfX"), "no .modinfo section"),
    "no-this-module": (
        lambda d: rename_section(d, b".gnu.linkonce.this_module", b".gnu.linkonce.that_module"),
        "no .gnu.linkonce.this_module section",
    ),
    "no-symtab": (lambda d: rename_section(d, b".symtab", b".symtaX"), "no .symtab section"),
    "section-past-end": (
        lambda d: with_bytes(d, section_header_offset(d, 3) + 24, struct.pack("<Q", 1 << 40)),
        "section 3 ends at byte",
    ),
    "section-table-past-end": (
        lambda d: with_bytes(d, 0x28, struct.pack("<Q", len(d))),
        "section header table",
    ),
    "bad-shentsize": (lambda d: with_bytes(d, 0x3A, struct.pack("<H", 40)), "section header size 40"),
    "bad-shstrndx": (lambda d: with_bytes(d, 0x3E, struct.pack("<H", 999)), "section name table index"),
    "corrupt-xz": (lambda d: lzma.compress(d)[:-200], "corrupt xz data"),
    "gzip": (lambda d: b"\x1f\x8b" + b"\0" * 100, "gzip-compressed"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_file_is_one_clear_error(uas: bytes, tmp_path: Path, case: str) -> None:
    make, expected = CASES[case]
    path = tmp_path / f"{case}.ko"
    path.write_bytes(make(uas))
    with pytest.raises(HarnessError) as raised:
        read_module(path)
    message = str(raised.value)
    assert expected in message and str(path) in message and "\n" not in message
    for verb in (["modinfo"], ["inspect"], ["check", "--kernel", "bookworm"]):
        result = run_kmh(*verb, str(path))
        assert result.returncode == 2, (verb, result.stdout, result.stderr)
        assert result.stderr.decode().splitlines() == [f"kmh: error: {message}"]
        assert result.stdout == b""


def test_cut_signature_leaves_a_readable_unsigned_module(uas: bytes, tmp_path: Path) -> None:
    path = tmp_path / "cut.ko"
    path.write_bytes(uas[:-100])
    info = read_module(path)
    assert info.signature is None and info.name == "uas"


def test_missing_file_and_directory(tmp_path: Path) -> None:
    for path, expected in ((tmp_path / "absent.ko", "no such file"), (tmp_path, "is a directory")):
        result = run_kmh("inspect", str(path))
        assert result.returncode == 2
        assert result.stderr.decode() == f"kmh: error: {path}: {expected}" + (
            "\n" if expected == "no such file" else ", not a module file\n"
        )


def test_plain_object_file_is_not_a_module(tmp_path: Path) -> None:
    source = tmp_path / "plain.c"
    source.write_text("int plain_value = 1;\n")
    os.system(f"cc -c -o {tmp_path / 'plain.o'} {source}")
    with pytest.raises(HarnessError, match="not a kernel module: it has no .modinfo section"):
        open_module(tmp_path / "plain.o")


def test_bad_module_in_a_tree_is_reported_and_the_rest_written(
    kernel_61: KernelTarget, tmp_path: Path, uas: bytes
) -> None:
    """Issue 14 (8): as depmod, an empty or truncated .ko gets an error line and an empty
    modules.dep line, and the other modules are still written (kmh used to exit 2 with no output);
    the exit code says something was wrong (depmod itself exits 0)."""
    release = kernel_61.release
    tree = tmp_path / "lib" / "modules" / release / "kernel"
    tree.mkdir(parents=True)
    (tree / "uas.ko").write_bytes(uas)
    for dependency in ("usb-storage", "usbcore", "usb-common", "scsi_mod", "scsi_common"):
        found = next((kernel_61.modules_dir / "kernel").rglob(f"{dependency}.ko"))
        (tree / found.name).write_bytes(found.read_bytes())
    (tree / "broken.ko").write_bytes(uas[:1000])
    (tree / "empty.ko").write_bytes(b"")
    result = run_kmh("deps", str(tree.parent))
    assert result.returncode == 1
    errors = sorted(result.stderr.decode().splitlines())
    prefix = "kmh deps: ERROR: failed to load symbols from "
    assert re.fullmatch(
        re.escape(f"{prefix}{tree / 'broken.ko'}: truncated or corrupt: ")
        + r"the section header table ends at byte \d+, but the file has 1000 bytes",
        errors[0],
    ), errors
    assert errors[1:] == [f"{prefix}{tree / 'empty.ko'}: empty file, not a kernel module"]
    depmod = subprocess.run(
        ["depmod", "-n", "-b", str(tmp_path), release], capture_output=True, check=True
    ).stdout
    expected = depmod.split(b"# Aliases extracted")[0].split(b"# Soft dependencies")[0]
    assert result.stdout == expected
    assert b"kernel/uas.ko: kernel/usb-storage.ko" in result.stdout
    assert b"kernel/broken.ko:\n" in result.stdout and b"kernel/empty.ko:\n" in result.stdout


# -- fuzzing -------------------------------------------------------------------------------------

_FIELDS = [0x04, 0x05, 0x10, 0x12, 0x28, 0x3A, 0x3C, 0x3E]


@st.composite
def mutations(draw: st.DrawFn, data: bytes) -> bytes:
    """A real module changed the ways files break: truncation, random bytes, bad header fields,
    bad section headers, bad symbols."""
    kind = draw(st.sampled_from(["truncate", "bytes", "header", "section", "tail", "symtab"]))
    if kind == "truncate":
        return data[: draw(st.integers(0, len(data)))]
    if kind == "header":
        offset = draw(st.sampled_from(_FIELDS))
        return with_bytes(data, offset, draw(st.binary(min_size=1, max_size=8)))
    if kind == "section":
        index = draw(st.integers(0, struct.unpack_from("<H", data, 0x3C)[0] - 1))
        field = draw(st.sampled_from([0, 4, 24, 32, 40, 44, 56]))
        value = draw(st.sampled_from([0, 1, 0xFFFF, 1 << 31, (1 << 64) - 1, len(data)]))
        width = 4 if field in (0, 4, 40, 44) else 8
        return with_bytes(
            data, section_header_offset(data, index) + field, value.to_bytes(8, "little")[:width]
        )
    if kind == "tail":  # the signature trailer and PKCS#7 blob
        offset = draw(st.integers(max(0, len(data) - 700), len(data) - 1))
        return with_bytes(data, offset, draw(st.binary(min_size=1, max_size=16)))
    if kind == "symtab":
        offset = draw(st.integers(len(data) // 2, len(data) - 1))
        return with_bytes(data, offset, draw(st.binary(min_size=1, max_size=32)))
    mutated = bytearray(data)
    for _ in range(draw(st.integers(1, 20))):
        mutated[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(mutated)


def exercise(path: Path) -> None:
    """Every public reader on PATH; only HarnessError may come out."""
    try:
        module = open_module(path)
        module.info().as_dict()
        render_modinfo(module)
        render_modinfo(module, "parm")
        module_facts(path)
    except HarnessError as error:
        assert error.message and "\n" not in error.message


@pytest.mark.parametrize("name", ["uas", "usb-storage"])
def test_fuzz_mutated_modules_raise_only_harness_error(
    kernel_61: KernelTarget, tmp_path_factory: pytest.TempPathFactory, name: str
) -> None:
    source = next(kernel_61.modules_dir.rglob(f"{name}.ko")).read_bytes()
    directory = tmp_path_factory.mktemp(f"fuzz-{name}")

    @settings(
        max_examples=2000 if FULL else 250,
        deadline=None,
        derandomize=not FULL,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
    )
    @given(mutations(source), st.booleans())
    def fuzz(mutated: bytes, compress: bool) -> None:
        path = directory / ("m.ko.xz" if compress else "m.ko")
        path.write_bytes(lzma.compress(mutated, preset=0) if compress else mutated)
        exercise(path)

    fuzz()

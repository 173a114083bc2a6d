"""The optional Python layer: what is in it, what is not, and that it is built once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from harness.vm.image import HOST_PROGRAMS, _shared_libraries, _which
from harness.vm.python_layer import GUEST_PYTHON, python_layer
from harness.vm.stublib import stubbed


def members(archive: Path) -> dict[str, int]:
    """Path -> mode of every member of a newc archive."""
    data = archive.read_bytes()
    found: dict[str, int] = {}
    offset = 0
    while True:
        header = data[offset : offset + 110]
        assert header[:6] == b"070701"
        mode, size, namesize = (int(header[6 + 8 * i : 14 + 8 * i], 16) for i in (1, 6, 11))
        name = data[offset + 110 : offset + 110 + namesize - 1].decode()
        offset = (offset + 110 + namesize + 3) & ~3
        offset = (offset + size + 3) & ~3
        if name == "TRAILER!!!":
            return found
        found[name] = mode


@pytest.fixture(scope="module")
def layer() -> dict[str, int]:
    return members(python_layer())


def test_interpreter_stdlib_and_pyroute2_are_in_it(layer: dict[str, int]) -> None:
    assert GUEST_PYTHON.lstrip("/") in layer
    assert "usr/bin/python3" in layer
    assert "usr/lib/python3.11/os.pyc" in layer
    assert "usr/lib/python3/dist-packages/pyroute2/iproute/linux.pyc" in layer
    assert any(name.startswith("usr/lib/python3/dist-packages/pyroute2-") for name in layer)


def test_sources_tests_and_unused_extensions_are_not(layer: dict[str, int]) -> None:
    assert not [name for name in layer if name.endswith(".py")]
    assert not [name for name in layer if "/__pycache__/" in name]
    assert not [name for name in layer if name.startswith(("usr/lib/python3.11/test/", "usr/share/"))]
    assert not [name for name in layer if "_dbm" in name or "/nis." in name or "_test" in name]


def test_host_libraries_of_the_base_layer_are_not_repeated(layer: dict[str, int]) -> None:
    """Libraries the base layer carries are not carried again, except those it only stubs
    (libcrypto: kmod's is a stand-in, harness/vm/stublib.py): Python needs them for real."""
    libs = [lib for program in HOST_PROGRAMS.values() for lib in _shared_libraries(_which(program))]
    base = {str(lib).lstrip("/") for lib in libs if not stubbed(lib)}
    libraries = {name for name in layer if ".so" in name and not name.startswith("usr/lib/python3")}
    assert libraries, "the interpreter's own libraries (libm, libz, libexpat, ...) must be in the layer"
    assert not libraries & base
    real = {str(lib).lstrip("/") for lib in libs if stubbed(lib)}
    assert real and real <= libraries, "the stubbed libraries come for real with the Python layer"


def test_the_layer_is_cached() -> None:
    started = time.monotonic()
    assert python_layer() == python_layer()
    assert time.monotonic() - started < 1.0

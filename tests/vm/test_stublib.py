"""The guest's libcrypto stub, made from and run against the host's real kmod and real modules."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from harness.kernels.target import KernelTarget
from harness.vm import image, stublib

KMOD = image._which("kmod")
CRYPTO = next(lib for lib in image._shared_libraries(KMOD) if stublib.stubbed(lib))


@pytest.fixture(scope="module")
def stub_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = stublib.build_stub(image._which("gcc"), CRYPTO.name, [KMOD])
    assert data is not None
    directory = tmp_path_factory.mktemp("stub")
    (directory / CRYPTO.name).write_bytes(data)
    return directory


def _kmod(stub_dir: Path, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    """kmod as TOOL (it picks the tool by its argv[0]) on the stub."""
    program = stub_dir / tool
    if not program.exists():
        program.symlink_to(KMOD)
    # LD_BIND_NOW: every function kmod imports must resolve in the stub at start, not on a call.
    env = {**os.environ, "LD_LIBRARY_PATH": str(stub_dir), "LD_BIND_NOW": "1"}
    return subprocess.run([str(program), *args], capture_output=True, text=True, env=env)


def test_kmod_imports_only_functions_from_libcrypto():
    imported = stublib.imports_from(KMOD, CRYPTO.name)
    assert imported and "d2i_PKCS7_bio" in imported
    assert all(version.startswith("OPENSSL") for version in imported.values())


def test_a_program_importing_data_keeps_the_real_library():
    """env has libc's ``stderr``/``environ`` objects copied in: a stub could not stand in for them."""
    assert stublib.imports_from(image._which("env"), "libc.so.6") is None


def test_kmod_runs_on_the_stub_and_is_much_smaller(stub_dir: Path):
    stub = stub_dir / CRYPTO.name
    assert stub.stat().st_size < CRYPTO.resolve().stat().st_size / 100
    result = _kmod(stub_dir, "kmod", "--version")
    assert result.returncode == 0 and "kmod version" in result.stdout, result.stderr
    loaded = subprocess.run(
        ["ldd", str(KMOD)],
        capture_output=True,
        text=True,
        env={**os.environ, "LD_LIBRARY_PATH": str(stub_dir)},
    ).stdout
    assert str(stub) in loaded


def test_modinfo_on_the_stub_prints_every_field_but_the_signer(kernel: KernelTarget, stub_dir: Path):
    signed = next(p for p in sorted(kernel.modules_dir.rglob("*.ko*")) if p.name.startswith("crc32"))
    modinfo = image._which("modinfo")
    real = subprocess.run([str(modinfo), str(signed)], capture_output=True, text=True, check=True)
    stubbed = _kmod(stub_dir, "modinfo", str(signed))
    assert stubbed.returncode == 0, stubbed.stderr
    fields = {line.split(":")[0] for line in real.stdout.splitlines() if line and not line[0].isspace()}
    kept = {line.split(":")[0] for line in stubbed.stdout.splitlines() if line and not line[0].isspace()}
    assert "signer" in fields or "sig_id" in fields, "Debian signs its modules"
    assert fields - kept <= {"sig_id", "signer", "sig_key", "sig_hashalgo", "signature"}
    assert {"name", "vermagic", "filename"} <= kept


def test_the_base_layer_carries_the_stub(kernel: KernelTarget, tmp_path: Path):
    listing = subprocess.run(
        ["cpio", "-i", "--quiet", "-d", "--no-absolute-filenames", "-D", str(tmp_path)],
        input=image.base_layer(kernel).read_bytes(),
        capture_output=True,
    )
    assert listing.returncode == 0, listing.stderr
    inside = tmp_path / str(CRYPTO).lstrip("/")
    assert inside.is_file() and inside.stat().st_size < 100_000

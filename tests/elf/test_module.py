"""The harness.elf reader against independent oracles, on real modules of both targets.

* exports (GPL flag, namespace, CRC, owner) against the target's Module.symvers;
* __versions against ``modprobe --dump-modversions``; undefined symbols against ``nm``;
* section names and sizes against pyelftools' own full parse;
* signature fields against ``modinfo -F``.
"""

from __future__ import annotations

import json
import lzma
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from harness.elf import open_module, read_module
from harness.elf.modinfo_text import hex_block
from harness.elf.symvers import read_symvers
from harness.kernels.target import KernelTarget
from tests.elf.elf_helpers import FULL, run_kmh

STEP = 1 if FULL else 23


def modules_of(kernel: KernelTarget, step: int = STEP) -> list[Path]:
    return sorted(kernel.modules_dir.rglob("*.ko*"))[::step]


def plain_copy(path: Path, tmp_path: Path) -> Path:
    """PATH itself, or a decompressed copy when it is .ko.xz (for tools that need plain ELF)."""
    if not path.name.endswith(".xz"):
        return path
    copy = tmp_path / path.name.removesuffix(".xz")
    copy.write_bytes(lzma.decompress(path.read_bytes()))
    return copy


def test_exports_match_module_symvers(kernel: KernelTarget) -> None:
    symvers = read_symvers(kernel.symvers)
    checked = 0
    for path in modules_of(kernel):
        info = read_module(path)
        owner = str(path.relative_to(kernel.modules_dir / "kernel")).split(".ko")[0]
        for export in info.exports:
            entry = symvers[export.name]
            assert (export.crc, export.gpl_only, export.namespace, owner) == (
                entry.crc,
                entry.gpl_only,
                entry.namespace,
                entry.module,
            ), f"{path}: {export}"
            checked += 1
    assert checked > 300


def test_namespaced_export_is_read(kernel: KernelTarget) -> None:
    path = next(kernel.modules_dir.rglob("usb-storage.ko*"))
    exports = {export.name: export for export in read_module(path).exports}
    export = exports["usb_stor_sense_invalidCDB"]
    assert export.gpl_only and export.namespace == "USB_STORAGE" and export.crc is not None


def test_versions_and_undefined_symbols_match_kmod_and_nm(kernel: KernelTarget, tmp_path: Path) -> None:
    for path in modules_of(kernel, STEP * 5):
        info = read_module(path)
        plain = plain_copy(path, tmp_path)
        dumped = subprocess.run(
            ["modprobe", "--dump-modversions", str(plain)], capture_output=True, text=True, check=True
        ).stdout
        expected_versions = [
            (int(crc, 16), name) for crc, name in (line.split("\t") for line in dumped.splitlines())
        ]
        assert [(entry.crc, entry.name) for entry in info.versions] == expected_versions
        nm = subprocess.run(["nm", "-u", str(plain)], capture_output=True, text=True, check=True).stdout
        undefined = sorted(line.split()[-1] for line in nm.splitlines())
        assert sorted(symbol.name for symbol in info.undefined) == undefined
        versions = {entry.name: entry.crc for entry in info.versions}
        for symbol in info.undefined:
            assert symbol.crc == versions.get(symbol.name)
        assert "module_layout" in versions or kernel.major_minor >= (6, 12) or not versions


def test_sections_match_pyelftools(kernel: KernelTarget, tmp_path: Path) -> None:
    for path in modules_of(kernel, STEP * 10):
        with plain_copy(path, tmp_path).open("rb") as handle:
            expected = [
                (s.name, s["sh_type"].removeprefix("SHT_"), s["sh_size"])
                for s in ELFFile(handle).iter_sections()
            ]
        ours = [(s.name, s.type, s.size) for s in read_module(path).sections]
        assert ours == expected[1:]


def test_signature_matches_modinfo(kernel: KernelTarget) -> None:
    path = next(kernel.modules_dir.rglob("uas.ko*"))
    signature = read_module(path).signature
    assert signature is not None

    def field(name: str) -> str:
        return subprocess.run(
            ["modinfo", "-F", name, str(path)], capture_output=True, text=True
        ).stdout.strip()

    assert signature.id_type == field("sig_id") == "PKCS#7"
    assert signature.signer == field("signer")
    assert hex_block(signature.key_id).decode() == field("sig_key")
    assert signature.hash_algo == field("sig_hashalgo")
    assert hex_block(signature.signature).decode() == field("signature")
    if signature.algo == "RSA":
        assert len(signature.signature) in (256, 384, 512)
    else:  # ECDSA: a DER SEQUENCE of two INTEGERs
        assert signature.algo == "ECDSA" and signature.signature[0] == 0x30


def test_modinfo_fields_in_order(kernel_61: KernelTarget) -> None:
    path = kernel_61.modules_dir / "kernel/drivers/usb/storage/usb-storage.ko"
    info = read_module(path)
    records = subprocess.run(["modinfo", "-0", str(path)], capture_output=True, check=True).stdout
    signature_keys = (b"sig_id", b"signer", b"sig_key", b"sig_hashalgo", b"signature")
    expected = [
        record.split(b"=", 1)
        for record in records.split(b"\0")[1:-1]
        if not record.startswith(b"parm") and record.split(b"=", 1)[0] not in signature_keys
    ]
    ours = [[f.key.encode(), f.value.encode()] for f in info.modinfo if not f.key.startswith("parm")]
    assert ours == expected
    assert [item.key for item in info.modinfo].count("parm") == 4
    assert info.depends == ["usbcore", "scsi_mod", "scsi_common"]
    assert info.name == "usb_storage" and info.license == "GPL" and info.gpl_compatible
    assert info.vermagic == "6.1.0-56-amd64 SMP preempt mod_unload modversions "
    assert info.fields("parmtype")[0] == "quirks:string"


def test_compressed_and_plain_read_the_same(kernel_61: KernelTarget, tmp_path: Path) -> None:
    import zstandard

    path = kernel_61.modules_dir / "kernel/drivers/usb/storage/uas.ko"
    data = path.read_bytes()
    (tmp_path / "uas.ko.xz").write_bytes(lzma.compress(data))
    (tmp_path / "uas.ko.zst").write_bytes(zstandard.ZstdCompressor().compress(data))
    plain = read_module(path)
    for name, kind in (("uas.ko.xz", "xz"), ("uas.ko.zst", "zstd")):
        compressed = read_module(tmp_path / name)
        assert compressed.compression == kind
        assert (compressed.modinfo, compressed.undefined, compressed.signature) == (
            plain.modinfo,
            plain.undefined,
            plain.signature,
        )


def test_inspect_json_is_complete(kernel_61: KernelTarget) -> None:
    path = kernel_61.modules_dir / "kernel/drivers/usb/storage/usb-storage.ko"
    result = run_kmh("inspect", "--json", str(path))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    info = read_module(path)
    assert data["name"] == "usb_storage"
    assert len(data["modinfo"]) == len(info.modinfo)
    assert len(data["exports"]) == len(info.exports) == 25
    assert len(data["undefined"]) == len(info.undefined) and len(data["versions"]) == len(info.versions)
    assert data["signature"]["signer"] == "Build time autogenerated kernel key"
    assert bytes.fromhex(data["signature"]["signature"]) == info.signature.signature
    assert {s["name"] for s in data["sections"]} >= {".modinfo", "__versions", ".symtab", "__ksymtab_gpl"}


def test_inspect_text_for_a_person(kernel_61: KernelTarget) -> None:
    path = kernel_61.modules_dir / "kernel/drivers/usb/storage/usb-storage.ko"
    result = run_kmh("inspect", str(path))
    assert result.returncode == 0
    text = result.stdout.decode()
    assert "exports (25):" in text
    assert "usb_stor_sense_invalidCDB" in text and "USB_STORAGE" in text
    assert "signer:" in text and "sha256" in text


@pytest.mark.parametrize("name", ["kmh_consumer", "kmh_provider"])
def test_built_modules_are_readable(fixtures_61: dict[str, Path], name: str) -> None:
    module = open_module(fixtures_61[name])
    assert module.name == name and module.signature is None
    info = module.info()
    assert info.license == "GPL"
    if name == "kmh_provider":
        assert [e.name for e in info.exports] == ["kmh_provider_value"]
        assert info.exports[0].gpl_only and info.exports[0].crc is not None
    else:
        assert "kmh_provider_value" in {u.name for u in info.undefined}

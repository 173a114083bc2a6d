"""Plain data objects describing a kernel module: what the rest of the pipeline passes around.

They hold no file handles and no parser state, so they can be pickled, compared in tests and
turned into JSON (``as_dict``). The small per-symbol records are NamedTuples: a module has
thousands of them, and they cost a tenth of a frozen dataclass to define and to create.

Text from the module (``.modinfo`` values, symbol names) is decoded as UTF-8 with
``surrogateescape``: nothing is lost, and ``encode_text`` gives the exact original bytes back,
which byte-identical ``modinfo`` output needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

#: Licenses the kernel treats as GPL-compatible (include/linux/license.h).
GPL_COMPATIBLE_LICENSES = frozenset(
    {"GPL", "GPL v2", "GPL and additional rights", "Dual BSD/GPL", "Dual MIT/GPL", "Dual MPL/GPL"}
)


def decode_text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def encode_text(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


class ModinfoField(NamedTuple):
    """One ``key=value`` string of ``.modinfo``; keys repeat (alias, parm, ...)."""

    key: str
    value: str


class ExportedSymbol(NamedTuple):
    """A symbol the module exports to others (EXPORT_SYMBOL*)."""

    name: str
    #: Exported with EXPORT_SYMBOL_GPL: only GPL-compatible modules may use it.
    gpl_only: bool
    #: The symbol namespace ("" when none): users need MODULE_IMPORT_NS(namespace).
    namespace: str = ""
    #: The modversions CRC, None when the module was built without CONFIG_MODVERSIONS.
    crc: int | None = None


class UndefinedSymbol(NamedTuple):
    """A symbol the module needs from the kernel or from another module."""

    name: str
    #: A weak reference: loading does not fail when nobody exports it.
    weak: bool = False
    #: The CRC recorded for it in ``__versions`` (None when absent).
    crc: int | None = None


class VersionEntry(NamedTuple):
    """One ``struct modversion_info`` of ``__versions``: a symbol and the CRC it was built against."""

    name: str
    crc: int


class SectionInfo(NamedTuple):
    """Name, ELF type and size of one section."""

    name: str
    type: str
    size: int


class Signature(NamedTuple):
    """The signature appended to the module (``~Module signature appended~``)."""

    #: How the signer is identified: ``PKCS#7`` for every modern kernel, else ``PGP``/``X509``.
    id_type: str
    #: The signing key's subject (PKCS#7: the issuer's common name).
    signer: str
    #: The key id (PKCS#7: the certificate serial number), raw bytes.
    key_id: bytes
    #: The digest algorithm: ``sha256``, ``sha512``, ...
    hash_algo: str
    #: The signature itself, raw bytes.
    signature: bytes
    #: The public key algorithm: ``RSA`` or ``ECDSA`` (6.12 Debian kernels sign with P-384).
    algo: str = ""
    #: Size of the whole appended blob (PKCS#7 + trailer + magic), for section-size accounting.
    appended_size: int = 0


@dataclass(frozen=True)
class ModuleInfo:
    """Everything ``kmh inspect`` knows about one .ko file."""

    path: Path
    #: The module name the kernel uses (``name=`` of .modinfo, else from the file name).
    name: str
    #: Every .modinfo field, in file order.
    modinfo: tuple[ModinfoField, ...]
    exports: tuple[ExportedSymbol, ...]
    undefined: tuple[UndefinedSymbol, ...]
    versions: tuple[VersionEntry, ...]
    sections: tuple[SectionInfo, ...]
    signature: Signature | None
    #: Size of the (uncompressed) file in bytes.
    size: int = 0
    #: How the file is compressed on disk: "", "xz" or "zstd".
    compression: str = ""

    def field(self, key: str) -> str | None:
        """The first value of .modinfo KEY, or None."""
        for item in self.modinfo:
            if item.key == key:
                return item.value
        return None

    def fields(self, key: str) -> list[str]:
        """Every value of .modinfo KEY, in order."""
        return [item.value for item in self.modinfo if item.key == key]

    @property
    def license(self) -> str | None:
        return self.field("license")

    @property
    def vermagic(self) -> str | None:
        return self.field("vermagic")

    @property
    def depends(self) -> list[str]:
        """Module names from ``depends=`` (as modpost wrote them: dashes kept)."""
        value = self.field("depends") or ""
        return [name for name in value.split(",") if name]

    @property
    def imported_namespaces(self) -> list[str]:
        return self.fields("import_ns")

    @property
    def gpl_compatible(self) -> bool:
        return self.license in GPL_COMPATIBLE_LICENSES

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict holding every fact (bytes as hex strings)."""
        signature = self.signature
        return {
            "path": str(self.path),
            "name": self.name,
            "size": self.size,
            "compression": self.compression,
            "modinfo": [[item.key, item.value] for item in self.modinfo],
            "exports": [item._asdict() for item in self.exports],
            "undefined": [item._asdict() for item in self.undefined],
            "versions": [item._asdict() for item in self.versions],
            "sections": [item._asdict() for item in self.sections],
            "signature": None
            if signature is None
            else {
                "id_type": signature.id_type,
                "signer": signature.signer,
                "key_id": signature.key_id.hex(),
                "hash_algo": signature.hash_algo,
                "algo": signature.algo,
                "signature": signature.signature.hex(),
                "appended_size": signature.appended_size,
            },
        }

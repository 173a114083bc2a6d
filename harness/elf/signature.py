"""The signature appended to a module file, decoded as kmod's ``modinfo`` shows it.

Layout at the end of the file: ``<signature blob><struct module_signature><"~Module signature
appended~\\n">``. ``struct module_signature`` is 12 bytes: algo, hash, id_type, signer_len,
key_id_len, 3 pad bytes, big-endian u32 sig_len. Modern kernels use id_type 2 (PKCS#7) with the
other fields zero, and everything lives in the PKCS#7 SignedData: kmod (built with OpenSSL)
reports the issuer's common name as signer, the serial number as key id, the digest algorithm and
the encrypted digest. An unreadable blob yields no signature, as in kmod.
"""

from __future__ import annotations

import mmap
import struct

from harness.elf.der import INTEGER, OCTET_STRING, OID, SEQUENCE, SET, DerError, Node, decode_oid, parse_one
from harness.elf.model import Signature, decode_text

MAGIC = b"~Module signature appended~\n"
_TRAILER = struct.Struct(">BBBBB3xI")
_ALGOS = ("DSA", "RSA")
_HASHES = ("md4", "md5", "sha1", "rmd160", "sha256", "sha384", "sha512", "sha224", "sm3")
_ID_TYPES = ("PGP", "X509", "PKCS#7")
_PKCS7 = 2
_COMMON_NAME = "2.5.4.3"
_SIGNED_DATA = "1.2.840.113549.1.7.2"
_DIGEST_OIDS = {
    "1.2.840.113549.2.4": "md4",
    "1.2.840.113549.2.5": "md5",
    "1.3.14.3.2.26": "sha1",
    "1.3.36.3.2.1": "rmd160",
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
    "2.16.840.1.101.3.4.2.4": "sha224",
    "1.2.156.10197.1.401": "sm3",
}


def read_signature(data: bytes | mmap.mmap) -> Signature | None:
    """The signature appended to the module bytes DATA, or None when unsigned/unreadable."""
    size = len(data) - len(MAGIC)
    if size < 0 or data[size:] != MAGIC:
        return None
    size -= _TRAILER.size
    if size < 0:
        return None
    algo, hash_, id_type, signer_len, key_id_len, sig_len = _TRAILER.unpack_from(data, size)
    if algo >= len(_ALGOS) or hash_ >= len(_HASHES) or id_type >= len(_ID_TYPES):
        return None
    if sig_len == 0 or size < signer_len + key_id_len + sig_len:
        return None
    appended = len(data) - (size - sig_len)
    if id_type == _PKCS7:
        return _pkcs7(bytes(data[size - sig_len : size]), appended)
    end = size - sig_len
    signature = bytes(data[end:size])
    key_id = bytes(data[end - key_id_len : end])
    signer = bytes(data[end - key_id_len - signer_len : end - key_id_len])
    return Signature(
        id_type=_ID_TYPES[id_type],
        signer=decode_text(signer),
        key_id=key_id,
        hash_algo=_HASHES[hash_],
        signature=signature,
        algo=_ALGOS[algo],
        appended_size=appended,
    )


def _pkcs7(blob: bytes, appended: int) -> Signature | None:
    try:
        signer, serial, digest, key_algo, encrypted = _signer_info(blob)
    except (DerError, IndexError, StopIteration):
        return None
    hash_algo = _DIGEST_OIDS.get(digest)
    if hash_algo is None:
        return None
    return Signature(
        id_type="PKCS#7",
        signer=signer,
        key_id=serial,
        hash_algo=hash_algo,
        signature=encrypted,
        algo=key_algo,
        appended_size=appended,
    )


def _key_algorithm(oid: str) -> str:
    if oid.startswith("1.2.840.113549.1.1."):
        return "RSA"
    if oid.startswith("1.2.840.10045."):
        return "ECDSA"
    return oid


def _signer_info(blob: bytes) -> tuple[str, bytes, str, str, bytes]:
    """(issuer CN, serial, digest OID, key algorithm, encrypted digest) of the first SignerInfo."""
    content_info, _ = parse_one(blob)
    outer = content_info.expect(SEQUENCE).children()
    if decode_oid(outer[0].expect(OID).value) != _SIGNED_DATA:
        raise DerError("not PKCS#7 SignedData")
    signed_data = outer[1].children()[0].expect(SEQUENCE).children()
    signer_infos = signed_data[-1].expect(SET).children()
    info = signer_infos[0].expect(SEQUENCE).children()
    issuer_and_serial = info[1].expect(SEQUENCE).children()
    issuer = _common_name(issuer_and_serial[0].expect(SEQUENCE))
    serial = issuer_and_serial[1].expect(INTEGER).value.lstrip(b"\0")
    digest = decode_oid(info[2].expect(SEQUENCE).children()[0].expect(OID).value)
    rest = [node for node in info[3:] if node.tag != 0xA0]  # skip [0] authenticatedAttributes
    key_algo = _key_algorithm(decode_oid(rest[0].expect(SEQUENCE).children()[0].expect(OID).value))
    encrypted = next(node for node in rest if node.tag == OCTET_STRING).value
    return issuer, serial, digest, key_algo, encrypted


def _common_name(name: Node) -> str:
    """The commonName of an X.509 Name; like kmod, the last attribute when there is none."""
    value = ""
    for rdn in name.children():
        for attribute in rdn.expect(SET).children():
            oid, data = attribute.expect(SEQUENCE).children()[:2]
            value = decode_text(data.value.partition(b"\0")[0])
            if decode_oid(oid.value) == _COMMON_NAME:
                return value
    return value

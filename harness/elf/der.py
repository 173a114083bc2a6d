"""A minimal DER reader: just enough ASN.1 to walk the PKCS#7 blob of a module signature.

The harness needs four values from that blob (issuer common name, serial number, digest
algorithm, signature bytes) — far too little to justify a cryptography dependency. Every read is
bounds-checked; malformed input raises :class:`DerError`, which callers treat as "unreadable
signature", never as a crash.
"""

from __future__ import annotations

from typing import NamedTuple

SEQUENCE = 0x30
SET = 0x31
INTEGER = 0x02
OCTET_STRING = 0x04
OID = 0x06


class DerError(ValueError):
    """The bytes are not the DER structure the caller expected."""


class Node(NamedTuple):
    """One DER element: its tag byte and the bytes of its value."""

    tag: int
    value: bytes

    def children(self) -> list[Node]:
        """The elements inside a constructed element (SEQUENCE, SET, [n] EXPLICIT)."""
        if not self.tag & 0x20:
            raise DerError(f"tag {self.tag:#x} is not constructed")
        return parse_all(self.value)

    def expect(self, tag: int) -> Node:
        if self.tag != tag:
            raise DerError(f"expected tag {tag:#x}, found {self.tag:#x}")
        return self


def parse_one(data: bytes, offset: int = 0) -> tuple[Node, int]:
    """The element at OFFSET and the offset just after it."""
    if offset + 2 > len(data):
        raise DerError("truncated element header")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise DerError("multi-byte tags are not used in PKCS#7 signatures")
    length = data[offset + 1]
    offset += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or offset + count > len(data):
            raise DerError("unsupported or truncated length")
        length = int.from_bytes(data[offset : offset + count], "big")
        offset += count
    end = offset + length
    if end > len(data):
        raise DerError("element runs past the end of its container")
    return Node(tag, bytes(data[offset:end])), end


def parse_all(data: bytes) -> list[Node]:
    """Every element of DATA, in order."""
    nodes, offset = [], 0
    while offset < len(data):
        node, offset = parse_one(data, offset)
        nodes.append(node)
    return nodes


def decode_oid(value: bytes) -> str:
    """Dotted form of an OBJECT IDENTIFIER value (``2.16.840.1.101.3.4.2.1``)."""
    if not value:
        raise DerError("empty object identifier")
    first = value[0]
    parts = [str(min(first // 40, 2)), str(first - 40 * min(first // 40, 2))]
    number = 0
    for byte in value[1:]:
        number = (number << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(str(number))
            number = 0
    return ".".join(parts)

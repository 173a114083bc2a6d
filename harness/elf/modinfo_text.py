"""Render a module the way kmod 30's ``modinfo`` prints it, byte for byte.

The rules reproduced (tools/modinfo.c and libkmod): keys padded to 16 columns; ``parm`` and
``parmtype`` merged per parameter name and printed last, most recently *first-seen* name first
(kmod prepends to a list); signature fields appended after .modinfo (sig_id, signer, sig_key,
sig_hashalgo, signature), binary values as ``XX:XX`` hex wrapped every 20 bytes with two tabs;
``-F field`` prints bare values (``-F parm`` prints the merged parameter lines); ``-0`` ends each
record with NUL and prints ``key=value`` (except the filename and parm lines, which keep their
padded form).
"""

from __future__ import annotations

import os
from pathlib import Path

from harness.elf.model import Signature, encode_text
from harness.elf.module import KernelModule


def hex_block(raw: bytes) -> bytes:
    """kmod's hex rendering: ``01:AB:...``, a newline and two tabs after every 20th byte."""
    lines = (raw[at : at + 20].hex(":").upper().encode() for at in range(0, len(raw), 20))
    return b":\n\t\t".join(lines)


def signature_fields(signature: Signature) -> list[tuple[bytes, bytes]]:
    return [
        (b"sig_id", encode_text(signature.id_type)),
        (b"signer", encode_text(signature.signer)),
        (b"sig_key", hex_block(signature.key_id)),
        (b"sig_hashalgo", encode_text(signature.hash_algo)),
        (b"signature", hex_block(signature.signature)),
    ]


def absolute_filename(path: Path | str) -> bytes:
    """The path as kmod prints it: made absolute against the cwd, otherwise untouched."""
    raw = os.fsencode(path)
    return raw if raw.startswith(b"/") else os.fsencode(os.getcwd()) + b"/" + raw


def render_modinfo(module: KernelModule, field: str | None = None, separator: bytes = b"\n") -> bytes:
    """The modinfo output for MODULE (all fields, or only FIELD's values)."""
    filename = absolute_filename(module.path)
    wanted = None if field is None else encode_text(field)
    if wanted == b"filename":
        return filename + separator
    pairs = list(module.raw_modinfo)
    if module.signature is not None:
        pairs += signature_fields(module.signature)
    if wanted == b"parm":
        return b"".join(line + separator for line in _params(pairs, filtered=True))
    if wanted is not None:
        return b"".join(value + separator for key, value in pairs if key == wanted)
    out = [b"%-16s%s%s" % (b"filename:", filename, separator)]
    for key, value in pairs:
        if key in (b"parm", b"parmtype"):
            continue
        out.append(_line(key, value, separator))
    out += [b"%-16s%s%s" % (b"parm:", line, separator) for line in _params(pairs)]
    return b"".join(out)


def _line(key: bytes, value: bytes, separator: bytes) -> bytes:
    if separator == b"\0":
        return key + b"=" + value + separator
    return key + b":" + b" " * max(15 - len(key), 0) + value + separator


def _params(pairs: list[tuple[bytes, bytes]], filtered: bool = False) -> list[bytes]:
    """``name:description (type)`` per parameter, in kmod's order (newest name first).

    A parameter with a type but no description prints as ``name:type`` in the full listing and
    ``name: (type)`` under ``-F parm``: two code paths in modinfo.c, reproduced as they are.
    """
    params: dict[bytes, list[bytes | None]] = {}
    for key, value in pairs:
        if key not in (b"parm", b"parmtype"):
            continue
        name, colon, rest = value.partition(b":")
        if not colon:
            continue
        entry = params.setdefault(name, [None, None])
        entry[0 if key == b"parm" else 1] = rest
    lines = []
    for name, (description, kind) in reversed(params.items()):
        if description is None:
            lines.append(name + (b": (" + (kind or b"") + b")" if filtered else b":" + (kind or b"")))
        elif kind is not None:
            lines.append(name + b":" + description + b" (" + kind + b")")
        else:
            lines.append(name + b":" + description)
    return lines

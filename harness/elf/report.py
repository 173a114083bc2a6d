"""A person-readable account of a :class:`~harness.elf.model.ModuleInfo` (``kmh inspect``)."""

from __future__ import annotations

import sys

from harness.elf.model import ModuleInfo
from harness.elf.modinfo_text import hex_block


def _crc(value: int | None) -> str:
    return "-" if value is None else f"{value:#010x}"


def _table(rows: list[tuple[str, ...]], indent: str = "  ") -> list[str]:
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)] + [row[-1]]
        lines.append((indent + "  ".join(cells)).rstrip())
    return lines


def describe_module(info: ModuleInfo) -> str:
    """Sections of text: summary, .modinfo, exports, undefined symbols, __versions, sections, signature."""
    lines = [f"{info.path}"]
    summary = [
        ("name", info.name),
        ("license", info.license or "(none)"),
        ("vermagic", (info.vermagic or "(none)").strip()),
        ("depends", ", ".join(info.depends) or "(none)"),
        ("size", f"{info.size} bytes" + (f", {info.compression} on disk" if info.compression else "")),
        ("signed", "yes" if info.signature else "no"),
    ]
    lines += _table([(key + ":", value) for key, value in summary])

    lines.append(f"\nmodinfo ({len(info.modinfo)} fields):")
    lines += _table([(item.key + ":", item.value) for item in info.modinfo])

    lines.append(f"\nexports ({len(info.exports)}):")
    lines += _table(
        [
            (e.name, "GPL-only" if e.gpl_only else "any", e.namespace or "-", _crc(e.crc))
            for e in sorted(info.exports, key=lambda e: e.name)
        ]
    )

    lines.append(f"\nundefined symbols ({len(info.undefined)}):")
    undefined = sorted(info.undefined, key=lambda u: u.name)
    lines += _table([(u.name, "weak" if u.weak else "", _crc(u.crc)) for u in undefined])

    lines.append(f"\n__versions ({len(info.versions)} entries):")
    lines += _table([(v.name, _crc(v.crc)) for v in info.versions])

    lines.append(f"\nsections ({len(info.sections)}):")
    lines += _table([(s.name or "(unnamed)", s.type, str(s.size)) for s in info.sections])

    signature = info.signature
    if signature is None:
        lines.append("\nsignature: none")
    else:
        lines.append("\nsignature:")
        lines += _table(
            [
                ("id type:", signature.id_type),
                ("signer:", signature.signer),
                ("key id:", hex_block(signature.key_id).decode()),
                ("hash:", signature.hash_algo),
                ("bytes:", f"{len(signature.signature)} ({signature.appended_size} appended to the file)"),
            ]
        )
    return "\n".join(lines) + "\n"


def show_module(file: str, *, as_json: bool = False) -> int:
    """Print what ``kmh inspect`` shows; plumbum-free so ``harness.cli`` can call it directly."""
    from harness.elf.module import read_module

    info = read_module(file)
    if as_json:
        import json

        print(json.dumps(info.as_dict(), indent=2))
    else:
        sys.stdout.write(describe_module(info))
    return 0

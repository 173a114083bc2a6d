"""Small pieces every verb shares: choosing kernel targets and printing tables."""

from __future__ import annotations

from collections.abc import Sequence

from harness.kernels.store import KernelStore
from harness.kernels.target import KernelTarget

DEFAULT_KERNEL = "bookworm"


def kernel_targets(names: Sequence[str]) -> list[KernelTarget]:
    """The targets NAMES mean (installed ones, or specs added on first use); bookworm by default."""
    store = KernelStore()
    return [store.ensure(name) for name in (names or [DEFAULT_KERNEL])]


def format_table(rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns; the last column is not padded."""
    if not rows:
        return ""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)] + [row[-1]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)

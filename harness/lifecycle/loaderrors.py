"""A failed load explained in one line: kmod's message, the errno's name, and the kernel's reason.

kmod can only word what ``init_module`` returned: a kernel-internal errno (512 and up, e.g.
517 = EPROBE_DEFER) comes out as "Unknown error 517", and many different refusals come out as
"Invalid module format" (ENOEXEC) or "Unknown symbol in module" (ENOENT). The kernel says why in
its log ("exports duplicate symbol X (owned by Y)", "Unknown symbol X (err -2)", "disagrees about
version of symbol X"), so the headline carries that line. The names of the kernel-internal
errnos are read from ``include/linux/errno.h`` of the target's own headers, not typed in here.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from pathlib import Path

from harness.lifecycle.guest import explain_error
from harness.paths import cache_root

_DEFINE = re.compile(r"^#define\s+(E[A-Z0-9_]+)\s+(\d+)\b", re.M)
_UNKNOWN = re.compile(r"Unknown error (\d+)")
_STAMP = re.compile(r"^(?:<\d+>)?\[\s*\d+\.\d+\]\s*")
#: The kernel's words for refusing a module (kernel/module/*.c), most specific first.
_REASONS = (
    "exports duplicate symbol",
    "disagrees about version of symbol",
    "no symbol version for",
    "Unknown symbol",
    "but does not import it",
    "version magic",
    "module layout",
    "Unknown rela relocation",
)


def parse_errno_header(text: str) -> dict[int, str]:
    """errno number → name from an errno.h text (the first name of a number wins)."""
    names: dict[int, str] = {}
    for name, number in _DEFINE.findall(text):
        names.setdefault(int(number), name)
    return names


@functools.lru_cache(maxsize=16)
def kernel_errno_names(release: str, store: Path | None = None) -> dict[int, str]:
    """The kernel-internal errno names of a target, from its headers in the kernel store."""
    root = (store or cache_root() / "kernels") / release
    for header in sorted(root.glob("usr/src/linux-headers-*/include/linux/errno.h")):
        return parse_errno_header(header.read_text(errors="replace"))
    return {}


def name_unknown_errno(message: str, names: dict[int, str]) -> str:
    """'... Unknown error 517' → '... Unknown error 517 (EPROBE_DEFER)' when the kernel names it."""

    def named(match: re.Match[str]) -> str:
        name = names.get(int(match.group(1)))
        return f"{match.group(0)} ({name})" if name else match.group(0)

    return _UNKNOWN.sub(named, message)


def kernel_reasons(log: Sequence[str], module: str = "") -> list[str]:
    """The kernel's lines saying why MODULE was refused (timestamps dropped), in log order.

    The kernel starts them with the module's name ("x: Unknown symbol y (err -2)")."""
    found = []
    wanted = module.replace("-", "_")
    for raw in log:
        line = _STAMP.sub("", raw).strip()
        if any(reason in line for reason in _REASONS) and (not wanted or line.startswith(f"{wanted}: ")):
            found.append(line)
    return found


def explain_load_error(stderr: str, log: Sequence[str], release: str, module: str = "") -> str:
    """kmod's error with the errno named, plus the kernel's reason when its log gives one."""
    message = name_unknown_errno(explain_error(stderr), kernel_errno_names(release))
    reasons = kernel_reasons(log, module)
    if not reasons:
        return message
    more = f" (+{len(reasons) - 1} more)" if len(reasons) > 1 else ""
    return f"{message}; kernel: {reasons[0]}{more}"

"""Crash: a structured report of kernel trouble seen while a guest command ran.

Kept apart from the parser (:mod:`harness.vm.console`) so backends and reports can pass crashes
around without importing parsing code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

CrashKind = Literal[
    "oops", "BUG", "panic", "WARNING", "soft lockup", "hung task", "timeout",
    "KASAN", "lockdep", "sleep in atomic",
]

#: Kinds after which the kernel can no longer be trusted: the VM is poisoned. A KASAN report
#: means memory was already corrupted (or read after free): nothing after it can be believed.
POISONING_KINDS: frozenset[str] = frozenset(
    {"oops", "BUG", "panic", "soft lockup", "hung task", "timeout", "KASAN"}
)
#: Kinds that are findings, not crashes: the kernel goes on (a WARN_ON, a lockdep splat, a
#: might_sleep() report of a debug kernel); the step that triggered them fails.
FINDING_KINDS: frozenset[str] = frozenset({"WARNING", "lockdep", "sleep in atomic"})


@dataclass(frozen=True)
class Crash:
    """One kernel report (or a command that never came back)."""

    kind: CrashKind
    #: The line that opened the report, e.g. ``BUG: kernel NULL pointer dereference, address: 0``.
    title: str
    #: Faulting function and module from ``RIP: func+0x11/0x20 [mod]`` (or the WARNING line).
    function: str = ""
    module: str = ""
    #: Call trace frames, innermost first, as printed (``func+0x../0x.. [mod]``).
    call_trace: tuple[str, ...] = ()
    #: Taint flags from the ``Tainted:`` line, e.g. ``"POE"``; empty when untainted.
    taint: str = ""
    #: The guest command that was running when it happened.
    command: str = ""
    #: True when the kernel went on to panic (the guest is gone).
    panicked: bool = False
    #: The raw console lines of the report.
    lines: tuple[str, ...] = field(default=(), repr=False)

    @property
    def poisons(self) -> bool:
        """Whether the VM must be thrown away after this."""
        return self.panicked or self.kind in POISONING_KINDS

    def summary(self) -> str:
        """One line for terminal reports."""
        where = f" in {self.function}" if self.function else ""
        mod = f" [{self.module}]" if self.module else ""
        return f"{self.kind}{where}{mod}: {self.title}"

"""Fault injection over init: fail the Nth slab allocation of a load, for N = 1, 2, ... until
init runs clean, and check after each failed init that it left nothing behind.

Which N to try, and when to stop, is :mod:`harness.debugkernel.sweep`'s business.

The Nth allocation is chosen with ``/proc/self/fail-nth`` (CONFIG_FAULT_INJECTION): writing N
there makes the Nth fault-injection point the *writing task* reaches fail, so the failure is
confined to the insmod process (``sh -c 'echo N > /proc/self/fail-nth; exec insmod ...'``).
failslab is the only injection point the debug target builds, set to never fail on its own
(probability 0) but to honour fail-nth also for allocations that may sleep, and to print the
stack of each injected failure. That stack says whether the failed allocation was the module's
(a frame ``[module]``: its init is being tested) or the loader's (exec, load_module: skipped).

After each injected failure in the module the cycle diffs the kernel state against the state
before loading and asks kmemleak, so every unwind path of init is exercised and checked once.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from harness.vm.console import strip_prefix

FAILSLAB = "/sys/kernel/debug/failslab"
#: failslab never fails by itself (probability 0) but honours fail-nth for GFP_KERNEL too, and
#: prints the call trace of each forced failure (verbose 2).
SETUP_COMMAND = (
    f"cd {FAILSLAB} && echo 0 > probability && echo N > ignore-gfp-wait && echo 2 > verbose "
    "&& echo 0 > verbose_ratelimit_interval_ms && echo -1 > times && echo 0 > task-filter "
    # Each injected failure dumps a stack: to the kernel log (which kmh reads) but not to the
    # emulated serial console, where ~120 of them cost minutes under TCG.
    "&& echo 1 > /proc/sys/kernel/printk"
)
#: The console log level again afterwards (quiet boot's level: warnings and worse).
RESTORE_COMMAND = "echo 4 > /proc/sys/kernel/printk"
#: The kernel's line for an injected failure, followed by a dump_stack.
FORCED = "FAULT_INJECTION: forcing a failure"

_FRAME = re.compile(r"^\s*(?P<frame>[\w.$]+\+0x[0-9a-f]+/0x[0-9a-f]+(?: \[(?P<mod>[\w-]+)\])?)")


def insmod_command(n: int, insmod: str) -> str:
    """INSMOD (a full kmod insmod command) run with its Nth fault-injection point failing.

    kmod's insmod, not busybox's: busybox retries a failed ``finit_module`` with ``init_module``,
    so an init that failed once would run again, unfailed, and the load would look clean.
    """
    return f"/bin/sh -c {shlex.quote(f'echo {n} > /proc/self/fail-nth && exec {insmod}')}"


def injected_frames(lines: list[str]) -> list[str] | None:
    """The call trace of the injected failure in LINES (dmesg since the command), None if none."""
    frames: list[str] | None = None
    for raw in lines:
        line = strip_prefix(raw)
        if FORCED in line:
            frames = []
            continue
        if frames is not None:
            match = _FRAME.match(line)
            if match and not line.lstrip().startswith("?"):
                frames.append(match.group("frame"))
            elif line.strip() == "</TASK>":
                break
    return frames


def module_frame(frames: list[str], modules: set[str]) -> str:
    """The innermost frame of FRAMES inside one of MODULES ('' when the allocation wasn't theirs)."""
    for frame in frames:
        match = _FRAME.match(frame)
        if match and (match.group("mod") or "") in modules:
            return frame
    return ""


@dataclass
class Injection:
    """One injected allocation failure inside the module's init and what it left."""

    n: int
    frame: str
    #: insmod's error ("" when init swallowed the failure and the module loaded).
    error: str
    leftovers: list[str] = field(default_factory=list)

    def describe(self) -> str:
        result = f"init failed: {self.error}" if self.error else "init coped: the module loaded"
        left = "; ".join(self.leftovers) if self.leftovers else "nothing left behind"
        return f"allocation #{self.n} failed in {self.frame}: {result}; {left}"

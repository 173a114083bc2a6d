"""The fault-injection step of a module's cycle: fail each allocation of its init once.

``/proc/self/fail-nth`` fails the Nth fault-injection point the insmod task reaches (see
:mod:`harness.debugkernel.faults`), and that count starts with the loader's own allocations
(exec, ``load_module``: a hundred or more) before the module's init runs. Sweeping N from 1
would spend most of its loads in the loader, so the sweep first *finds* init: it doubles N until
a load gets as far as init (or past it), then bisects down to the first N that does. Only then
does it go allocation by allocation, and it stops as soon as a failure lands after init (in
``do_init_module``) or a few loads in a row inject nothing visible: N has run past init.

Each load is classified from the stack of the injected failure (the innermost frame in the
module, ``do_one_initcall``: init; ``do_init_module`` only: after init; anything else: the
loader). A failure whose allocation is ``__GFP_NOWARN`` prints nothing; a load that then still
succeeds is "quiet". Bisection only ever errs towards an earlier start (a loader failure the
kernel coped with looks like "init reached"), which costs a few extra loads, never a skipped
allocation of init.

After every failure injected into init the state is compared with the state before the first
load and kmemleak is asked, so each unwind path of init is exercised and checked exactly once.
One guest serves the whole sweep; the bound on loads keeps it to a minute or two under TCG.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from harness.debugkernel import faults
from harness.debugkernel.detectors import leak_message
from harness.debugkernel.kmemleak import describe as describe_leaks
from harness.lifecycle.guest import explain_error
from harness.lifecycle.result import StepResult
from harness.lifecycle.state import diff

if TYPE_CHECKING:
    from harness.lifecycle.cycle import GuestCycle

Phase = Literal["loader", "init", "after", "quiet"]
#: The sweep's budget of loads (search and sweep together): an error, not a hang, beyond it.
MAX_LOADS = 120
#: Where the search for init gives up: no load reached init with this many points failing.
MAX_N = 4096
#: Loads in a row that inject nothing visible and load fine: the sweep ran past init.
QUIET_LOADS = 3


@dataclass
class Attempt:
    """One load with its Nth fault-injection point failing."""

    n: int
    phase: Phase
    loaded: bool
    frame: str  # the module's frame of the failed allocation ('' outside the module)
    error: str  # insmod's error ('' when it loaded)


def classify(frames: list[str] | None, loaded: bool, modules: set[str]) -> tuple[Phase, str]:
    """Where the injected failure of one load landed, from its stack (None: nothing printed)."""
    if frames is None:
        return ("quiet" if loaded else "loader"), ""
    frame = faults.module_frame(frames, modules)
    if frame or any(f.startswith("do_one_initcall+") for f in frames):
        return "init", frame
    if any(f.startswith("do_init_module+") for f in frames):
        return "after", ""
    return "loader", ""


def reaches_init(attempt: Attempt) -> bool:
    """Did the load get as far as init? (A loader failure the kernel coped with counts: it is
    the one mistake bisection may make, and it only moves the start earlier.)"""
    return attempt.phase != "loader" or attempt.loaded


class FaultSweep:
    """The ``faults`` step of one cycle (the cycle's guest, module and detectors)."""

    def __init__(self, cycle: GuestCycle) -> None:
        self.cycle = cycle
        self.modules = set(cycle.modules.built)
        self.insmod = cycle._load_commands()[-1][1]
        self.loads = 0

    def run(self) -> StepResult:
        cycle = self.cycle
        if not cycle.detectors.features.failslab:
            why = "fault injection needs failslab (--kernel bookworm:debug)"
            return StepResult("faults", "skip", message=why)
        cycle._sh(faults.SETUP_COMMAND, what="setting up failslab")
        try:
            return self._sweep()
        finally:
            cycle._sh(faults.RESTORE_COMMAND, what="restoring the console log level")

    def _sweep(self) -> StepResult:
        cycle = self.cycle
        cycle.detectors.layouts.clear()  # a failed init is never listed: attributed by its backtrace
        cycle.detectors.before_load()  # forget older suspects once; leaks() clears after each scan
        start = self._find_init()
        if isinstance(start, StepResult):
            return start
        injections: list[faults.Injection] = []
        evidence: list[str] = []
        quiet = outside = 0
        n = start
        while True:
            if self.loads >= MAX_LOADS:
                return self._unfinished(injections, f"init still failing after {MAX_LOADS} loads")
            attempt = self._attempt(n)
            if isinstance(attempt, StepResult):
                return attempt
            n += 1
            if attempt.phase == "after":
                break
            if attempt.phase == "quiet":
                quiet += 1
                if quiet >= QUIET_LOADS:
                    break
                continue
            quiet = 0
            if attempt.phase == "loader":
                outside += 1  # bisection started a little early (see the module docstring)
                continue
            injection = faults.Injection(attempt.n, attempt.frame or "init", attempt.error)
            leaks = cycle.detectors.leaks(cycle.spec.name)
            if leaks:
                injection.leftovers.append(leak_message(leaks))
                evidence.append(describe_leaks(leaks))
            changes = diff(cycle._before, cycle._snapshot(), reported_taint=cycle._reported_taint)
            if not changes.clean:
                injection.leftovers.append(changes.describe().splitlines()[0])
                evidence.append(changes.describe())
            injections.append(injection)
        report = [injection.describe() for injection in injections]
        dirty = [injection for injection in injections if injection.leftovers]
        if dirty:
            message = f"fault injection: {dirty[0].describe()}"
            return StepResult("faults", "fail", message=message, evidence="\n".join(report + evidence))
        swept = f"{len(injections)} allocation(s) of init failed in turn ({self.loads} loads)"
        return StepResult(
            "faults", "pass", message=f"fault injection: {swept}; every failed init unwound cleanly",
            evidence="\n".join(report),
        )  # fmt: skip

    def _find_init(self) -> int | StepResult:
        """The first N whose failure lands in init or later (doubling, then bisecting)."""
        below, n = 0, 16
        while True:
            attempt = self._attempt(n)
            if isinstance(attempt, StepResult):
                return attempt
            if reaches_init(attempt):
                break
            below, n = n, n * 2
            if n > MAX_N:
                return self._unfinished([], f"no load reached init with up to {MAX_N} allocations failing")
        above = n
        while above - below > 1:
            middle = (below + above) // 2
            attempt = self._attempt(middle)
            if isinstance(attempt, StepResult):
                return attempt
            if reaches_init(attempt):
                above = middle
            else:
                below = middle
        return above

    def _attempt(self, n: int) -> Attempt | StepResult:
        """Load once with the Nth point failing; unload if it loaded. A StepResult ends the sweep."""
        cycle = self.cycle
        self.loads += 1
        cycle.detectors.started()
        warnings = len(cycle._warnings)
        mark = cycle._mark()
        result = cycle._sh(faults.insmod_command(n, self.insmod), timeout=cycle.spec.timeout)
        frames = faults.injected_frames(cycle._dmesg(mark))
        loaded = result.exit_code == 0
        phase, frame = classify(frames, loaded, self.modules)
        if phase == "loader":
            # The kernel's own loader failing is not the module's finding (its error paths may WARN).
            del cycle._warnings[warnings:]
        if loaded and cycle._unload("faults").status != "pass":
            return StepResult("faults", "fail", message=f"allocation #{n}: the module could not be unloaded")
        return Attempt(n, phase, loaded, frame, "" if loaded else explain_error(result.stderr))

    def _unfinished(self, injections: list[faults.Injection], why: str) -> StepResult:
        return StepResult(
            "faults", "error", message=f"fault injection: {why}",
            evidence="\n".join(injection.describe() for injection in injections),
        )  # fmt: skip

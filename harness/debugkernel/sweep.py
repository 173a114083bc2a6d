"""The fault-injection step of a module's cycle: fail each allocation of its init once.

``/proc/self/fail-nth`` fails the Nth fault-injection point the insmod task reaches (see
:mod:`harness.debugkernel.faults`), and that count starts with the loader's own allocations
(exec, ``load_module``: a hundred or more) before the module's init runs. Sweeping N from 1
would spend most of its loads in the loader, so the sweep first *finds* init: it doubles N until
a load gets as far as init (or past it), then bisects down to the first N that does. Only then
does it go allocation by allocation, and a pass stops as soon as a failure lands after init (in
``do_init_module``) or a few loads in a row inject nothing visible: N has run past init. The
loader's count drifts by an allocation or two between loads (dentries, page tables), so results
are kept per allocation site of init (the module frame), not per N, and passes repeat until one
finds no new site.

Each load is classified from the stack of the injected failure (the innermost frame in the
module, ``do_one_initcall``: init; ``do_init_module`` only: after init; anything else: the
loader; the loader often copes, so whether insmod succeeded says nothing). A failure of a
``__GFP_NOWARN`` allocation prints nothing (kmemleak's own metadata: every other allocation), so
a search probe that lands on one tries the next N instead; during the sweep a load that injects
nothing visible and loads fine is "quiet".

After every failure injected into init the state is compared with the state before the first
load and kmemleak is asked, so each unwind path of init is exercised and checked exactly once.
One guest serves the whole sweep (25-40 loads, 2-4 minutes under TCG on a busy 2-core machine);
:data:`MAX_LOADS` bounds it.
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
QUIET_LOADS = 8
#: Loads a probe of the search tries (N, N+1) for a visible failure: quiet allocations come one
#: at a time (kmemleak's metadata after each object), so two quiet loads in a row are past the end.
PROBE_STEPS = 2
#: Where the search starts doubling: kmod's insmod alone (exec, its libraries) makes ~1000
#: allocations before load_module, so anything below is the loader for any module.
FIRST_N = 512
#: How far the loader's count of allocations drifts between two loads (dentries and page tables
#: come and go): each pass starts this much before the start the search found ...
DRIFT = 2
#: ... and passes repeat until one finds no allocation site of init the others had not: a drift
#: during a pass can make one load hit a site twice and skip the next.
MAX_PASSES = 3
#: insmod's exit status when it loaded the module and rmmod then failed.
UNLOAD_FAILED = 99


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
    if loaded and any(f.startswith("do_init_module+") for f in frames):
        # do_init_module allocates before calling init too (its freeinit record): a failure
        # there fails the load; one after init leaves the module loaded.
        return "after", ""
    return "loader", ""


def reaches_init(attempt: Attempt) -> bool:
    """Did the load get as far as init? Only the stack says so: the loader's failures are often
    coped with (a page fault retried, a readlink failing) and the load goes on, so "it loaded"
    says nothing. A quiet load (see :meth:`FaultSweep._probe`) ran past every allocation."""
    return attempt.phase != "loader"


class FaultSweep:
    """The ``faults`` step of one cycle (the cycle's guest, module and detectors)."""

    def __init__(self, cycle: GuestCycle) -> None:
        self.cycle = cycle
        self.modules = set(cycle.modules.built)
        #: The command that loads the spec's own module (companions load before it, in the cycle).
        self.insmod = next(command for name, command in cycle._load_commands() if name == cycle.spec.name)
        self.loads = 0
        self.visible_parity = 1
        self.passes_done = 0
        self.injections: dict[str, faults.Injection] = {}
        self.evidence: list[str] = []
        #: ``N:phase`` of every load, in order: how the search went (the report's last line).
        self.trail: list[str] = []

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
        for _ in range(MAX_PASSES):
            sites = len(self.injections)
            outcome = self._pass(max(1, start - DRIFT))
            if outcome is not None:
                return outcome
            if len(self.injections) == sites and self.passes_done:
                break  # a whole pass found no allocation site of init it had not seen
            self.passes_done += 1
        injections = sorted(self.injections.values(), key=lambda injection: injection.n)
        report = [injection.describe() for injection in injections] + [self._trail()]
        dirty = [injection for injection in injections if injection.leftovers]
        if dirty:
            message = f"fault injection: {dirty[0].describe()}"
            return StepResult("faults", "fail", message=message, evidence="\n".join(report + self.evidence))
        swept = f"{len(injections)} allocation(s) of init failed in turn ({self.loads} loads)"
        return StepResult(
            "faults", "pass", message=f"fault injection: {swept}; every failed init unwound cleanly",
            evidence="\n".join(report),
        )  # fmt: skip

    def _pass(self, n: int) -> StepResult | None:
        """One walk from N until a failure lands after init or loads go quiet."""
        quiet = 0
        while True:
            if self.loads >= MAX_LOADS:
                return self._unfinished(f"init still failing after {MAX_LOADS} loads")
            attempt = self._attempt(n)
            if isinstance(attempt, StepResult):
                return attempt
            n += 1
            if attempt.phase == "after":
                return None
            if attempt.phase == "quiet":
                quiet += 1
                if quiet >= QUIET_LOADS:
                    return None
                continue
            quiet = 0

    def _check(self, attempt: Attempt) -> None:
        """What a load whose init saw a failure left behind (state diff and kmemleak), once per
        allocation site of init: N drifts by a few between loads, the site does not."""
        cycle = self.cycle
        injection = faults.Injection(attempt.n, attempt.frame or "init", attempt.error)
        found: list[str] = []
        leaks = cycle.detectors.leaks(cycle.spec.name)
        if leaks:
            injection.leftovers.append(leak_message(leaks))
            found.append(describe_leaks(leaks))
        changes = diff(cycle._before, cycle._snapshot(), reported_taint=cycle._reported_taint)
        if not changes.clean:
            injection.leftovers.append(changes.describe().splitlines()[0])
            found.append(changes.describe())
        known = self.injections.get(injection.frame)
        if known is None or (injection.leftovers and not known.leftovers):
            self.injections[injection.frame] = injection
            self.evidence += found

    def _find_init(self) -> int | StepResult:
        """The first N whose failure lands in init or later (doubling, then bisecting)."""
        below, n = 0, FIRST_N
        while True:
            attempt = self._probe(n)
            if isinstance(attempt, StepResult):
                return attempt
            if reaches_init(attempt):
                break
            below, n = attempt.n, n * 2
            if n > MAX_N:
                return self._unfinished(f"no load reached init with up to {MAX_N} allocations failing")
        above = n
        while above - below > 1:
            middle = (below + above) // 2
            if middle % 2 != self.visible_parity and middle + 1 < above:
                middle += 1  # visible and quiet allocations alternate: aim at a visible one
            attempt = self._probe(middle)
            if isinstance(attempt, StepResult):
                return attempt
            if reaches_init(attempt):
                above = middle
            else:
                below = max(middle, attempt.n)
        return above

    def _probe(self, n: int) -> Attempt | StepResult:
        """The first load from N on whose failure is visible (a quiet one says nothing about where
        N landed: kmemleak's own metadata allocations are silent and every other one is such)."""
        for k in range(n, n + PROBE_STEPS):
            attempt = self._attempt(k)
            if isinstance(attempt, StepResult):
                return attempt
            if attempt.phase != "quiet":
                self.visible_parity = k % 2
                return attempt
        return attempt  # quiet PROBE_STEPS times in a row: past the whole load

    def _attempt(self, n: int) -> Attempt | StepResult:
        """Load once with the Nth point failing, unloading in the same command if it loaded; a
        failure inside init is checked for leftovers. A StepResult ends the sweep."""
        cycle = self.cycle
        self.loads += 1
        cycle.detectors.started()
        warnings = len(cycle._warnings)
        mark = cycle._mark()
        command = (
            f"{faults.insmod_command(n, self.insmod)}; status=$?; "
            f"if [ $status = 0 ]; then /sbin/rmmod {cycle.spec.name} || exit {UNLOAD_FAILED}; fi; "
            "exit $status"
        )
        result = cycle._sh(command, timeout=cycle.spec.timeout, what=f"insmod with allocation #{n} failing")
        if result.exit_code == UNLOAD_FAILED:
            why = explain_error(result.stderr)
            message = f"allocation #{n}: the module could not be unloaded: {why}"
            return StepResult("faults", "fail", message=message)
        frames = faults.injected_frames(cycle._dmesg(mark))
        loaded = result.exit_code == 0
        phase, frame = classify(frames, loaded, self.modules)
        self.trail.append(f"{n}:{phase}{'' if loaded else '/failed'}")
        if phase == "loader":
            # The kernel's own loader failing is not the module's finding (its error paths may WARN).
            del cycle._warnings[warnings:]
        attempt = Attempt(n, phase, loaded, frame, "" if loaded else explain_error(result.stderr))
        if phase == "init":
            self._check(attempt)
        return attempt

    def _trail(self) -> str:
        return "loads (N:where the failure landed): " + " ".join(self.trail)

    def _unfinished(self, why: str) -> StepResult:
        injections = sorted(self.injections.values(), key=lambda injection: injection.n)
        return StepResult(
            "faults", "error", message=f"fault injection: {why}",
            evidence="\n".join([*(injection.describe() for injection in injections), self._trail()]),
        )  # fmt: skip

"""The ``faults`` step of a module's cycle: fail each allocation of its init in turn.

After the ordinary cycle (the module loaded, unloaded and reloaded cleanly) the module is
loaded again with the 1st fault-injection point of its init failing, then the 2nd, and so on
(:mod:`harness.debugkernel.faults`: the count starts at init, not at exec, so it does not
drift), until a load whose init never reached its Nth point: init ran clean, every allocation
it makes has been failed once. Every load whose init saw a failure is checked for leftovers
(the state diff against the state before the sweep, kmemleak), so each unwind path of init is
exercised and checked exactly once; a module that swallowed the failure and loaded is unloaded
first. The step fails naming the first failure that left something behind, and its evidence
lists every injected failure: N, the allocation site, what insmod said, what it left.

The sweep stops at :data:`MAX_POINTS` (an error: init allocates more than a sweep should try)
and at a crash (the cycle reports it as the step's crash, naming the N). One guest serves the
whole sweep; the state is compared after each load, kmemleak asked once at the end (a scan
takes seconds under KASAN and needs objects 5 s old): its objects go to loads by insmod's PID.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from harness.debugkernel import faults
from harness.debugkernel.detectors import Detectors, leak_message
from harness.debugkernel.kmemleak import Leak
from harness.debugkernel.kmemleak import describe as describe_leaks
from harness.errors import HarnessError
from harness.kernels.store import KernelStore
from harness.lifecycle.guest import explain_error
from harness.lifecycle.result import StepResult, StepStatus
from harness.lifecycle.state import Snapshot, diff

if TYPE_CHECKING:
    from harness.lifecycle.cycle import GuestCycle

#: The most fault-injection points of init a sweep fails (one load each).
MAX_POINTS = 64


class FaultSweep:
    """The ``faults`` step of one cycle (the cycle's guest, module and state probes)."""

    def __init__(self, cycle: GuestCycle) -> None:
        self.cycle = cycle
        self.module = cycle.spec.name.replace("-", "_")
        *self.companions, (_, self.insmod) = cycle._load_commands()
        self.injections: list[faults.Injection] = []
        self.evidence: list[str] = []
        #: Leaks of loads with nothing injected (not an unwind's, but not clean either).
        self.stray: list[str] = []
        self.loads = 0
        #: The helper's record of each load, by its insmod's PID (to name kmemleak's frames).
        self.records: dict[int, faults.Record] = {}

    def run(self) -> StepResult:
        cycle = self.cycle
        try:
            target = KernelStore().get(cycle.release)
        except HarnessError as error:
            return StepResult("faults", "skip", message=f"fault injection: {error.message}")
        missing = faults.missing_options(target)
        if missing:
            needs = ", ".join(missing)
            why = f"fault injection needs {needs}, which {cycle.release} lacks (try bookworm:debug)"
            return StepResult("faults", "skip", message=why)
        if cycle.spec.method != "insmod":
            why = "fault injection loads the module with insmod: the spec's method is modprobe"
            return StepResult("faults", "skip", message=why)
        try:
            ko = faults.build_helper(target)
        except HarnessError as error:
            return StepResult("faults", "error", message=error.message, evidence=error.details or "")
        helper = f"/tmp/{faults.NAME}.ko"
        cycle.vm.put(ko, helper)
        setup = [
            (faults.load_helper_command(helper, self.module), f"loading {faults.NAME}"),
            (faults.SETUP_COMMAND, "setting up failslab"),
            # The module's companions (and the tree modules it needs) stay loaded for the sweep.
            *((command, f"loading {name}") for name, command in self.companions),
        ]
        try:
            for command, what in setup:
                result = cycle._sh(command, timeout=cycle.spec.timeout, what=what)
                if result.exit_code != 0:
                    why = explain_error(result.stderr) or f"exit {result.exit_code}"
                    return StepResult("faults", "error", message=f"fault injection: {what} failed: {why}")
            return self._sweep()
        finally:
            if not cycle.vm.poisoned:
                names = [name for name, _ in reversed(self.companions)]
                undo = [f"/sbin/rmmod {name} || /sbin/modprobe -r {name}" for name in names]
                undo += [faults.RESTORE_COMMAND, faults.UNLOAD_HELPER_COMMAND]
                cycle._sh("; ".join(undo), what=f"restoring failslab, unloading {faults.NAME}")

    def _sweep(self) -> StepResult:
        cycle = self.cycle
        # Its own kmemleak bookkeeping: a failed init's sections are never listed, so leaks are
        # attributed through their backtrace (do_init_module, an address no live code owns).
        detectors = Detectors(cycle.detectors.features, cycle._sh, {})
        detectors.before_load()
        baseline = cycle._snapshot()  # with the helper loaded: it is not the module's leftover
        seen = None
        for n in range(1, MAX_POINTS + 1):
            self.loads += 1
            mark = cycle._mark()
            result = cycle._sh(
                faults.load_command(n, self.insmod, self.module),
                timeout=cycle.spec.timeout,
                what=f"insmod with allocation #{n} of init failing",
            )
            detectors.started()  # what the load allocated is old enough for kmemleak from here
            record = faults.parse_record(result.stdout)
            error = explain_error(result.stderr) if result.exit_code != 0 else ""
            if result.exit_code == faults.UNLOAD_FAILED:
                cycle.reusable = False
                message = f"fault injection: allocation #{n} of init failed, init went on, and rmmod failed"
                return self._end("fail", message)
            if record is None or record.seen == seen:
                cycle.reusable = False
                why = error or "no record from the helper"
                message = f"fault injection: init did not run with allocation #{n} failing: {why}"
                return self._end("error", message)
            seen = record.seen
            if not record.fired:
                if result.exit_code != 0:
                    return self._end("error", f"fault injection: init failed with nothing injected: {error}")
                self._leaks(detectors, record.pid)
                return self._finish(n - record.remaining)
            frames = faults.injected_frames(cycle._dmesg(mark))
            site = faults.allocation_site(frames, self.module) or record.site
            injection = faults.Injection(n, record.pid, site, error, quiet=frames is None)
            self.records[record.pid] = record
            self._state(injection, baseline)
            self.injections.append(injection)
        self._leaks(detectors, 0)
        message = f"fault injection: init still reached allocation #{MAX_POINTS}: the sweep stops there"
        return self._end("error", message)

    def _state(self, injection: faults.Injection, baseline: Snapshot) -> None:
        """What the failed init left in /proc, /sys and /dev: compared after each load, since
        the next load would trip over it."""
        cycle = self.cycle
        changes = diff(baseline, cycle._snapshot(), reported_taint=cycle._reported_taint)
        if not changes.clean:
            cycle.reusable = False
            injection.leftovers.append(changes.describe().splitlines()[0])
            self.evidence.append(f"--- allocation #{injection.n}: state ---\n{changes.describe()}")

    def _leaks(self, detectors: Detectors, clean_pid: int) -> None:
        """kmemleak, once for the whole sweep (a scan takes seconds under KASAN, and objects must
        be 5 s old): each unreferenced object goes to the load whose insmod allocated it."""
        leaks = [self._named(leak) for leak in detectors.leaks(self.module)]
        by_pid = {injection.pid: injection for injection in self.injections}
        for pid in sorted({leak.pid for leak in leaks}):
            found = [leak for leak in leaks if leak.pid == pid]
            injection = by_pid.get(pid)
            if injection is None:
                # Not a load with a failure injected: the clean one (its ordinary leak, which the
                # cleanup step reports too), or a task kmemleak did not name.
                what = "the load with nothing injected" if pid == clean_pid and pid else f"pid {pid}"
                self.evidence.append(f"--- {what}: kmemleak ---\n{describe_leaks(found)}")
                self.stray.append(f"{what}: {leak_message(found)}")
                continue
            injection.leftovers.append(leak_message(found))
            self.evidence.append(f"--- allocation #{injection.n}: kmemleak ---\n{describe_leaks(found)}")

    def _named(self, leak: Leak) -> Leak:
        """LEAK with the raw frames of its load's failed init named (the module is gone)."""
        record = self.records.get(leak.pid)
        if record is None:
            return leak
        backtrace = tuple(record.name_frame(frame) for frame in leak.backtrace)
        own = next((frame for frame in backtrace if frame.endswith(f" [{self.module}]")), "")
        return dataclasses.replace(leak, backtrace=backtrace, frame=own or leak.frame)

    def _finish(self, points: int) -> StepResult:
        dirty = [injection for injection in self.injections if injection.leftovers]
        if dirty:
            return self._end("fail", f"fault injection: {dirty[0].describe()}", clean_run=points)
        if self.stray:
            return self._end("fail", f"fault injection: kmemleak: {self.stray[0]}", clean_run=points)
        quiet = sum(1 for injection in self.injections if injection.quiet)
        noted = f" ({quiet} quiet: __GFP_NOWARN, such as kmemleak's own records)" if quiet else ""
        message = (
            f"fault injection: init reaches {points} fault-injection point(s){noted}; each failed in turn, "
            f"every failed init unwound cleanly ({self.loads} loads)"
        )
        return self._end("pass", message, clean_run=points)

    def _end(self, status: StepStatus, message: str, clean_run: int | None = None) -> StepResult:
        lines = [injection.describe() for injection in self.injections]
        if clean_run is not None:
            lines.append(f"load #{self.loads}: init ran clean ({clean_run} point(s) reached, none failed)")
        lines += self.evidence
        return StepResult("faults", status, message=message, evidence="\n".join(lines))

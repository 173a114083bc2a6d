"""The results of a lifecycle run: one ModuleRun per module × kernel, made of StepResults.

These are the values every report (terminal, JUnit, KTAP, JSON) is written from, so they carry
the evidence a person needs to see why a step failed: the failed expectation in one line, and
the dmesg excerpt, state diff, compiler diagnostics or parsed crash report behind it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from harness.vm.crash import Crash

#: A module's verdict on one kernel. ``fail`` covers build and pre-boot check failures too;
#: ``error`` means the harness could not give a verdict (a guest lost before the module's first
#: step, twice); ``interrupted`` that the run was stopped (SIGINT/SIGTERM) before it finished;
#: ``skipped`` that the module does not apply to the kernel (a DKMS package's BUILD_EXCLUSIVE).
Verdict = Literal["pass", "fail", "crash", "timeout", "error", "interrupted", "skipped"]
StepStatus = Literal["pass", "fail", "crash", "timeout", "skip", "error", "interrupted"]
#: Every verdict, in the order reports list them.
VERDICTS: tuple[str, ...] = ("pass", "fail", "crash", "timeout", "error", "interrupted", "skipped")

#: The steps of a run, in order. Not every run has all of them (a module that cannot load on
#: the target stops after ``check``; a crash skips the rest).
STEPS = ("render", "build", "check", "load", "verify", "exercise", "unload", "cleanup", "reload")


@dataclass
class StepResult:
    """One step of one module's run on one kernel."""

    name: str
    status: StepStatus
    #: Wall-clock seconds the step took.
    duration: float = 0.0
    #: One line: what was checked and, on failure, which expectation failed.
    message: str = ""
    #: The evidence behind a failure: dmesg excerpt, state diff, diagnostics, command output.
    evidence: str = ""
    #: The parsed kernel report when the step crashed or timed out.
    crash: Crash | None = None
    #: Kernel WARNINGs the step's commands triggered (the kernel went on; see ``ModuleRun``).
    warnings: list[Crash] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Not a reason against the verdict (a skip alone is not evidence for it either)."""
        return self.status in ("pass", "skip")


@dataclass
class ModuleRun:
    """Everything that happened to one module on one kernel."""

    #: The kernel module name (as in /proc/modules).
    module: str
    #: Where it came from: a spec file, a template name or a module directory.
    source: str
    #: The kernel release it ran on.
    kernel: str
    steps: list[StepResult] = field(default_factory=list)
    #: Total wall-clock seconds, from render to the last step.
    duration: float = 0.0

    #: Steps that must have passed for a ``pass``: a verdict never claims more than ran. The
    #: runner sets it when the module reaches a guest (load, unload, cleanup, and reload when
    #: the spec asks for it); runs stopped before the guest end with a failed step anyway.
    required: tuple[str, ...] = ()
    #: The kernel target's name as users give it (``bookworm``, ``bookworm-backports``): the
    #: release alone does not say which Debian suite a report is about.
    target: str = ""
    #: Why the module was not run on this kernel at all (it excludes the kernel), or "".
    skipped: str = ""

    @property
    def verdict(self) -> Verdict:
        for step in self.steps:
            if step.status in ("crash", "timeout"):
                return step.status
        for status in ("interrupted", "error", "fail"):
            if any(step.status == status for step in self.steps):
                return status  # type: ignore[return-value]
        if self.skipped:
            return "skipped"
        if not self.steps or self.missing_evidence():
            return "error"
        return "pass"

    def missing_evidence(self) -> list[str]:
        """Required steps that did not pass (skipped or never run): why a run is not a pass."""
        passed = {step.name for step in self.steps if step.status == "pass"}
        return [name for name in self.required if name not in passed]

    @property
    def failure(self) -> StepResult | None:
        """The first step that did not pass, whose message explains the verdict."""
        return next((step for step in self.steps if not step.passed), None)

    def seal(self) -> None:
        """Called once the run is over: a run that is no pass for lack of evidence gets an
        ``error`` step saying which required steps never passed, so every report shows why."""
        if self.failure is None and self.verdict == "error":
            missing = ", ".join(self.missing_evidence()) or "no step"
            message = f"no verdict: {missing} never ran to a pass"
            self.steps.append(StepResult("verdict", "error", message=message))

    @property
    def crash(self) -> Crash | None:
        return next((step.crash for step in self.steps if step.crash is not None), None)

    def step(self, name: str) -> StepResult | None:
        return next((step for step in self.steps if step.name == name), None)

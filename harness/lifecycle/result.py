"""The results of a lifecycle run: one ModuleRun per module × kernel, made of StepResults.

These are the values every report (terminal, JUnit, KTAP, JSON) is written from, so they carry
the evidence a person needs to see why a step failed: the failed expectation in one line, and
the dmesg excerpt, state diff, compiler diagnostics or parsed crash report behind it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from harness.vm.crash import Crash

#: A module's verdict on one kernel. ``fail`` covers build and pre-boot check failures too.
Verdict = Literal["pass", "fail", "crash", "timeout"]
StepStatus = Literal["pass", "fail", "crash", "timeout", "skip"]

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

    @property
    def passed(self) -> bool:
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

    @property
    def verdict(self) -> Verdict:
        for step in self.steps:
            if step.status in ("crash", "timeout"):
                return step.status
        if any(step.status == "fail" for step in self.steps):
            return "fail"
        return "pass"

    @property
    def failure(self) -> StepResult | None:
        """The first step that did not pass, whose message explains the verdict."""
        return next((step for step in self.steps if not step.passed), None)

    @property
    def crash(self) -> Crash | None:
        return next((step.crash for step in self.steps if step.crash is not None), None)

    def step(self, name: str) -> StepResult | None:
        return next((step for step in self.steps if step.name == name), None)

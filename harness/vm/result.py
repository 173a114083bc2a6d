"""CommandResult: what one command run in a guest came back with.

It is the value every backend (QEMU, Vagrant) returns from ``run``, so the lifecycle stage can
treat an insmod that failed (non-zero exit code, message on stderr) and an insmod that took the
kernel down (``crash`` set) with one type.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.vm.crash import Crash

#: Exit code reported when the command never finished (guest hung, crashed or timed out).
NO_EXIT = -1


@dataclass(frozen=True)
class CommandResult:
    """The outcome of one guest command."""

    #: The command as it was given (a shell string, or the argv joined for display).
    command: str
    #: Like a shell: the exit status, or 128+N when killed by signal N; ``NO_EXIT`` if it never ended.
    exit_code: int
    #: Standard output and error, decoded as UTF-8 (undecodable bytes replaced).
    stdout: str = ""
    stderr: str = ""
    #: Wall-clock seconds from sending the command to its result.
    duration: float = 0.0
    #: The kernel trouble this command caused (oops, BUG, panic, lockup, hang, timeout).
    crash: Crash | None = None
    #: Kernel WARNINGs the command triggered: findings, not crashes (the kernel went on).
    warnings: tuple[Crash, ...] = ()
    #: Raw standard output, for binary data.
    stdout_bytes: bytes = field(default=b"", repr=False)

    @property
    def timed_out(self) -> bool:
        return self.crash is not None and self.crash.kind == "timeout"

    @property
    def ok(self) -> bool:
        """True when the command exited 0 and the kernel reported nothing."""
        return self.exit_code == 0 and self.crash is None

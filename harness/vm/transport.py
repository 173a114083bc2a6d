"""The narrow interface between the guest core and a way of reaching a guest.

A transport only moves bytes: it runs an argv, uploads a file, hands over the kernel log and
the serial console. It decides nothing about what the kernel did; that is the guest core's job
(:mod:`harness.vm.guest`), so the QEMU agent channel, the Vagrant box's SSH connection and the
scripted fake used by the unit tests all get the same answers by construction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from harness.vm.kmsg import LogRecord
from harness.vm.result import NO_EXIT

#: How long a killed command gets to come back before the guest counts as hung.
KILL_GRACE = 3.0
#: How often a running command's kernel output is checked for lockup reports.
HANG_POLL = 0.5
#: After a lockup/hung-task report, how long the rest of the report gets to arrive.
STUCK_GRACE = 2.0


@dataclass
class Exchange:
    """What came back from one command, before anyone judged it."""

    #: The exit status (128+N when killed by signal N), or ``NO_EXIT`` when none came back.
    exit_code: int = NO_EXIT
    stdout: bytes = b""
    stderr: bytes = b""
    #: The deadline passed and the command was told to die (its exit code says if it did).
    timed_out: bool = False
    #: The transport went away while the command ran: the guest is gone (panic, poweroff).
    died: bool = False
    #: Serial console output since the command started: the last words of a dead or hung guest.
    console: str = field(default="", repr=False)


#: Report openers after which a still-running command is not worth waiting for: the kernel is
#: poisoned anyway (an oops may leave a lock held, so the command would sit out its timeout).
_GIVE_UP = ("BUG: ", "Oops: ", "general protection fault", " blocked for more than ", "Kernel panic")


def kernel_stuck(text: str) -> bool:
    """Whether kernel output reports a lockup, hung task, oops or BUG (no need to sit out a timeout)."""
    return any(opener in text for opener in _GIVE_UP)


class ConsoleFile:
    """A serial console log file that QEMU appends to, read by offset (it may not exist yet)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    def since(self, offset: int) -> str:
        """The text appended after byte OFFSET (undecodable bytes replaced)."""
        return self.read_from(offset)[0]

    def read_from(self, offset: int) -> tuple[str, int]:
        """(the text after byte OFFSET, the offset it ends at)."""
        try:
            with self.path.open("rb") as console:
                console.seek(offset)
                data = console.read()
        except OSError:
            return "", offset
        return data.decode("utf-8", "replace"), offset + len(data)


class Transport(Protocol):
    """One guest reached one way. Every method is bounded in time."""

    def execute(self, argv: list[str], *, timeout: float, stdin: bytes | None = None) -> Exchange:
        """Run ARGV as root. At the deadline, kill the command's process group and wait
        ``KILL_GRACE`` for its exit code; cut the wait short once the kernel reports a lockup."""
        ...

    def put(self, data: bytes, guest_path: str, mode: int) -> None:
        """Write DATA to GUEST_PATH (parents created); HarnessError when the guest says no."""
        ...

    def drain(self) -> list[str]:
        """Kernel log lines that arrived since the last call, as cheaply as the transport can
        (no round trip where the guest streams them): the input of the crash scan."""
        ...

    def sync(self) -> list[LogRecord]:
        """Every kernel log record newer than the ones returned before (one round trip)."""
        ...

    def console(self) -> str:
        """The whole serial console so far."""
        ...

    def alive(self) -> bool:
        """Whether the guest can still take commands."""
        ...

    def close(self) -> None:
        """Drop the connection (the guest itself is the launcher's to stop)."""
        ...

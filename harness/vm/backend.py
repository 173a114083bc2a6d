"""The interface every VM backend implements (QEMU here, Vagrant elsewhere).

Both backends are a :class:`harness.vm.guest.Guest` (the one place that judges crashes, blame
and poisoning) over their own transport, so the contract below holds for both by construction.

The lifecycle stage drives a guest only through this protocol, so it does not care whether the
kernel runs in a throwaway QEMU process or a Vagrant box. Contract:

* ``run`` never raises for what the command or the kernel did: a non-zero exit code and stderr
  come back in the :class:`CommandResult`, and a crash the command caused is attached as
  ``result.crash``. It raises :class:`~harness.errors.HarnessError` only when the VM cannot take
  commands (already poisoned, already closed).
* A WARNING is not a crash: it comes back in ``result.warnings`` and does not poison. A command
  that times out and is killed is a ``timeout`` crash that does not poison; one the kill does not
  bring back poisons the VM.
* After a poisoning crash (oops, BUG, panic, lockup, hung task, stuck command) ``poisoned`` is True and
  ``crash`` tells why; further ``run``/``put`` calls are refused unless ``allow_poisoned=True``
  (to gather evidence from a still-alive guest) or the caller starts a fresh VM with ``restart``.
* Kernel reports logged while no command runs (a module's timer or work item) are noticed at
  the next ``run``/``mark``/``dmesg``; a poisoning one is blamed on the last command
  (``crash.command`` ends in "(reported after it returned)") and poisons the VM.
* ``mark`` returns an opaque position in the kernel log; ``dmesg(since=mark)`` returns only the
  lines logged after it.
* Every wait is bounded; ``close`` always leaves no process and no temp file behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Protocol, runtime_checkable

from harness.vm.crash import Crash
from harness.vm.result import CommandResult

#: Position in the guest kernel log (the /dev/kmsg sequence number of the last record seen).
LogMark = int


@runtime_checkable
class VMBackend(Protocol):
    """A booted guest the harness drives like a remote root shell."""

    @property
    def console(self) -> str:
        """The full serial console log so far."""
        ...

    @property
    def poisoned(self) -> bool:
        """True once the kernel had an oops/BUG/panic/lockup/hang: its state can't be trusted."""
        ...

    @property
    def crash(self) -> Crash | None:
        """The crash that poisoned the VM, if any."""
        ...

    def run(
        self,
        command: str | Sequence[str],
        *,
        timeout: float = 60.0,
        allow_poisoned: bool = False,
    ) -> CommandResult:
        """Run a shell string (``sh -c``) or an argv list as root; bounded by ``timeout`` seconds."""
        ...

    def saved_answer(self, command: str) -> str | None:
        """What a guest restored from a saved state answered COMMAND (a read-only probe of
        :mod:`harness.vm.probes`) before it was saved, while it has run nothing since; else None."""
        ...

    def put(self, local: str | Path, guest_path: str, *, mode: int = 0o644) -> None:
        """Upload a host file (e.g. a built .ko) to ``guest_path``, creating parent directories."""
        ...

    def mark(self) -> LogMark:
        """The current end of the kernel log, for a later ``dmesg(since=...)``."""
        ...

    def dmesg(self, since: LogMark | None = None) -> list[str]:
        """Kernel log lines (``[seconds] message``), only those after ``since`` when given."""
        ...

    def lost(self, since: LogMark | None = None) -> int:
        """How many kernel log records after ``since`` were overwritten before they were read."""
        ...

    def restart(self) -> None:
        """Throw the current guest away and boot a fresh one with the same settings."""
        ...

    def close(self) -> None:
        """Shut the guest down (cleanly when possible) and remove everything it created."""
        ...

    def __enter__(self) -> VMBackend: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

"""The guest core: one owner of the kernel log, marks, crash scan, blame and poisoning.

Both backends (the QEMU agent channel, the Vagrant box over SSH) and the scripted fake guest of
the unit tests are a :class:`Guest` over a different :class:`~harness.vm.transport.Transport`,
so the hardest question, "did this command hurt the kernel, may I reuse this guest?", is
answered in exactly one place:

* A command's own reports are the kernel lines that arrived while it ran; when the guest died
  or could not be brought back after a timeout, the serial console's last words are read too.
* WARNINGs (and a debug kernel's lockdep and might_sleep reports) are findings, not crashes:
  they come back in ``CommandResult.warnings`` and never poison (the kernel goes on).
* An oops, BUG, panic, lockup or hung task poisons the guest. A timed-out command that the
  kill brings back is a ``timeout`` crash that does not poison; one that never comes back does.
* Reports logged while no command runs (a module's timer, work item or leftover kthread) are
  found at the next call and blamed on the previous command, "(reported after it returned)".
* The kernel log is kept as /dev/kmsg records: ``mark``/``dmesg(since=)`` are exact, and a gap
  in the sequence numbers (the ring buffer overwrote records before they were read) is counted
  so a missing line can be told from a lost one (``lost(since=)``).
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from harness.errors import HarnessError
from harness.vm.backend import LogMark
from harness.vm.console import parse_crashes, primary
from harness.vm.crash import FINDING_KINDS, Crash
from harness.vm.kmsg import LogRecord
from harness.vm.result import NO_EXIT, CommandResult
from harness.vm.transport import Exchange, Transport

_PLAIN_WORDS = re.compile(r"[A-Za-z0-9_./:,+@%-][A-Za-z0-9_./:,+@%=-]*(?:\s+[A-Za-z0-9_./:,+@%=-]+)*")
_SHELL_WORDS = frozenset(
    ". : [ alias bg break cd command continue echo eval exec exit export false fg getopts hash jobs kill "
    "local printf pwd read readonly return set shift test times trap true type ulimit umask unalias unset "
    "wait".split()
)


def command_argv(command: str | Sequence[str]) -> list[str]:
    """The argv to execute: a list as given; a string through ``sh -c`` unless it is plain words.

    A string with no quoting, expansion, redirection or builtin (``insmod /tmp/x.ko``) means the
    same with or without a shell, and skipping the shell saves a process start (~5 ms under TCG).
    """
    if not isinstance(command, str):
        return list(command)
    words = command.split()
    plain = words and _PLAIN_WORDS.fullmatch(command.strip()) and "=" not in words[0]
    if plain and words[0] not in _SHELL_WORDS:
        return words
    return ["/bin/sh", "-c", command]


def display(command: str | Sequence[str]) -> str:
    return command if isinstance(command, str) else shlex.join(command)


class Guest:
    """A booted guest driven like a remote root shell (see :class:`harness.vm.backend.VMBackend`).

    Backends set ``transport`` once the guest is up and call :meth:`_reset` for every new boot.
    """

    def __init__(self, transport: Transport | None = None) -> None:
        self.transport: Transport | None = transport
        self._reset()

    def _reset(self, records: Sequence[LogRecord] = ()) -> None:
        """Forget everything about the previous guest; RECORDS are the new one's boot log."""
        self._records: list[LogRecord] = []
        #: (sequence number after which records were lost, how many)
        self._gaps: list[tuple[int, int]] = []
        self._crash: Crash | None = None
        self._poisoned = False
        self._dead = False
        self._last_command = ""
        #: Answers of :data:`harness.vm.probes.SAVED` the saved guest gave right before it was
        #: saved; valid until this guest runs a command (uploads change no kernel state).
        self._saved_answers: dict[str, str] = {}
        self._take(records)
        if self.transport is not None:
            self.transport.drain()  # the boot's lines are not any command's

    # -- state -------------------------------------------------------------------------------

    @property
    def poisoned(self) -> bool:
        return self._poisoned

    @property
    def crash(self) -> Crash | None:
        return self._crash

    @property
    def console(self) -> str:
        return self.transport.console() if self.transport is not None else ""

    def _usable(self, allow_poisoned: bool) -> Transport:
        if self.transport is None or self._dead or not self.transport.alive():
            if self._crash is not None:
                raise HarnessError(f"the VM is gone after {self._crash.summary()}; start a fresh VM")
            raise HarnessError("the VM is not running")
        if self._poisoned and not allow_poisoned:
            assert self._crash is not None
            raise HarnessError(
                f"the VM is poisoned by {self._crash.summary()}; start a fresh VM (vm.restart())"
            )
        return self.transport

    def _poison(self, crash: Crash) -> None:
        if not self._poisoned:
            self._poisoned, self._crash = True, crash

    # -- commands ----------------------------------------------------------------------------

    def saved_answer(self, command: str) -> str | None:
        """COMMAND's output as the saved guest this one was restored from printed it right
        before it was saved, while this guest has run no command yet: the same memory, the same
        answer. None when there is none (a cold boot, another backend, a command already run);
        only the read-only commands of :data:`harness.vm.probes.SAVED` are answered."""
        return self._saved_answers.get(command)

    def _argv(self, command: str | Sequence[str]) -> list[str]:
        return command_argv(command)

    def run(
        self,
        command: str | Sequence[str],
        *,
        timeout: float = 60.0,
        allow_poisoned: bool = False,
        stdin: bytes | None = None,
    ) -> CommandResult:
        """Run COMMAND as root; never raises for what the command or the kernel did."""
        self._catch_up()
        transport = self._usable(allow_poisoned)
        self._saved_answers = {}  # whatever the command does, the saved guest's answers may be stale
        shown = display(command)
        started = time.monotonic()
        exchange = transport.execute(self._argv(command), timeout=timeout, stdin=stdin)
        crash, warnings = self._judge(exchange, shown, timeout)
        self._last_command = shown
        return CommandResult(
            command=shown,
            exit_code=exchange.exit_code,
            stdout=exchange.stdout.decode("utf-8", "replace"),
            stderr=exchange.stderr.decode("utf-8", "replace"),
            duration=time.monotonic() - started,
            crash=crash,
            warnings=tuple(warnings),
            stdout_bytes=exchange.stdout,
        )

    def _judge(self, exchange: Exchange, shown: str, timeout: float) -> tuple[Crash | None, list[Crash]]:
        """What the command did to the kernel; poisons the guest when it must."""
        lines = self._drain()
        hung = exchange.timed_out and exchange.exit_code == NO_EXIT
        if exchange.died or hung:
            # The guest can't tell us any more: the console holds the last words.
            lines += exchange.console.splitlines()
        reports = parse_crashes(lines, command=shown)
        warnings = [report for report in reports if report.kind in FINDING_KINDS]
        crash = primary([report for report in reports if report.kind not in FINDING_KINDS])
        if exchange.died:
            if crash is None:
                title = f"the guest died while running {shown!r}"
                crash = Crash(kind="panic", title=title, command=shown, panicked=True)
            elif not crash.panicked:
                crash = replace(crash, panicked=True)
            self._dead = True
            self._guest_died()
        elif exchange.timed_out and crash is None:
            how = "was killed" if not hung else "could not be killed: the guest is stuck"
            crash = Crash(
                kind="timeout", title=f"command did not finish within {timeout:g} s and {how}", command=shown
            )
        if crash is not None and (crash.poisons and crash.kind != "timeout" or hung or exchange.died):
            self._poison(crash)
        return crash, warnings

    def _guest_died(self) -> None:
        """The transport went away mid-command; backends reap what is left of the guest."""

    def _drain(self) -> list[str]:
        if self.transport is None or self._dead:
            return []
        return self.transport.drain()

    def _catch_up(self) -> None:
        """Reports the kernel logged while no command ran are blamed on the previous command."""
        if self.transport is None or self._dead:
            return
        if not self.transport.alive():
            # The guest died between commands (a module's timer or work item panicked).
            lines = self._drain() + self.transport.console().splitlines()[-200:]
            crash = primary(parse_crashes(lines)) or Crash(
                kind="panic", title="the guest died between commands", panicked=True
            )
            self._dead = True
            self._poison(self._blamed(replace(crash, panicked=True)))
            self._guest_died()
            return
        found = primary([c for c in parse_crashes(self._drain()) if c.kind not in FINDING_KINDS])
        if found is not None and found.poisons:
            self._poison(self._blamed(found))

    def _blamed(self, crash: Crash) -> Crash:
        blamed = f"{self._last_command} (reported after it returned)" if self._last_command else ""
        return replace(crash, command=blamed)

    # -- files -------------------------------------------------------------------------------

    def put(self, local: str | Path, guest_path: str, *, mode: int = 0o644) -> None:
        """Upload the host file LOCAL to GUEST_PATH (parents created); raises HarnessError on failure."""
        source = Path(local)
        try:
            data = source.read_bytes()
        except OSError as error:
            raise HarnessError(f"cannot read {source}: {error.strerror}") from None
        self.put_bytes(data, guest_path, mode=mode)

    def put_bytes(self, data: bytes, guest_path: str, *, mode: int = 0o644) -> None:
        """Write DATA to GUEST_PATH in the guest."""
        if not guest_path.startswith("/"):
            raise HarnessError(f"guest path must be absolute: {guest_path!r}")
        self._usable(allow_poisoned=True).put(data, guest_path, mode)

    # -- kernel log --------------------------------------------------------------------------

    def _sync(self) -> None:
        if self.transport is not None and not self._dead and self.transport.alive():
            self._take(self.transport.sync())
            self._catch_up()

    def _take(self, records: Sequence[LogRecord]) -> None:
        for record in records:
            last = self._records[-1].seq if self._records else None
            if last is not None and record.seq <= last:
                continue  # already known (a transport that re-reads the whole log)
            if last is not None and record.seq > last + 1:
                self._gaps.append((last, record.seq - last - 1))
            self._records.append(record)

    def mark(self) -> LogMark:
        """The sequence number of the newest kernel log record (after fetching new ones)."""
        self._sync()
        return self._records[-1].seq if self._records else -1

    def dmesg(self, since: LogMark | None = None) -> list[str]:
        """Kernel log lines as ``dmesg`` prints them; only those after SINCE when given."""
        self._sync()
        return [r.line() for r in self._records if since is None or r.seq > since]

    def lost(self, since: LogMark | None = None) -> int:
        """How many kernel log records after SINCE were overwritten before they could be read."""
        self._sync()
        return sum(count for after, count in self._gaps if since is None or after >= since)

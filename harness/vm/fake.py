"""A scripted guest: the guest core over a table of command → reply and a tiny model of a kernel.

It exists so the rules that decide verdicts (step order, skips, blame, poisoning, reuse and
replacement of guests, retries) can be pinned down in milliseconds, without booting anything:
``FakeVM`` is a real :class:`~harness.vm.guest.Guest`, so the judging code under test is the
same code the QEMU and Vagrant backends run; only the transport is scripted.

The model answers what the lifecycle asks when the script does not say otherwise: ``insmod``
adds a module, ``rmmod`` removes it, ``/proc/modules``, ``initstate``, the taint mask and the
state snapshot reflect that, and everything else exits 0. A script entry overrides any command
whose text matches its regular expression (first match wins); a list of replies is used in
order, its last reply repeating.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError
from harness.vm.guest import Guest
from harness.vm.kmsg import LogRecord
from harness.vm.result import NO_EXIT
from harness.vm.transport import Exchange


@dataclass(frozen=True)
class Reply:
    """How the scripted guest answers one command."""

    exit_code: int = 0
    stdout: str = ""
    stderr: str = ""
    #: Kernel log lines the command causes while it runs.
    log: tuple[str, ...] = ()
    #: Kernel log lines that appear after it returned (a timer, a work item, a leftover kthread).
    later: tuple[str, ...] = ()
    #: The command does not finish before its deadline...
    hangs: bool = False
    #: ...and the kill brings it back (exit 137), or not (the guest is stuck).
    killable: bool = True
    #: The guest goes away while the command runs (panic, QEMU exit).
    dies: bool = False
    #: What the serial console shows while it runs (a dying guest's last words).
    console: str = ""
    #: Kernel log records overwritten before they could be read, just before this command's log.
    lose: int = 0
    #: Leave the model alone (e.g. an insmod that fails must not add the module).
    model: bool = True


Answer = Reply | Sequence[Reply] | Callable[[str], Reply]


@dataclass
class KernelModel:
    """What the scripted kernel has loaded and how tainted it is."""

    modules: list[str] = field(default_factory=list)
    taint: int = 0
    files: set[str] = field(default_factory=set)

    def answer(self, command: str) -> Reply:
        words = command.split()
        if words and words[0].endswith("insmod") and len(words) > 1:
            name = Path(words[1]).name.removesuffix(".ko").replace("-", "_")
            if name in self.modules:
                return Reply(1, stderr=f"insmod: ERROR: could not insert module {words[1]}: File exists")
            self.modules.append(name)
            self.taint |= 1 << 12  # O: out-of-tree
            return Reply()
        if words and words[0].endswith("rmmod"):
            for part in command.split("&&"):
                name = part.split()[-1].replace("-", "_")
                if name not in self.modules:
                    return Reply(1, stderr=f"rmmod: ERROR: Module {name} is not currently loaded")
                self.modules.remove(name)
            return Reply()
        if len(words) > 2 and words[0] == "cat":
            # cat of several files: each file's answer in turn; cat goes on past a missing one.
            parts = [self.answer(f"cat {path}") for path in words[1:]]
            code = max(part.exit_code for part in parts)
            stdout, stderr = "".join(p.stdout for p in parts), "".join(p.stderr for p in parts)
            return Reply(code, stdout=stdout, stderr=stderr)
        if command == "cat /proc/modules":
            lines = [f"{name} 16384 0 - Live 0xffffffffc0000000 (O)" for name in self.modules]
            return Reply(stdout="".join(line + "\n" for line in lines))
        match = re.fullmatch(r"cat /sys/module/(\S+)/initstate", command)
        if match:
            if match.group(1) in self.modules:
                return Reply(stdout="live\n")
            return Reply(1, stderr="cat: can't open: No such file or directory")
        if command == "cat /proc/sys/kernel/tainted":
            return Reply(stdout=f"{self.taint}\n")
        match = re.fullmatch(r"test -e (\S+)", command)
        if match:
            return Reply(0 if match.group(1).strip("'") in self.files else 1)
        if "echo @@end" in command:  # the lifecycle's state snapshot
            return Reply(stdout=self.snapshot(kallsyms="@@kallsyms" in command))
        return Reply()

    def snapshot(self, kallsyms: bool = False) -> str:
        parts = ["@@devices", "Character devices:", "  1 mem", "@@misc", "@@class", "@@dev", "/dev/null"]
        parts += ["@@proc", "/proc/modules", "@@debugfs", "@@modules", *self.modules]
        parts += ["@@taint", str(self.taint)]
        if kallsyms:
            parts.append("@@kallsyms")
        return "\n".join([*parts, "@@end"]) + "\n"


class ScriptedTransport:
    """A :class:`~harness.vm.transport.Transport` whose guest follows a script."""

    def __init__(self, script: Sequence[tuple[str, Answer]] = (), model: KernelModel | None = None) -> None:
        self.script = [(re.compile(pattern), answer) for pattern, answer in script]
        self.model = model or KernelModel()
        #: Every command run, as text, in order.
        self.calls: list[str] = []
        self.uploads: dict[str, bytes] = {}
        self._used: dict[int, int] = {}
        self._seq = 0
        self._undrained: list[str] = []
        self._unsynced: list[LogRecord] = []
        self._later: list[str] = []
        self._console: list[str] = []
        self._alive = True
        self._just_returned = False
        self.log("Linux version 6.1.0-test-amd64 (scripted guest)")

    # -- scripting ---------------------------------------------------------------------------

    def _reply(self, command: str) -> Reply:
        for index, (pattern, answer) in enumerate(self.script):
            if pattern.search(command):
                if callable(answer):
                    return answer(command)
                if isinstance(answer, Reply):
                    return answer
                used = self._used.get(index, 0)
                self._used[index] = used + 1
                return answer[min(used, len(answer) - 1)]
        return Reply()

    def log(self, *lines: str, lose: int = 0) -> None:
        """The kernel logs LINES now (after LOSE records were overwritten unread)."""
        self._seq += lose
        for line in lines:
            self._seq += 1
            record = LogRecord(seq=self._seq, level=4, usec=self._seq * 1000, text=line)
            self._undrained.append(record.line())
            self._unsynced.append(record)

    def die(self, console: str = "") -> None:
        """The guest goes away while idle (a panic in a timer), leaving CONSOLE as last words."""
        self._console.append(console)
        self._alive = False

    # -- Transport ---------------------------------------------------------------------------

    def execute(self, argv: list[str], *, timeout: float, stdin: bytes | None = None) -> Exchange:
        if not self._alive:
            return Exchange(died=True)
        self._flush_later()
        command = argv[2] if argv[:2] == ["/bin/sh", "-c"] else " ".join(argv)
        self.calls.append(command)
        reply = self._reply(command)
        if reply.model and not reply.hangs and not reply.dies and reply.exit_code == 0:
            modelled = self.model.answer(command)
            if not self._reply_scripted(command):
                reply = modelled
        self.log(*reply.log, lose=reply.lose)
        self._later = list(reply.later)
        self._just_returned = True  # its own log is read first; "later" lines come after
        if reply.console:
            self._console.append(reply.console)
        if reply.dies:
            self._alive = False
            return Exchange(died=True, console=reply.console)
        if reply.hangs:
            code = 137 if reply.killable else NO_EXIT
            return Exchange(exit_code=code, timed_out=True, console=reply.console)
        return Exchange(reply.exit_code, reply.stdout.encode(), reply.stderr.encode())

    def _reply_scripted(self, command: str) -> bool:
        return any(pattern.search(command) for pattern, _ in self.script)

    def _flush_later(self) -> None:
        if self._later:
            self.log(*self._later)
            self._later = []

    def put(self, data: bytes, guest_path: str, mode: int) -> None:
        if not self._alive:
            raise HarnessError("upload failed: the guest is gone")
        self.uploads[guest_path] = data

    def drain(self) -> list[str]:
        if not self._just_returned:
            self._flush_later()
        self._just_returned = False
        lines, self._undrained = self._undrained, []
        return lines

    def sync(self) -> list[LogRecord]:
        self._flush_later()
        records, self._unsynced = self._unsynced, []
        return records

    def console(self) -> str:
        return "\n".join(self._console)

    def alive(self) -> bool:
        return self._alive

    def close(self) -> None:
        self._alive = False


class FakeVM(Guest):
    """The guest core over a :class:`ScriptedTransport`: a VM for rule tests, booted instantly."""

    def __init__(
        self, transport: ScriptedTransport | None = None, *, saved_answers: dict[str, str] | None = None
    ) -> None:
        """SAVED_ANSWERS: as a guest restored from a saved state has them (:mod:`harness.vm.probes`)."""
        super().__init__(transport or ScriptedTransport())
        self._saved_answers = dict(saved_answers or {})
        self.closed = False

    @property
    def scripted(self) -> ScriptedTransport:
        assert isinstance(self.transport, ScriptedTransport)
        return self.transport

    def restart(self) -> None:
        raise HarnessError("a scripted guest cannot be restarted; make a new FakeVM")

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def __enter__(self) -> FakeVM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""The QEMU backend's transport: kmh-agent over a virtio-serial channel (see vm/agent/kmh-agent.c).

The agent streams every /dev/kmsg record as it appears (``L`` frames, also while idle), so the
kernel log arrives without asking: ``drain`` costs no round trip, ``sync`` one (``D``). A
command is ``E`` (argv), answered by ``O``/``W`` output and an ``X`` exit code; ``K`` kills its
process group. The agent flushes the kernel log before ``X``, so a command's own reports arrive
before its exit code.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from harness.errors import HarnessError
from harness.vm.channel import Channel, ChannelClosed, ChannelTimeout
from harness.vm.kmsg import LogRecord, parse_record
from harness.vm.transport import HANG_POLL, KILL_GRACE, STUCK_GRACE, ConsoleFile, Exchange, kernel_stuck


class AgentTransport:
    """One booted QEMU guest's agent channel; ``alive`` asks the launcher whether QEMU still runs."""

    def __init__(self, channel: Channel, console_path: Path, alive: Callable[[], bool]) -> None:
        self.channel: Channel | None = channel
        self._console = ConsoleFile(console_path)
        self._alive = alive
        #: Records received and not yet handed out by ``drain`` / ``sync`` respectively.
        self._undrained: list[LogRecord] = []
        self._unsynced: list[LogRecord] = []
        self._console_prefix = ""

    # -- plumbing ----------------------------------------------------------------------------

    def _channel(self) -> Channel:
        if self.channel is None:
            raise HarnessError("the VM is not running")
        return self.channel

    def _add(self, payload: bytes) -> LogRecord | None:
        record = parse_record(payload)
        if record is not None:
            self._undrained.append(record)
            self._unsynced.append(record)
        return record

    def _pump(self) -> None:
        """Take in what the idle agent streamed, without waiting."""
        if self.channel is None:
            return
        try:
            while True:
                kind, payload = self.channel.receive(time.monotonic())
                if kind == b"L":
                    self._add(payload)
        except ChannelTimeout:
            pass
        except ChannelClosed:
            self.close()

    def _await(self, reply: bytes, seconds: float, silence: str) -> bytes:
        """The payload of the next REPLY frame, keeping log records that arrive before it."""
        channel = self._channel()
        deadline = time.monotonic() + seconds
        try:
            while True:
                kind, payload = channel.receive(deadline)
                if kind == b"L":
                    self._add(payload)
                elif kind == reply:
                    return payload
        except (ChannelClosed, ChannelTimeout):
            raise HarnessError(silence) from None

    # -- Transport ---------------------------------------------------------------------------

    def execute(self, argv: list[str], *, timeout: float, stdin: bytes | None = None) -> Exchange:
        if stdin:
            raise HarnessError("the QEMU agent does not take standard input; upload a file instead")
        self._pump()
        channel = self._channel()
        console_start = self._console.size()
        first = len(self._undrained)
        exchange = Exchange()
        out, err = bytearray(), bytearray()
        started = time.monotonic()
        stuck = False
        try:
            channel.send(b"E", b"".join(arg.encode() + b"\0" for arg in argv))
            deadline = started + timeout
            while True:
                try:
                    kind, payload = channel.receive(min(deadline, time.monotonic() + HANG_POLL))
                except ChannelTimeout:
                    if time.monotonic() < deadline:
                        # Still running: if the kernel already reported a lockup or hung task,
                        # don't sit out the whole timeout; give the report a moment to finish.
                        if not stuck and self._stuck(first, console_start):
                            stuck = True
                            deadline = min(deadline, time.monotonic() + STUCK_GRACE)
                        continue
                    if exchange.timed_out:
                        break  # the kill did not bring it back: the guest is stuck
                    exchange.timed_out = True
                    channel.send(b"K", b"9")
                    deadline = time.monotonic() + KILL_GRACE
                    continue
                if kind == b"O":
                    out += payload
                elif kind == b"W":
                    err += payload
                elif kind == b"L":
                    self._add(payload)
                elif kind == b"X":
                    exchange.exit_code = int(payload)
                    break
        except ChannelClosed:
            exchange.died = True
            self.close()
        exchange.stdout, exchange.stderr = bytes(out), bytes(err)
        if exchange.died or exchange.timed_out:
            exchange.console = self._console.since(console_start)
        return exchange

    def _stuck(self, first: int, console_start: int) -> bool:
        text = self._console.since(console_start) + "\n".join(r.text for r in self._undrained[first:])
        return kernel_stuck(text)

    def put(self, data: bytes, guest_path: str, mode: int) -> None:
        self._channel().send(b"P", guest_path.encode() + b"\0" + f"{mode:o}".encode() + b"\0" + data)
        silence = f"upload to {guest_path} got no answer from the guest"
        payload = self._await(b"A", 30 + len(data) / 1e6, silence)
        if payload:
            raise HarnessError(f"upload failed: {payload.decode(errors='replace')}")

    def drain(self) -> list[str]:
        self._pump()
        lines = [record.line() for record in self._undrained]
        self._undrained.clear()
        return lines

    def sync(self) -> list[LogRecord]:
        self._channel().send(b"D")
        self._await(b"D", 10, "the guest did not answer a kernel log request")
        records, self._unsynced = self._unsynced, []
        return records

    def console(self) -> str:
        return self._console_prefix + self._console.since(0)

    def alive(self) -> bool:
        if self.channel is not None:
            self._pump()
        return self.channel is not None and self._alive()

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None

    # -- console -----------------------------------------------------------------------------

    def set_console_prefix(self, text: str) -> None:
        """A restored guest's console starts with the saved boot's."""
        self._console_prefix = text

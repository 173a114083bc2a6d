"""The Vagrant backend's transport: commands over one multiplexed SSH connection.

The box sends every kernel message to its serial console, which libvirt's QEMU writes to a file
on the host, so the crash scan's input (``drain``) costs no round trip: it is the console text
added since the last look. ``sync`` reads /dev/kmsg in the guest for exact records.

Timeouts are enforced in the guest by coreutils ``timeout -s KILL``, which kills the command's
whole process group, like the QEMU agent's kill: a command the kill brings back answers with
the exit code and leaves the guest usable; one stuck in the kernel never answers, and the host
gives up ``KILL_GRACE`` seconds (plus SSH's own latency) later.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from harness.errors import HarnessError
from harness.vm.kmsg import LogRecord, parse_record
from harness.vm.result import NO_EXIT
from harness.vm.transport import KILL_GRACE, ConsoleFile, Exchange
from harness.vm.vagrant.connection import GuestConnection

#: What ``timeout --verbose`` says on stderr when it had to kill the command.
_KILLED = b"timeout: sending signal KILL to command"
#: Seconds an SSH round trip may add on top of a command's own time.
SSH_SLACK = 10.0


class SshTransport:
    """One Vagrant guest over SSH; ``gone`` asks libvirt whether the domain stopped running."""

    def __init__(self, ssh: GuestConnection, console_path: Path, gone: Callable[[], bool]) -> None:
        self.ssh: GuestConnection | None = ssh
        self._console = ConsoleFile(console_path)
        self._gone = gone
        self._console_seen = self._console.size()
        self._dead = False

    def _connection(self) -> GuestConnection:
        if self.ssh is None or self._dead:
            raise HarnessError("the Vagrant VM is not running (closed, or never started)")
        return self.ssh

    def execute(self, argv: list[str], *, timeout: float, stdin: bytes | None = None) -> Exchange:
        ssh = self._connection()
        console_start = self._console.size()
        seconds = max(1, int(timeout + 0.999))
        # Through a shell that cannot exec away: a command killed by a signal then exits 128+N
        # like anywhere else (ssh itself would turn a remote death-by-signal into its own 255).
        wrapped = ["/bin/sh", "-c", 'timeout --verbose -s KILL "$@"; exit $?', "sh", str(seconds), *argv]
        process = ssh.popen(wrapped)
        exchange = Exchange()
        try:
            out, err = process.communicate(input=stdin, timeout=seconds + KILL_GRACE + SSH_SLACK)
        except subprocess.TimeoutExpired:
            # The kill in the guest did not bring the command back: it is stuck in the kernel.
            process.kill()
            process.communicate()
            exchange.timed_out = True
            exchange.console = self._console.since(console_start)
            return exchange
        code = process.returncode
        time.sleep(0.02)  # let the serial console catch up with a command that just returned
        if _KILLED in err:
            exchange.timed_out = True
            err = b"\n".join(line for line in err.split(b"\n") if _KILLED not in line)
        if code == 255 and self._gone():
            # ssh's own failure, and the domain no longer runs: the guest died under the command.
            self._dead = True
            exchange.died = True
            exchange.console = self._console.since(console_start)
            return exchange
        exchange.exit_code = code if code is not None else NO_EXIT
        exchange.stdout, exchange.stderr = out, err
        return exchange

    def put(self, data: bytes, guest_path: str, mode: int) -> None:
        script = 'mkdir -p "$(dirname "$1")" && cat > "$1" && chmod "$2" "$1"'
        argv = ["/bin/sh", "-c", script, "put", guest_path, f"{mode:o}"]
        result = self.execute(argv, timeout=120, stdin=data)
        if result.exit_code != 0:
            raise HarnessError(
                f"cannot upload to the guest's {guest_path}", details=result.stderr.decode(errors="replace")
            )

    def drain(self) -> list[str]:
        text, self._console_seen = self._console.read_from(self._console_seen)
        return text.splitlines()

    def sync(self) -> list[LogRecord]:
        result = self.execute(["dd", "if=/dev/kmsg", "iflag=nonblock", "bs=65536", "status=none"], timeout=30)
        records = []
        for line in result.stdout.split(b"\n"):
            if line and not line.startswith(b" "):
                record = parse_record(line)
                if record is not None:
                    records.append(record)
        return records

    def console(self) -> str:
        return self._console.since(0)

    def alive(self) -> bool:
        return self.ssh is not None and not self._dead

    def close(self) -> None:
        if self.ssh is not None:
            self.ssh.close()
            self.ssh = None

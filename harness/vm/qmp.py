"""A minimal QMP client: just enough of QEMU's monitor protocol to save a running guest.

QMP is line-delimited JSON over a unix socket: a greeting, ``qmp_capabilities``, then commands
whose replies are ``{"return": ...}`` or ``{"error": ...}``, interleaved with events we skip.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

from harness.errors import HarnessError


class QMP:
    def __init__(self, path: str, timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise HarnessError("QEMU's monitor socket did not open") from None
                time.sleep(0.02)
        self.file = self.sock.makefile("rwb")
        self._read()  # greeting
        self.execute("qmp_capabilities")

    def _read(self) -> dict[str, Any]:
        line = self.file.readline()
        if not line:
            raise HarnessError("QEMU closed its monitor")
        return json.loads(line)

    def execute(self, command: str, **arguments: Any) -> Any:
        """Run COMMAND; returns its ``return`` value, raises HarnessError on an ``error`` reply."""
        message: dict[str, Any] = {"execute": command}
        if arguments:
            message["arguments"] = arguments
        self.file.write(json.dumps(message).encode() + b"\n")
        self.file.flush()
        while True:
            reply = self._read()
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise HarnessError(f"QEMU refused {command}: {reply['error'].get('desc', reply['error'])}")

    def close(self) -> None:
        try:
            self.file.close()
        finally:
            self.sock.close()

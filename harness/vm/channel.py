"""Host side of the agent wire format (see vm/agent/kmh-agent.c for the guest side).

Frames are a type byte, a little-endian u32 length and the payload. Every read takes a deadline:
the host never blocks on a guest that has stopped answering, it gets :class:`ChannelTimeout`
and decides (kill the command, or declare the VM hung). :class:`ChannelClosed` means the guest
end went away: QEMU exited (panic, poweroff) or the agent died.
"""

from __future__ import annotations

import select
import socket
import struct
import time

_HEADER = struct.Struct("<cI")


class ChannelClosed(Exception):
    """The guest side closed the channel (QEMU exited or the guest died)."""


class ChannelTimeout(Exception):
    """No complete frame arrived before the deadline."""


class Channel:
    """Framed messages over the connected unix socket QEMU's virtio-serial port is wired to."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.setblocking(False)
        self._buffer = bytearray()

    def send(self, kind: bytes, payload: bytes = b"") -> None:
        data = _HEADER.pack(kind, len(payload)) + payload
        self.sock.setblocking(True)
        try:
            self.sock.sendall(data)
        except OSError as error:
            raise ChannelClosed(str(error)) from error
        finally:
            self.sock.setblocking(False)

    def _fill(self, deadline: float) -> None:
        remaining = max(0.0, deadline - time.monotonic())
        readable, _, _ = select.select([self.sock], [], [], remaining)
        if not readable:
            raise ChannelTimeout
        try:
            chunk = self.sock.recv(1 << 20)
        except BlockingIOError:
            return
        except OSError as error:
            raise ChannelClosed(str(error)) from error
        if not chunk:
            raise ChannelClosed("end of channel")
        self._buffer += chunk

    def receive(self, deadline: float) -> tuple[bytes, bytes]:
        """The next frame as (type, payload), waiting at most until DEADLINE (monotonic).

        A deadline in the past still returns a frame that has already arrived, so
        ``receive(time.monotonic())`` drains without waiting.
        """
        while len(self._buffer) < _HEADER.size:
            self._fill(deadline)
        kind, length = _HEADER.unpack_from(self._buffer)
        while len(self._buffer) < _HEADER.size + length:
            self._fill(deadline)
        payload = bytes(self._buffer[_HEADER.size : _HEADER.size + length])
        del self._buffer[: _HEADER.size + length]
        return kind, payload

    def close(self) -> None:
        self.sock.close()

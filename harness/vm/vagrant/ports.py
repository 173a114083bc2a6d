"""A free TCP port on 127.0.0.1 for a VM's SSH forward, and a check that a given one is free.

Two VMs on one forward port collide inside QEMU ("Could not set up host forwarding rule") only
after libvirt has defined the domain, so each VM gets its own port, chosen by binding port 0 and
released just before QEMU binds it; a port the caller fixed is checked the same way first.
"""

from __future__ import annotations

import socket

from harness.errors import HarnessError

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A port nothing on 127.0.0.1 listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def check_port_free(port: int) -> None:
    """Raise a HarnessError when PORT on 127.0.0.1 is already taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError as error:
            raise HarnessError(
                f"the SSH forward port {LOOPBACK}:{port} is already taken ({error.strerror}); "
                "leave the port to kmh (it picks a free one) or choose another"
            ) from error

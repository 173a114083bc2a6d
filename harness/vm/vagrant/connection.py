"""One persistent SSH connection to a Vagrant guest, built from ``vagrant ssh-config``.

``vagrant ssh -c`` costs ~3.4 s per command (it loads all of Vagrant each time); a plain ``ssh``
~1.4 s (a new handshake each time). One OpenSSH master connection (ControlMaster/ControlPersist)
that every command multiplexes over brings that to ~0.14 s, so this is what the backend uses,
through plumbum's :class:`SshMachine` (commands are values, no shell strings on the host side).
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from plumbum import ProcessExecutionError, ProcessTimedOut, local
from plumbum.machines.ssh_machine import SshMachine

from harness.errors import HarnessError


@dataclass(frozen=True)
class SshTarget:
    """Where and how to reach the guest: the parts of ``vagrant ssh-config`` we use."""

    host: str
    port: int
    keyfile: Path

    @classmethod
    def parse(cls, ssh_config: str) -> SshTarget:
        """Read ``vagrant ssh-config`` output (``Key value`` lines under ``Host default``)."""
        values: dict[str, str] = {}
        for line in ssh_config.splitlines():
            key, _, value = line.strip().partition(" ")
            if key and value and key.lower() not in values:
                values[key.lower()] = value.strip().strip('"')
        try:
            return cls(values["hostname"], int(values["port"]), Path(values["identityfile"]))
        except (KeyError, ValueError) as error:
            raise HarnessError(
                "'vagrant ssh-config' gave no usable host, port and key", details=ssh_config
            ) from error


def _options(control_path: Path) -> list[str]:
    options = {
        "ControlMaster": "auto",
        "ControlPath": str(control_path),
        "ControlPersist": "120",
        "StrictHostKeyChecking": "no",
        "UserKnownHostsFile": "/dev/null",
        "IdentitiesOnly": "yes",
        "BatchMode": "yes",
        "LogLevel": "ERROR",
        "ServerAliveInterval": "5",
        "ServerAliveCountMax": "6",
    }
    flags: list[str] = []
    for key, value in options.items():
        flags += ["-o", f"{key}={value}"]
    return flags


class GuestConnection:
    """A root shell on the guest over one multiplexed SSH connection."""

    def __init__(self, target: SshTarget, control_path: Path, *, user: str = "root") -> None:
        self.target = target
        self.control_path = control_path
        self.user = user
        options = _options(control_path)
        try:
            self.machine = SshMachine(
                target.host,
                user=user,
                port=target.port,
                keyfile=str(target.keyfile),
                ssh_opts=options,
                scp_opts=options,
                connect_timeout=20,
            )
        except (ProcessExecutionError, ProcessTimedOut, EOFError, OSError) as error:
            raise HarnessError(
                f"cannot open an SSH connection to the guest at {target.host}:{target.port} as {user}",
                details=str(error),
            ) from error

    def popen(self, argv: list[str]) -> subprocess.Popen[bytes]:
        """Start ARGV in the guest; root's login shell finds the program in its PATH.

        ssh hands the remote shell one string, so each argument is quoted here; no extra ``env``
        or ``sh`` process is spawned in the guest, where every exec is slow under emulation.
        """
        quoted = [shlex.quote(arg) for arg in argv]
        # plumbum annotates its Popen as text; without text=True the pipes carry bytes.
        return self.machine.popen(  # type: ignore[return-value]
            quoted, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )

    def close(self) -> None:
        """Close the session and stop the master connection, so no ssh process outlives the VM."""
        try:
            self.machine.close()
        except Exception:  # noqa: BLE001 - closing a dead connection must not mask the real error
            pass
        if self.control_path.exists():
            ssh = local["ssh"]
            ssh["-o", f"ControlPath={self.control_path}", "-O", "exit", "-p", str(self.target.port)][
                f"{self.user}@{self.target.host}"
            ].run(retcode=None, timeout=10)

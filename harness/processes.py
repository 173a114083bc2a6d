"""Child processes that never outlive the harness process that started them.

QEMU guests and Dask cells are started with PR_SET_PDEATHSIG, so they get a signal when their
parent dies, even by SIGKILL. The death signal fires when the *thread* that forked the child
exits, so every such child is forked from one long-lived thread, never from a short-lived worker
thread (whose end would otherwise take the child with it).
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import IO

PR_SET_PDEATHSIG = 1

_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kmh-spawner")


def _die_with_parent(death_signal: int) -> None:
    """In the child: receive DEATH_SIGNAL when the parent dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, death_signal)
    except OSError:
        pass


def spawn_tied(
    argv: list[str], log: IO[bytes], *, death_signal: int = signal.SIGKILL
) -> subprocess.Popen[bytes]:
    """Start ARGV (output to LOG, no stdin) so that it gets DEATH_SIGNAL if the harness dies."""
    return _SPAWNER.submit(
        subprocess.Popen,
        argv,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=partial(_die_with_parent, death_signal),
    ).result()

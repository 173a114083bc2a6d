"""One advisory lock per store directory, shared by every store kept under the cache root.

Store changes (adding a kernel target, creating a build environment) are made under an exclusive
``flock`` on ``<store>/.lock``, so two harness processes never build the same thing at once.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def exclusive(directory: Path) -> Iterator[None]:
    """Hold ``DIRECTORY/.lock`` exclusively for the block (the directory is created if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

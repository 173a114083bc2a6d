"""How often the build stores (build copies, the build cache, rendered templates) are swept.

Each store removes what nobody used for a week. A sweep stats every entry, and after a week of
runs there are thousands (a warm ``kmh run`` spent 0.4 s of its 2.3 s sweeping build copies), so
a sweep runs at most once per :data:`PRUNE_INTERVAL_SECONDS`, recorded by a stamp file's mtime.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

#: A store is swept at most this often.
PRUNE_INTERVAL_SECONDS = 3600


def due(stamp: Path, now: float) -> bool:
    """True (and STAMP touched) when the sweep STAMP records is older than PRUNE_INTERVAL_SECONDS."""
    with contextlib.suppress(OSError):
        if now - stamp.stat().st_mtime < PRUNE_INTERVAL_SECONDS:
            return False
    with contextlib.suppress(OSError):
        stamp.touch()
        os.utime(stamp, (now, now))
    return True

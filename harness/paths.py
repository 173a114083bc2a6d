"""Where the harness keeps its per-user state (kernels, guest image layers, VM decisions).

Everything lives under one cache root so a user can see and delete it: ``$KMH_CACHE`` when set,
else ``$XDG_CACHE_HOME/kmh``, else ``~/.cache/kmh``.

Run-time data (C templates, guest sources, box recipe) is found with :mod:`harness.resources`,
which works from a wheel too; :data:`REPO_ROOT` only means something in a clone (tests,
benchmarks, the example specs under ``modules/``).
"""

import os
from pathlib import Path

#: The clone this package sits in, when it does (not in an installed wheel).
REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_root() -> Path:
    """The per-user cache directory, created on first use."""
    explicit = os.environ.get("KMH_CACHE")
    if explicit:
        root = Path(explicit)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg) if xdg else Path.home() / ".cache") / "kmh"
    root.mkdir(parents=True, exist_ok=True)
    return root

"""Where the harness keeps its per-user state (kernels, guest image layers, VM decisions).

Everything lives under one cache root so a user can see and delete it: ``$KMH_CACHE`` when set,
else ``$XDG_CACHE_HOME/kmh``, else ``~/.cache/kmh``. The repository root is found from this file,
because the C templates and guest recipes are shipped beside the package, not inside it.
"""

import os
from pathlib import Path

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

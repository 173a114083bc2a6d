"""Named sets of kernels for matrix runs (``kmh run --kernels stable``).

Each preset is a list of suite shorthands, so it always means the suites' *current* kernels
(each resolved and added on first use like any ``--kernel SUITE``), never stale ABI numbers.
"""

from __future__ import annotations

from harness.errors import HarnessError

PRESETS: dict[str, tuple[str, ...]] = {
    # The newest kernel of every Debian release with security support: bullseye (LTS, 5.10),
    # bookworm (oldstable, 6.1) and trixie (stable, 6.12).
    "stable": ("bullseye", "bookworm", "trixie"),
    # What the test suite runs every shipped spec on: 5.10, 6.1, 6.12, 7.3 and 7.2.
    "matrix": ("bullseye", "bookworm", "trixie", "trixie-backports", "sid"),
    # Every suite the harness knows.
    "all": (
        "bullseye",
        "bookworm",
        "bookworm-backports",
        "bookworm-security",
        "trixie",
        "trixie-backports",
        "forky",
        "sid",
        "experimental",
    ),  # fmt: skip
}


def expand(preset: str) -> tuple[str, ...]:
    """The suite shorthands PRESET names."""
    if preset not in PRESETS:
        raise HarnessError(
            f"unknown kernel preset {preset!r}; presets: "
            + "; ".join(f"{name} = {', '.join(suites)}" for name, suites in PRESETS.items())
        )
    return PRESETS[preset]

"""Batch and blame: the one algorithm both the host's kbuild and the in-guest kbuild follow.

One ``make`` over many modules is several times faster than one per module, but when one module
fails, modpost runs for nobody. So: build the batch; the modules the compiler or modpost named
are final failures; build the rest again without them (their objects are already there, so this
is quick); a failure nobody can be blamed for falls back to building each remaining module
alone, so one bad module never hides the others.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol


class Buildable(Protocol):
    """What the algorithm needs of a build result."""

    source_dir: Path
    modules: list


#: Builds a batch: fills in each result's log, diagnostics and modules, and returns the
#: source directories the build blamed for its failure.
MakeBatch = Callable[[list], set[Path]]


def batch_and_blame(results: list[Buildable], make: MakeBatch) -> None:
    """Build RESULTS with as few MAKE calls as failures allow (see the module docstring)."""
    pending = list(results)
    for _round in range(len(results) + 1):
        blamed = make(pending)
        unfinished = [result for result in pending if not result.modules]
        if not unfinished or len(pending) == 1:
            return
        attributed = [result for result in unfinished if result.source_dir in blamed]
        if attributed and len(attributed) < len(unfinished):
            # The blamed modules are final; the others only lost their modpost step. Modules
            # that did link stay in the batch: they may export what the others need (5.10's and
            # 7.x's modpost stop all linking at a GPL-only or undefined-symbol error).
            pending = [result for result in pending if result not in attributed]
            continue
        if not attributed:
            # Failure without an owner: build each remaining module alone.
            for result in unfinished:
                make([result])
        return

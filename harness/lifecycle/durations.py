"""Each module's own share of a shared build, so per-module times add up to the real time.

The runner builds many modules in one batched kbuild; charging every module the whole batch's
time made a 55 s run of 42 modules report 26 minutes of module time (and JUnit suites 37 s of
build each). A batch's time is split evenly between the modules it built, and a module several
specs share (a common companion) splits its part between them.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from typing import TypeVar

Key = TypeVar("Key", bound=Hashable)


def build_shares(batches: Iterable[tuple[Sequence[Key], float]], users: dict[Key, int]) -> dict[Key, float]:
    """Seconds of build time charged to each (module, user) pair: batch time / size / users.

    BATCHES are (modules built together, seconds the batch took); USERS counts the specs using
    each module. Summed over all users of all modules, the shares give back the batches' total.
    """
    shares: dict[Key, float] = {}
    for modules, seconds in batches:
        for module in modules:
            shares[module] = shares.get(module, 0.0) + seconds / len(modules) / max(1, users.get(module, 1))
    return shares

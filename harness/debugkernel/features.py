"""Which detectors a kernel target offers, read from its own .config.

A detector runs only when the target was built with its feature: a stock Debian kernel has none
of them, so the same spec runs there exactly as before (and passes silently, which is the point
of running it on a debug target too).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from harness.debugkernel.config import read_config
from harness.kernels.target import KernelTarget


@dataclass(frozen=True)
class Features:
    """The debug features of one kernel target."""

    kmemleak: bool = False
    kasan: bool = False
    lockdep: bool = False
    atomic_sleep: bool = False
    failslab: bool = False
    kunit: bool = False

    @classmethod
    def of(cls, target: KernelTarget) -> Features:
        """Read once per config file version: every VM start and every module's cycle asks, and
        parsing a 260 KB .config costs ~10 ms."""
        try:
            stamp = target.config.stat().st_mtime_ns
        except OSError:
            stamp = 0
        return _features_of(target.config, stamp)

    @property
    def any(self) -> bool:
        return any((self.kmemleak, self.kasan, self.lockdep, self.atomic_sleep, self.failslab, self.kunit))

    def kernel_params(self) -> str:
        """Boot parameters the detectors need ("" for none).

        ``init_on_alloc=1`` for kmemleak: it counts any word that looks like a pointer to an object
        as a reference, and a fresh allocation otherwise keeps its previous user's bytes (on 6.12 a
        leaked buffer stayed "referenced" by a stale copy at offset 0 of an unrelated 80-byte
        object). Zeroed allocations leave only pointers someone wrote since.
        """
        return "init_on_alloc=1" if self.kmemleak else ""

    def names(self) -> list[str]:
        return [name for name, on in vars(self).items() if on]


@functools.lru_cache(maxsize=32)
def _features_of(config_path: Path, stamp: int) -> Features:
    config = read_config(config_path)

    def on(option: str) -> bool:
        return config.get(option) == "y"

    return Features(
        kmemleak=on("DEBUG_KMEMLEAK") and not on("DEBUG_KMEMLEAK_DEFAULT_OFF"),
        kasan=on("KASAN"),
        lockdep=on("PROVE_LOCKING"),
        atomic_sleep=on("DEBUG_ATOMIC_SLEEP"),
        failslab=on("FAILSLAB") and on("FAULT_INJECTION_DEBUG_FS"),
        kunit=config.get("KUNIT") in ("y", "m"),
    )

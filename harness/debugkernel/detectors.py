"""The debug kernel's detectors inside one module's cycle (see :mod:`harness.lifecycle.cycle`).

KASAN, lockdep and might_sleep reports need nothing here: they are kernel log reports, parsed by
:mod:`harness.vm.console` like any oops or WARNING. kmemleak must be asked: the cycle calls
:meth:`Detectors.before_load` (forget older suspects), :meth:`Detectors.loaded` (record where the
module sits) and :meth:`Detectors.leaks` (after unload, or after a failed init). On a target
without the feature every call is a no-op, so stock kernels run exactly as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from harness.debugkernel import kmemleak
from harness.debugkernel.features import Features
from harness.vm.result import CommandResult

Shell = Callable[..., CommandResult]


def target_features(release: str) -> Features:
    """The features of the installed target RELEASE (none for a target the store doesn't hold)."""
    from harness.errors import HarnessError
    from harness.kernels.store import KernelStore

    try:
        return Features.of(KernelStore().get(release))
    except (HarnessError, OSError):
        return Features()


class Detectors:
    """kmemleak bookkeeping for one module (and its companions) in one guest."""

    def __init__(self, features: Features, sh: Shell, built: dict[str, Path]) -> None:
        self.features = features
        self.sh = sh
        self.built = built
        self.layouts: dict[str, kmemleak.ModuleLayout] = {}
        self._load_started = 0.0
        #: The guest's uptime when the load started (kmemleak ages objects by the guest's clock).
        self._guest_load_started = 0.0

    def started(self) -> None:
        """A load starts now: what it allocates is old enough for kmemleak MIN_AGE later."""
        self._load_started = time.monotonic()

    def before_load(self) -> None:
        self.started()
        if self.features.kmemleak:
            cleared = self.sh(kmemleak.CLEAR_COMMAND, what="kmemleak clear")
            self._guest_load_started = kmemleak.guest_uptime(cleared.stdout)

    def loaded(self, names: list[str]) -> None:
        """Record the sections of the loaded modules NAMES (their addresses die with them)."""
        if not self.features.kmemleak:
            return
        for name in names:
            listing = self.sh(kmemleak.sections_command(name), what=f"reading {name}'s sections").stdout
            self.layouts[name] = kmemleak.ModuleLayout.from_guest(name, listing, self.built.get(name))

    def leaks(self, main: str) -> list[kmemleak.Leak]:
        """Objects the modules allocated and nobody freed (main's first when nothing is recorded)."""
        if not self.features.kmemleak:
            return []
        # The host's clock from the last load (the fault sweep marks each of its loads with
        # started()), then the guest's own from before_load() in the scan command.
        wait = kmemleak.MIN_AGE - (time.monotonic() - self._load_started)
        if wait > 0:
            time.sleep(wait)
        scan = kmemleak.scan_command(self._guest_load_started)
        report = self.sh(scan, timeout=120, what="kmemleak scan").stdout
        layouts = list(self.layouts.values()) or [kmemleak.ModuleLayout(main)]
        main_first = sorted(layouts, key=lambda layout: layout.name != main)
        found = kmemleak.attribute(kmemleak.parse_report(report), main_first)
        self.sh(kmemleak.CLEAR_COMMAND, what="kmemleak clear")
        return found


def leak_message(leaks: list[kmemleak.Leak]) -> str:
    """``kmemleak: 1 object(s) (2048 bytes) allocated by kmh_leak never freed``, per module."""
    by_module: dict[str, list[kmemleak.Leak]] = {}
    for leak in leaks:
        by_module.setdefault(leak.module, []).append(leak)
    parts = [
        f"{len(found)} object(s) ({sum(leak.size for leak in found)} bytes) allocated by {module} never freed"
        for module, found in by_module.items()
    ]
    return "kmemleak: " + "; ".join(parts)

"""Guests booted ahead of need: one per kernel while the host renders and builds.

Under TCG a boot takes about as long as a kbuild, so booting while building hides it; the first
worker of a kernel takes the guest, and whatever nobody took is closed at the end.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from harness.errors import HarnessError


class Prewarmed:
    """At most one ready (or booting) guest per kernel release."""

    def __init__(self, workers: int = 4) -> None:
        self._booter = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kmh-prewarm")
        self._futures: dict[str, Future] = {}
        self._lock = threading.Lock()

    def boot(self, release: str, start: Callable[[], object]) -> None:
        """Start booting a guest for RELEASE in the background."""
        with self._lock:
            self._futures[release] = self._booter.submit(start)

    def warm(self, work: Callable[[], object]) -> None:
        """Run WORK in the background (e.g. reading a target's facts while kbuild runs); a
        failure is ignored here: the same work done again later reports it."""
        self._booter.submit(work)

    def give(self, release: str, vm: object) -> None:
        """Hand a running guest on to the next taker of RELEASE."""
        future: Future = Future()
        future.set_result(vm)
        with self._lock:
            self._futures[release] = future

    def take(self, release: str):  # type: ignore[no-untyped-def]
        """The guest booted for RELEASE, or None (none was booted, or its boot failed: the
        caller boots again and reports that boot's error)."""
        with self._lock:
            future = self._futures.pop(release, None)
        if future is None:
            return None
        try:
            return future.result()
        except HarnessError:
            return None

    def close(self) -> None:
        """Close every guest nobody took (waiting for boots still under way)."""
        with self._lock:
            futures, self._futures = list(self._futures.values()), {}
        for future in futures:
            try:
                vm = future.result()
            except Exception:  # noqa: BLE001 - an unused boot that failed needs no report
                continue
            vm.close()  # type: ignore[attr-defined]
        self._booter.shutdown(wait=True)

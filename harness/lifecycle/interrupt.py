"""SIGINT and SIGTERM as an exception, so an interrupted run unwinds instead of vanishing.

Python turns SIGINT into KeyboardInterrupt but lets SIGTERM kill the process outright: no
report, temp directories left behind, ``make``/``cc1`` orphaned. Inside :func:`interruptible`
both raise :class:`Interrupted` in the main thread, whose handlers (the runner's) stop the work
in flight, keep every finished result, and mark the rest ``interrupted``; the command then
writes its reports and exits 128 + the signal number (130, 143), as shells expect.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class Interrupted(BaseException):
    """The run was asked to stop by a signal (a BaseException, like KeyboardInterrupt)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@contextmanager
def interruptible() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise :class:`Interrupted` (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_interrupted(signum: int, _frame: FrameType | None) -> None:
        # Once is enough: a second signal while unwinding must not cut the clean-up short.
        for each in (signal.SIGINT, signal.SIGTERM):
            signal.signal(each, signal.SIG_IGN)
        raise Interrupted(signum)

    previous = {each: signal.signal(each, raise_interrupted) for each in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for each, handler in previous.items():
            signal.signal(each, handler)

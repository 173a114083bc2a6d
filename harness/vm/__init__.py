"""vm stage: disposable guests that boot a kernel target and run commands as root.

Public API (stable; the lifecycle stage, the pytest plugin and the Vagrant backend build on it)::

    from harness.vm import VM, VMConfig, CommandResult, Crash

    with VM(kernel) as vm:                 # boots (or restores a snapshot); HarnessError if it can't
        vm.put("hello.ko", "/tmp/hello.ko")              # upload a host file (parents created)
        mark = vm.mark()                                  # position in the kernel log
        r = vm.run("insmod /tmp/hello.ko", timeout=30)    # -> CommandResult, never raises for
        r.exit_code, r.stdout, r.stderr, r.ok             #    what the command or kernel did
        r.crash                                           # Crash | None: what this command did
        r.warnings                                        # kernel WARNINGs: findings, not crashes
        vm.dmesg(since=mark)                              # only the kernel lines logged since
        vm.console                                        # the full serial console log
        vm.poisoned, vm.crash                             # after an oops: run() refuses ...
        vm.run("lsmod", allow_poisoned=True)              # ... unless asked, to gather evidence
        vm.restart()                                      # a fresh guest, same settings

``VM(kernel, VMConfig(...))`` or ``VM(kernel, memory_mb=..., ...)``: see :class:`VMConfig` for
extra target modules, ``panic_on_oops``, lockup/hung-task thresholds, the accelerator, and
``snapshot`` (on by default: the first cold boot of a configuration is saved and later VMs of it
start from that snapshot in a fraction of a second). ``VM.start()``/``close()`` work without
``with``; ``boot_seconds``, ``restored``, ``accel`` and ``alive`` describe the guest.

``run`` takes a shell string (run by ``/bin/sh -c``, dash; plain words without shell syntax are
executed directly) or an argv list. Exit codes are the shell's: 128+N when killed by signal N,
``NO_EXIT`` (-1) when the command never finished (guest died or hung). Crash kinds: oops, BUG,
panic, soft lockup, hung task, timeout; a WARNING comes back in ``r.warnings`` and does not
poison. A timed-out command is killed (with its whole process group); if that brings it back
the VM stays usable. ``vm.lost(since=mark)`` counts kernel log records overwritten unread.

Every backend is a :class:`harness.vm.guest.Guest` over a transport (:mod:`harness.vm.transport`):
the QEMU agent channel, the Vagrant box's SSH, or the scripted guest of :mod:`harness.vm.fake`
that the rule tests use. Crash scan, blame and poisoning live only in the guest core.

The interface is :class:`harness.vm.backend.VMBackend`; crash reports come from
:func:`harness.vm.console.parse_crashes`, which reads console and dmesg text alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.vm.backend import LogMark, VMBackend
from harness.vm.crash import Crash
from harness.vm.result import NO_EXIT, CommandResult

if TYPE_CHECKING:
    from harness.vm.qemu import VM, VMConfig

__all__ = ["VM", "VMConfig", "VMBackend", "LogMark", "Crash", "CommandResult", "NO_EXIT"]


def __getattr__(name: str) -> Any:
    # VM and VMConfig on first use: importing any harness.vm module (the lifecycle's results
    # import harness.vm.crash) would otherwise load QEMU, the launcher and the image recipe
    # (~60 ms) on every CLI start; `kmh run` loads them in the thread that boots the guest.
    if name in ("VM", "VMConfig"):
        from harness.vm import qemu

        return getattr(qemu, name)
    raise AttributeError(f"module 'harness.vm' has no attribute {name!r}")

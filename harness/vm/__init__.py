"""vm stage: disposable guests that boot a kernel target and run commands as root.

Public API (stable; the lifecycle stage and the Vagrant backend build on it)::

    from harness.vm import VM, CommandResult, Crash

    with VM(kernel) as vm:                       # boots; raises HarnessError if boot fails
        r = vm.run("insmod /tmp/hello.ko", timeout=30)   # -> CommandResult
        r.exit_code, r.stdout, r.stderr, r.crash        # crash: Crash | None
        vm.put("hello.ko", "/tmp/hello.ko")            # upload a host file
        m = vm.mark(); vm.run("rmmod hello"); vm.dmesg(since=m)  # new kernel log lines
        vm.console                                     # full serial log
        vm.poisoned, vm.crash                          # after an oops: refuse further runs
        vm.restart()                                   # a fresh guest, same settings

The interface is :class:`harness.vm.backend.VMBackend`; crash reports come from
:func:`harness.vm.console.parse_crashes`.
"""

from harness.vm.backend import LogMark, VMBackend
from harness.vm.crash import Crash
from harness.vm.qemu import VM, VMConfig
from harness.vm.result import CommandResult

__all__ = ["VM", "VMConfig", "VMBackend", "LogMark", "Crash", "CommandResult"]

"""Fault injection confined to one module's init: the in-guest helper and what a load says.

A failed allocation should make init unwind and return an error, leaving nothing behind. To
exercise each unwind path, :mod:`harness.debugkernel.sweep` loads the module again and again
with the Nth fault-injection point *of its init* failing. Counting from the start of insmod
(``/proc/self/fail-nth`` before exec) does not work: the loader's own allocations (exec, the
libraries, ``load_module``) come first, ~1,200 of them, and their number drifts between loads.

So the count is started exactly at init by a small helper module of ours, ``kmh_faultctl``
(C source shipped beside this file, built with our own kbuild for the target and cached like
any build). It attaches to the ``initcall_start``/``initcall_finish`` tracepoints that
``do_one_initcall`` fires around a module's init in the loading task; when the init function
belongs to the module under test it sets the task's ``fail_nth`` to N at start and, at finish,
records whether the Nth point was reached (``fired``) and resets the counter, so nothing after
init is failed. The points are failslab's (``CONFIG_FAILSLAB``): ``ignore-gfp-wait`` must be
off, or GFP_KERNEL allocations are never counted; probability stays 0 (``fail_nth`` needs no
randomness), and ``verbose=2`` prints the stack of each injected failure: the frame
``kmh_init+0x23/0x1000 [name]`` in it is the allocation site. An allocation made with
``__GFP_NOWARN`` prints nothing: with kmemleak, every slab allocation is followed by kmemleak's
own record of it (a NOWARN allocation that falls back to kmemleak's pool when it fails), so
every other N of a kmemleak kernel is such a quiet point that init does not notice. The helper
names those too: it watches the ``kmalloc``/``kmem_cache_alloc`` tracepoints for the first NULL
the armed task gets once its count reached 0, and keeps its caller (``__create_object+0x5a``).

kmalloc above 8 KiB goes to the page allocator, whose fault point (``CONFIG_FAIL_PAGE_ALLOC``)
the debug target does not build: those allocations are never failed.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from harness.debugkernel.config import read_config
from harness.errors import HarnessError
from harness.kernels.target import KernelTarget
from harness.vm.console import strip_prefix

#: The helper module's source directory (package data).
SOURCE = Path(__file__).resolve().parent / "kmh_faultctl"
NAME = "kmh_faultctl"
PARAMETERS = f"/sys/module/{NAME}/parameters"
#: What a target needs: failslab with its debugfs knobs, the tracepoints the helper attaches to.
REQUIRED = ("FAULT_INJECTION", "FAILSLAB", "FAULT_INJECTION_DEBUG_FS", "TRACEPOINTS")

FAILSLAB = "/sys/kernel/debug/failslab"
#: failslab never fails by itself (probability 0) but counts GFP_KERNEL allocations for
#: fail_nth too, and prints the call trace of each forced failure (verbose 2, no rate limit).
SETUP_COMMAND = (
    f"cd {FAILSLAB} && echo 0 > probability && echo N > ignore-gfp-wait && echo 2 > verbose "
    "&& echo 0 > verbose_ratelimit_interval_ms && echo -1 > times && echo 0 > task-filter "
    # Each injected failure dumps a stack: to the kernel log (which kmh reads) but not to the
    # emulated serial console, where a stack costs a second under TCG.
    "&& echo 1 > /proc/sys/kernel/printk"
)
#: failslab's defaults again (GFP_KERNEL ignored, verbose 2 rate-limited) and quiet boot's
#: console level (warnings and worse): other modules in this guest see the kernel as it was.
RESTORE_COMMAND = (
    f"cd {FAILSLAB} && echo Y > ignore-gfp-wait && echo 1000 > verbose_ratelimit_interval_ms "
    "&& echo 4 > /proc/sys/kernel/printk"
)
#: The kernel's line for an injected failure, followed by a dump_stack.
FORCED = "FAULT_INJECTION: forcing a failure"
#: Frames of the fault-injection and slab machinery above the caller of the allocation.
_MACHINERY = re.compile(
    r"^(dump_stack\w*|should_fail\w*|should_failslab|slab_pre_alloc_hook\S*|\w*kmem_cache_alloc\w*"
    r"|\w*kmalloc\w*|kzalloc\w*|kmemdup\w*|kstrdup\w*|krealloc\w*|kvmalloc\w*|slab_alloc\w*)\+"
)
_SYMBOL = re.compile(r"(?P<name>[\w.$]+)\+0x0/0x(?P<size>[0-9a-f]+) \[(?P<module>[\w-]+)\]")
_FRAME = re.compile(r"^\s*(?P<frame>[\w.$]+\+0x[0-9a-f]+/0x[0-9a-f]+(?: \[(?P<mod>[\w-]+)\])?)\s*$")


def missing_options(target: KernelTarget) -> list[str]:
    """The options of :data:`REQUIRED` the target was built without (``CONFIG_`` spelled out)."""
    config = read_config(target.config)
    return [f"CONFIG_{option}" for option in REQUIRED if config.get(option) != "y"]


def build_helper(target: KernelTarget) -> Path:
    """The helper's .ko for TARGET: built by our kbuild into the build tree (a no-op when built)."""
    from harness.kbuild.kbuild import build_modules, pick_module

    result = build_modules([SOURCE], target)[0]
    if not result.ok:
        why = "; ".join(str(error) for error in result.errors[:3]) or result.log.strip()[-300:]
        raise HarnessError(f"the fault-injection helper {NAME} did not build for {target.release}: {why}")
    return pick_module(result, NAME).path


def load_helper_command(path: str, target: str) -> str:
    """Load the helper for the module TARGET (the kernel's spelling: underscores)."""
    return f"/sbin/insmod {path} target={target}"


UNLOAD_HELPER_COMMAND = f"/sbin/rmmod {NAME}"
#: insmod's exit status when the module loaded (init swallowed the failure) and rmmod failed.
UNLOAD_FAILED = 99


def load_command(n: int, insmod: str, module: str) -> str:
    """One load of the module (INSMOD: kmod's insmod command) with the Nth point of its init
    failing, the helper's record of it, and an unload if init coped and the module is loaded.

    kmod's insmod, not busybox's: busybox retries a failed ``finit_module`` with
    ``init_module``, so an init that failed once would run again, unfailed, and look clean.
    """
    record = " ".join(f"{PARAMETERS}/{p}" for p in ("seen", "fired", "remaining", "ret"))
    site, init = f"{PARAMETERS}/site", f"{PARAMETERS}/init"
    # insmod's PID (the shell execs it) ties kmemleak's objects, reported later, to this load.
    load = f"/bin/sh -c {shlex.quote(f'echo kmh-pid $$; exec {insmod}')}"
    return (
        f"echo {n} > {PARAMETERS}/nth; {load}; status=$?; echo; echo kmh-faultctl-site $(cat {site}); "
        f"echo kmh-faultctl-init $(cat {init}); "
        f"echo kmh-faultctl $(cat {record}); "
        f"if [ $status = 0 ]; then /sbin/rmmod {module} || exit {UNLOAD_FAILED}; fi; exit $status"
    )


@dataclass(frozen=True)
class Record:
    """The helper's record of one load: inits seen so far, whether the Nth point was reached,
    what was left of N (init made N - remaining points when it was not), init's return value;
    and the PID insmod ran as."""

    seen: int
    fired: bool
    remaining: int
    ret: int
    pid: int = 0
    #: The caller of the failed allocation, from the allocation tracepoints ('' if not seen).
    site: str = ""
    #: Where the armed init function sat (0 if not known) and its symbol (``kmh_init+0x0/0x1000
    #: [name]``): kmemleak prints the frames of a failed init as raw addresses.
    init_address: int = 0
    init_symbol: str = ""

    def name_frame(self, frame: str) -> str:
        """A raw backtrace address inside the init function, named (``kmh_init+0x23/0x1000
        [name]``); any other frame as it was."""
        raw = re.fullmatch(r"0x([0-9a-f]+)", frame)
        symbol = _SYMBOL.fullmatch(self.init_symbol)
        if not raw or not symbol or not self.init_address:
            return frame
        offset = int(raw.group(1), 16) - self.init_address
        size = int(symbol.group("size"), 16)
        if not 0 <= offset < size:
            return frame
        return f"{symbol.group('name')}+{offset:#x}/{size:#x} [{symbol.group('module')}]"


def parse_record(stdout: str) -> Record | None:
    """The helper's line in a load command's output (None: it printed none, e.g. it is gone)."""
    pid = re.search(r"^kmh-pid (\d+)$", stdout, re.M)
    site = re.search(r"^kmh-faultctl-site ?(.*)$", stdout, re.M)
    init = re.search(r"^kmh-faultctl-init ([0-9a-f]+) (.*)$", stdout, re.M)
    for line in reversed(stdout.splitlines()):
        words = line.split()
        numbers = all(re.fullmatch(r"-?\d+", word) for word in words[1:])
        if len(words) == 5 and words[0] == "kmh-faultctl" and numbers:
            seen, fired, remaining, ret = (int(word) for word in words[1:])
            caller = site.group(1).strip() if site else ""
            where = (int(init.group(1), 16), init.group(2).strip()) if init else (0, "")
            return Record(seen, fired == 1, remaining, ret, int(pid.group(1)) if pid else 0, caller, *where)
    return None


def injected_frames(lines: list[str]) -> list[str] | None:
    """The call trace of the injected failure in LINES (dmesg since the load), None if none
    was printed (a ``__GFP_NOWARN`` allocation). Frames marked ``?`` are stack noise."""
    frames: list[str] | None = None
    for raw in lines:
        line = strip_prefix(raw)
        if FORCED in line:
            frames = []
            continue
        if frames is not None:
            match = _FRAME.match(line)
            if match and not line.lstrip().startswith("?"):
                frames.append(match.group("frame"))
            elif line.strip() == "</TASK>":
                break
    return frames


def allocation_site(frames: list[str] | None, module: str) -> str:
    """Where the failed allocation was made: the module's own frame (``kmh_init+0x23/0x1000
    [name]``), or the kernel function that allocated on init's behalf, the kernel API the
    module called (when it is another) and the module's frame; ``''`` when no stack was printed."""
    if frames is None:
        return ""
    callers = [frame for frame in frames if not _MACHINERY.match(frame)]
    if not callers:
        return "an allocation with no caller in its stack"
    own = next((i for i, frame in enumerate(callers) if frame.endswith(f" [{module}]")), None)
    if own is None or own == 0:
        return callers[0]
    api = f" in {callers[own - 1]}" if own > 1 else ""
    return f"{callers[0]}{api} called from {callers[own]}"


QUIET_WHY = "a __GFP_NOWARN allocation: no stack"
KMEMLEAK_RECORD = ", kmemleak's record of the allocation before"


@dataclass
class Injection:
    """One load whose init had its Nth fault-injection point failed, and what it left."""

    n: int
    #: The PID of the load's insmod (kmemleak names the allocating task).
    pid: int
    #: :func:`allocation_site`, or the helper's record of the caller when no stack was printed.
    site: str
    #: insmod's error ('' when init swallowed the failure and the module loaded).
    error: str
    leftovers: list[str] = field(default_factory=list)
    #: No stack was printed: a ``__GFP_NOWARN`` allocation (kmemleak's own record, mostly).
    quiet: bool = False

    def describe(self) -> str:
        where = f"failed in {self.site}" if self.site else "failed"
        if self.quiet:
            kmemleak = self.site.startswith(("__create_object+", "create_object+", "mem_pool_alloc+"))
            where += f" quietly ({QUIET_WHY}{KMEMLEAK_RECORD if kmemleak else ''})"
        result = f"init failed: {self.error}" if self.error else "init went on: loaded, then unloaded"
        left = "left behind: " + "; ".join(self.leftovers) if self.leftovers else "nothing left behind"
        return f"allocation #{self.n} of init {where}: {result}; {left}"

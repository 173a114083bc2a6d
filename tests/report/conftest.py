"""Realistic runs for the report tests: what ``kmh run`` produces for good and bad modules.

One of each verdict and each way a run ends early, with the evidence the lifecycle really
attaches: gcc diagnostics, load-ability reasons, an oops from a serial console (carriage
returns, colour codes, a NUL and an undecodable byte included), a timeout, a cleanup diff.
"""

from __future__ import annotations

import pytest

from harness.lifecycle.result import STEPS, ModuleRun, StepResult
from harness.vm.console import parse_crashes, primary
from harness.vm.crash import Crash

K61 = "6.1.0-26-amd64"
K612 = "6.12.9+bpo-amd64"


def _skipped(after: str, reason: str) -> list[StepResult]:
    rest = STEPS[STEPS.index(after) + 1 :]
    return [StepResult(name, "skip", message=reason) for name in rest]


def _passed(*names: str) -> list[StepResult]:
    return [StepResult(name, "pass", duration=0.1, message=f"{name} ok") for name in names]


GCC_DIAGNOSTICS = """\
modules/broken/broken.c: In function ‘broken_init’:
modules/broken/broken.c:8:19: error: ‘undeclared_thing’ undeclared (first use in this function)
    8 | static int oops = undeclared_thing;
      |                   ^~~~~~~~~~~~~~~~
modules/broken/broken.c:8:19: note: each undeclared identifier is reported only once
"""

OOPS_LINES = (
    "[   12.345678] BUG: kernel NULL pointer dereference, address: 0000000000000000\r",
    "[   12.345701] #PF: supervisor write access in kernel mode",
    "[   12.345720] Oops: 0002 [#1] PREEMPT SMP NOPTI",
    "[   12.345744] CPU: 0 PID: 97 Comm: insmod Tainted: G           OE      6.1.0-26-amd64 #1 Debian",
    "[   12.345790] RIP: 0010:null_deref_init+0x11/0x1000 [null_deref]",
    "[   12.345801] Code: 00 00 \x1b[31mc7 04 25 00 00 00 00\x1b[0m 2a 00 00 00 <c7> \x00 ff",
    "[   12.345900] raw byte from a broken console: \udcff end",
    "[   12.346000] Call Trace:",
    "[   12.346010]  <TASK>",
    "[   12.346020]  do_one_initcall+0x58/0x300",
    "[   12.346030]  do_init_module+0x4c/0x1f0",
)

NULL_DEREF = Crash(
    kind="oops",
    title="BUG: kernel NULL pointer dereference, address: 0000000000000000",
    function="null_deref_init",
    module="null_deref",
    call_trace=(
        "null_deref_init+0x11/0x1000 [null_deref]",
        "do_one_initcall+0x58/0x300",
        "do_init_module+0x4c/0x1f0",
        "__do_sys_finit_module+0xac/0x120",
        "do_syscall_64+0x55/0xb0",
        "entry_SYSCALL_64_after_hwframe+0x64/0xce",
        "x64_sys_call+0x1a2/0x1c0",
        "ksys_finit_module+0x10/0x20",
        "finit_module_wrapper+0x10/0x20",
        "syscall_trampoline+0x10/0x20",
    ),
    taint="OE",
    command="insmod /lib/modules/6.1.0-26-amd64/extra/null_deref.ko",
    lines=OOPS_LINES,
)

LOOP_TIMEOUT = Crash(
    kind="timeout",
    title="insmod did not return within 30 s",
    command="insmod /lib/modules/6.12.9+bpo-amd64/extra/busy_loop.ko",
    lines=("[   52.100000] watchdog: BUG: soft lockup - CPU#0 stuck for 26s! [insmod:101]",),
)

CLEANUP_DIFF = """\
left behind after rmmod:
+ /proc/devices: 240 leaky_chrdev
+ /sys/class/leaky
+ /dev/leaky0
"""


def hello_run() -> ModuleRun:
    return ModuleRun(
        "hello_kmh", "modules/hello.toml", K61, target="bookworm", steps=_passed(*STEPS), duration=1.84
    )


def build_failure_run() -> ModuleRun:
    steps = [
        *_passed("render"),
        StepResult("build", "fail", 2.1, "1 error in broken.c", evidence=GCC_DIAGNOSTICS),
        *_skipped("build", "build failed"),
    ]
    return ModuleRun(
        "broken", "modules/broken.toml", K612, target="bookworm-backports", steps=steps, duration=2.3
    )


def check_failure_run() -> ModuleRun:
    reasons = (
        "vermagic: module says '6.1.0-26-amd64 SMP preempt mod_unload modversions', "
        "kernel is '6.12.9+bpo-amd64 SMP preempt mod_unload modversions'\n"
        "symbol printk: CRC 0x92997ed8 in the module, 0x5b8239ca in Module.symvers\n"
    )
    steps = [
        *_passed("render", "build"),
        StepResult("check", "fail", 0.05, "cannot load on 6.12.9+bpo-amd64: vermagic mismatch", reasons),
        *_skipped("check", "not loadable: not booted"),
    ]
    return ModuleRun(
        "wrong_kernel",
        "modules/wrong_kernel.toml",
        K612,
        target="bookworm-backports",
        steps=steps,
        duration=0.4,
    )


def crash_run() -> ModuleRun:
    steps = [
        *_passed("render", "build", "check"),
        StepResult("load", "crash", 0.9, "insmod null_deref.ko crashed the kernel", crash=NULL_DEREF),
        *_skipped("load", "the VM crashed"),
    ]
    return ModuleRun(
        "null_deref", "modules/null_deref.toml", K61, target="bookworm", steps=steps, duration=3.2
    )


def timeout_run() -> ModuleRun:
    steps = [
        *_passed("render", "build", "check"),
        StepResult("load", "timeout", 30.0, "insmod did not return within 30 s", crash=LOOP_TIMEOUT),
        *_skipped("load", "the VM was replaced"),
    ]
    return ModuleRun(
        "busy_loop", "modules/busy_loop.toml", K612, target="bookworm-backports", steps=steps, duration=31.5
    )


def cleanup_failure_run() -> ModuleRun:
    steps = [
        *_passed("render", "build", "check", "load", "verify", "exercise", "unload"),
        StepResult("cleanup", "fail", 0.3, "3 things left behind after rmmod", CLEANUP_DIFF),
        StepResult("reload", "fail", 0.2, "insmod failed: Device or resource busy (EBUSY)", "dmesg: -16"),
    ]
    return ModuleRun(
        "leaky_chrdev", "modules/leaky_chrdev.toml", K61, target="bookworm", steps=steps, duration=2.6
    )


@pytest.fixture
def runs() -> list[ModuleRun]:
    """One run of each kind, in the order a runner would report them."""
    return [
        hello_run(),
        build_failure_run(),
        check_failure_run(),
        crash_run(),
        timeout_run(),
        cleanup_failure_run(),
    ]


@pytest.fixture
def by_module(runs: list[ModuleRun]) -> dict[str, ModuleRun]:
    return {run.module: run for run in runs}


#: A 6.12 guest's serial console as the VM backend captures it: CRLF line ends, a colour code
#: from userspace, a NUL, the BUG() in a module's exit function and the panic it leads to.
SERIAL_CONSOLE = (
    "[    3.100000] kmh-agent: running rmmod bug_exit\r\n"
    "\x1b[0;32m[  OK  ]\x1b[0m Reached target\x00 multi-user\r\n"
    "[    3.210000] ------------[ cut here ]------------\r\n"
    "[    3.210100] kernel BUG at /build/bug_exit/bug_exit.c:12!\r\n"
    "[    3.210200] Oops: invalid opcode: 0000 [#1] PREEMPT SMP NOPTI\r\n"
    "[    3.210300] CPU: 0 UID: 0 PID: 88 Comm: rmmod Tainted: G           OE      "
    "6.12.9+bpo-amd64 #1  Debian 6.12.9-1~bpo12+1\r\n"
    "[    3.210400] RIP: 0010:bug_exit_exit+0x5/0x10 [bug_exit]\r\n"
    "[    3.210500] Call Trace:\r\n"
    "[    3.210510]  <TASK>\r\n"
    "[    3.210520]  ? die+0x36/0x90\r\n"
    "[    3.210530]  __do_sys_delete_module+0x1a0/0x2f0\r\n"
    "[    3.210540]  do_syscall_64+0x82/0x190\r\n"
    "[    3.210550]  entry_SYSCALL_64_after_hwframe+0x76/0x7e\r\n"
    "[    3.210560]  </TASK>\r\n"
    "[    3.210600] ---[ end trace 0000000000000000 ]---\r\n"
    "[    3.210700] Kernel panic - not syncing: Fatal exception\r\n"
    "[    3.210800] ---[ end Kernel panic - not syncing: Fatal exception ]---\r\n"
)


@pytest.fixture
def parsed_crash_run() -> ModuleRun:
    """A run whose crash comes from the VM side's console parser, not built by hand."""
    crash = primary(parse_crashes(SERIAL_CONSOLE, command="rmmod bug_exit"))
    assert crash is not None
    steps = [
        *_passed("render", "build", "check", "load", "verify", "exercise"),
        StepResult("unload", "crash", 0.2, "rmmod bug_exit crashed the kernel", SERIAL_CONSOLE, crash=crash),
        *_skipped("unload", "the VM crashed"),
    ]
    return ModuleRun(
        "bug_exit", "modules/bad/bug_exit.toml", K612, target="bookworm-backports", steps=steps, duration=4.0
    )

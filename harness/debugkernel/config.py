"""The configuration of a debug kernel target: as small as a harness guest allows, plus the debug options.

Why so small: the target is built on every fresh CI machine (2 cores, one 90-minute budget for the
whole suite), and KASAN instruments every object file, so each driver left in costs real minutes.
The base is ``make tinyconfig`` (nothing at all) and :data:`GUEST` adds back exactly what the
kmh guest uses: an initramfs, a serial console, virtio-serial for the agent, pvpanic, the
syscalls glibc-linked dash and kmod need, ACPI so QEMU's ``pc`` machine can power the guest off.
Everything else (networking, block devices, file systems beyond proc/sysfs/tmpfs/debugfs, sound,
DRM, USB) stays out. :data:`DEBUG` then adds the detectors; KASAN_OUTLINE compiles faster than
INLINE and the guest runs little code, so the slower checks do not matter.
"""

from __future__ import annotations

import re
from pathlib import Path

#: Options the kmh guest needs (``scripts/config --enable``).
GUEST = (
    "64BIT",
    "SMP",
    "PRINTK",
    "BUG",
    "ELF_CORE",
    "MULTIUSER",
    "FUTEX",
    "EPOLL",
    "SIGNALFD",
    "TIMERFD",
    "EVENTFD",
    "SHMEM",
    "AIO",
    "ADVISE_SYSCALLS",
    "MEMBARRIER",
    "FILE_LOCKING",
    "POSIX_TIMERS",
    "BASE_FULL",
    "KALLSYMS",
    "PROC_FS",
    "PROC_SYSCTL",
    "SYSFS",
    "TMPFS",
    "DEVTMPFS",
    "DEVTMPFS_MOUNT",
    "BLK_DEV_INITRD",
    "BINFMT_ELF",
    "BINFMT_SCRIPT",
    "TTY",
    "SERIAL_8250",
    "SERIAL_8250_CONSOLE",
    "PCI",
    "PCI_MSI",
    "ACPI",
    "HYPERVISOR_GUEST",
    "PARAVIRT",
    "KVM_GUEST",
    "PVH",
    "VIRTIO_MENU",
    "VIRTIO",
    "VIRTIO_PCI",
    "VIRTIO_CONSOLE",
    "PVPANIC",
    "PVPANIC_PCI",
    "SLUB",
    "SOFTLOCKUP_DETECTOR",
    "DETECT_HUNG_TASK",
    "UNIX98_PTYS",
    "SYSVIPC",
    "MODULES",
    "MODULE_UNLOAD",
    "MODVERSIONS",
    "MODULE_FORCE_UNLOAD",
)

#: What the debug target is for.
DEBUG = (
    "DEBUG_KERNEL",
    "DEBUG_FS",
    "KASAN",
    "KASAN_GENERIC",
    "KASAN_OUTLINE",
    "DEBUG_KMEMLEAK",
    "PROVE_LOCKING",
    "DEBUG_ATOMIC_SLEEP",
    "DEBUG_LIST",
    "FAULT_INJECTION",
    "FAILSLAB",
    "FAULT_INJECTION_DEBUG_FS",
    "KUNIT",
    "KUNIT_DEBUGFS",
)

#: Options turned off on top of tinyconfig's defaults.
DISABLED = (
    "SLOB",
    "SLUB_TINY",
    "DEBUG_KMEMLEAK_DEFAULT_OFF",
    "DEBUG_KMEMLEAK_AUTO_SCAN",
    "KASAN_INLINE",
    "KUNIT_ALL_TESTS",
    "KUNIT_TEST",
    "KUNIT_EXAMPLE_TEST",
    "MODULE_SIG",
    "DEBUG_INFO",
    "LOCALVERSION_AUTO",
    "KASAN_VMALLOC",
    "VT",
    "INPUT",
    "SECURITY",
    "NET",
    "BLOCK",
    "DRM",
    "SOUND",
    "USB_SUPPORT",
    "HID",
    "WLAN",
    "MEDIA_SUPPORT",
    "HIBERNATION",
    "SUSPEND",
    "RANDOMIZE_BASE",
    "X86_MCE",
    "MICROCODE",
)

#: Values other than y/n (``scripts/config --set-val`` / ``--set-str``).
VALUES = {"DEBUG_KMEMLEAK_MEM_POOL_SIZE": "16000", "LOG_BUF_SHIFT": "18"}

#: The options the target must end up with after ``olddefconfig`` (what the detectors read).
REQUIRED = (
    "MODULES",
    "MODULE_UNLOAD",
    "MODVERSIONS",
    "KASAN",
    "DEBUG_KMEMLEAK",
    "PROVE_LOCKING",
    "DEBUG_ATOMIC_SLEEP",
    "FAILSLAB",
    "FAULT_INJECTION_DEBUG_FS",
    # Selected, not set: the fault sweep's helper module attaches to the initcall tracepoints.
    "TRACEPOINTS",
    "KUNIT",
    "VIRTIO_CONSOLE",
    "VIRTIO_PCI",
    "PVPANIC_PCI",
    "DEVTMPFS",
    "BLK_DEV_INITRD",
    "SERIAL_8250_CONSOLE",
    "PVH",
    "64BIT",
    "KALLSYMS",
    "BINFMT_SCRIPT",
    "SIGNALFD",
    "FUTEX",
)

#: What ``uname -r`` says: the source's version plus this suffix.
LOCALVERSION = "-kmh-debug"


def scripts_config_args() -> list[str]:
    """The arguments to ``scripts/config`` that turn tinyconfig into the debug guest config."""
    args: list[str] = []
    for option in (*GUEST, *DEBUG):
        args += ["--enable", option]
    for option in DISABLED:
        args += ["--disable", option]
    for option, value in VALUES.items():
        args += ["--set-val", option, value]
    args += ["--set-str", "LOCALVERSION", LOCALVERSION]
    return args


def read_config(path: Path) -> dict[str, str]:
    """A kernel .config as {OPTION: value} without the CONFIG_ prefix; unset options are absent."""
    options: dict[str, str] = {}
    if not path.is_file():
        return options
    for line in path.read_text(errors="replace").splitlines():
        match = re.match(r"^CONFIG_(\w+)=(.*)$", line)
        if match:
            options[match.group(1)] = match.group(2).strip('"')
    return options


def missing_options(config: dict[str, str]) -> list[str]:
    """REQUIRED options that olddefconfig dropped (an unmet dependency): a build would be useless."""
    return [option for option in REQUIRED if config.get(option) not in ("y", "m")]

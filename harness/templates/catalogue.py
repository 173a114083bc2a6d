"""The template catalogue: every template, its parameters, and the bad variants, in one place.

A template is a C source under ``c_templates/`` plus its declared parameters. Every template also
takes the common ``author``/``description``/``license`` parameters and gets a ``Kbuild`` and a
``Makefile``, so a rendered directory builds with the harness's batched kbuild or with plain ``make``.

Bad modules (for the lifecycle tests and for teaching) are expressed as **parameters** of the good
templates (``hello``'s ``fault``/``init_error``, ``chardev``'s ``leak``, any template's ``license``),
because the defect is one line in otherwise identical code. Each useful combination is also listed
as a **preset**: a named entry (``bad_null_deref``, ``bad_chardev_leak``, ...) that renders its base
template with different defaults. ``kmh new bad_chardev_leak NAME`` and ``kmh new chardev NAME -p
leak=all`` write the same files; presets only make the variants discoverable and stable to name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from harness.errors import HarnessError
from harness.templates.params import (
    MODULE_NAME,
    BoolParam,
    ChoiceParam,
    IdentParam,
    IntListParam,
    IntParam,
    MacParam,
    Param,
    StringParam,
)

#: Licenses the kernel knows; all but "Proprietary" are GPL-compatible and may use GPL-only exports.
LICENSES = ("GPL", "GPL v2", "Dual BSD/GPL", "Dual MIT/GPL", "Dual MPL/GPL", "Proprietary")
#: File modes offered for device nodes, /proc entries and sysfs parameter files.
MODES = ("0400", "0440", "0444", "0600", "0640", "0644", "0660", "0664", "0666")
#: sysfs parameter files: the kernel refuses world-writable ones and "group above user" at build time.
PARAM_MODES = ("0000", "0400", "0440", "0444", "0600", "0640", "0644", "0660", "0664")
#: Errors hello's init can return, by errno name (insmod then reports the matching message).
ERRNOS = ("none", "EPERM", "ENOENT", "EIO", "ENOMEM", "EAGAIN", "EBUSY", "EEXIST", "ENODEV", "EINVAL")
FAULTS = ("none", "null-deref-init", "bug-exit", "loop-init", "hold-ref", "compile-error", "warn-init")
LEAKS = ("none", "chrdev-region", "class", "all")
#: The kmem template's deliberate defects: each is silent on a stock kernel, found by a debug one.
KMEM_BUGS = ("none", "kmalloc-leak", "uaf-exit", "abba", "sleep-atomic", "init-leak", "unwind-leak")
#: Ethernet MTU limits the kernel accepts (ETH_MIN_MTU, ETH_MAX_MTU).
ETH_MIN_MTU, ETH_MAX_MTU = 68, 65535
#: An interface name is at most IFNAMSIZ - 1 = 15 bytes: the prefix plus up to two digits.
IFNAME_PREFIX_MAX = 13

Check = Callable[[Mapping[str, object]], str | None]


@dataclass(frozen=True)
class Template:
    """One entry of the catalogue: a C source and the parameters it is rendered with."""

    name: str
    summary: str
    #: The Jinja source under c_templates/ that becomes ``<module>.c``.
    source: str
    params: tuple[Param, ...]
    #: For a preset: the template it renders (with the defaults changed); None for a template.
    base: str | None = None
    #: For a bad variant: what goes wrong and what a lifecycle run should report.
    defect: str = ""
    #: Checks across parameters; each returns the reason a combination is refused, or None.
    checks: tuple[Check, ...] = field(default=(), repr=False)

    @property
    def is_preset(self) -> bool:
        return self.base is not None

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    @property
    def param_names(self) -> list[str]:
        return [p.name for p in self.params]


def _common(description: str) -> tuple[Param, ...]:
    return (
        StringParam("author", "MODULE_AUTHOR", "kmod-harness"),
        StringParam("description", "MODULE_DESCRIPTION", description),
        ChoiceParam(
            "license", "MODULE_LICENSE; Proprietary taints and bars GPL-only exports", "GPL", choices=LICENSES
        ),
    )


def _mode(default: str, what: str) -> ChoiceParam:
    return ChoiceParam("mode", f"permissions of {what}", default, choices=MODES)


def _one_fault(values: Mapping[str, object]) -> str | None:
    if values["init_error"] != "none" and values["fault"] != "none":
        return "init_error and fault cannot both be set: init would never reach the error return"
    return None


def _array_fits(values: Mapping[str, object]) -> str | None:
    items = values["array_values"]
    size = values["array_size"]
    assert isinstance(items, tuple) and isinstance(size, int)
    if len(items) > size:
        return f"array_values has {len(items)} items but array_size is {size}"
    return None


def _message_fits(values: Mapping[str, object]) -> str | None:
    message, size = values["message"], values["buffer_size"]
    assert isinstance(message, str) and isinstance(size, int)
    if len(message.encode("utf-8")) > size:
        return f"message is {len(message.encode('utf-8'))} bytes but buffer_size is {size}"
    return None


def _mtu_bounds(values: Mapping[str, object]) -> str | None:
    low, mtu, high = values["min_mtu"], values["mtu"], values["max_mtu"]
    assert isinstance(low, int) and isinstance(mtu, int) and isinstance(high, int)
    if not low <= mtu <= high:
        return f"mtu {mtu} must lie within min_mtu..max_mtu ({low}..{high})"
    return None


def _macs_fit(values: Mapping[str, object]) -> str | None:
    mac, count = values["mac"], values["count"]
    assert isinstance(mac, tuple) and isinstance(count, int)
    if mac[-1] + count - 1 > 0xFF:
        return (
            f"interface {count - 1} would need last MAC byte {mac[-1] + count - 1:#x}; lower the mac or count"
        )
    return None


_TEMPLATES: tuple[Template, ...] = (
    Template(
        "hello",
        "init/exit that print on load and unload; also the bad lifecycle variants",
        "hello.c.j2",
        (
            *_common("A hello world module generated by kmod-harness"),
            StringParam("greeting", "printed (pr_info) on load and, as 'Goodbye', on unload", "Hello, world"),
            ChoiceParam(
                "init_error", "make init fail with -ERRNO after printing the greeting", "none", choices=ERRNOS
            ),
            ChoiceParam(
                "fault",
                "deliberate defect: null-deref-init (oops in init), bug-exit (BUG() in exit), "
                "loop-init (init sleeps forever, until insmod is killed), hold-ref (takes a reference on "
                "itself: rmmod fails 'in use'), compile-error (calls an undeclared function), warn-init "
                "(a WARNING in init, which still succeeds)",
                "none",
                choices=FAULTS,
            ),
        ),
        checks=(_one_fault,),
    ),
    Template(
        "kmem",
        "a buffer and a table allocated in init and freed in exit, two mutexes taken A then B; the bad "
        "variants are what only a debug kernel (kmemleak, KASAN, lockdep) sees",
        "kmem.c.j2",
        (
            *_common("Allocations and locks, generated by kmod-harness"),
            IntParam("size", "bytes of the buffer init allocates", 1234, minimum=1, maximum=65536),
            ChoiceParam(
                "bug",
                "deliberate defect: kmalloc-leak (init drops its only pointer to an allocation), uaf-exit "
                "(exit reads the buffer it freed), abba (init takes the mutexes B then A too), sleep-atomic "
                "(a GFP_KERNEL allocation under a spinlock), init-leak (init fails with -ENODEV and its "
                "unwind forgets the buffer), unwind-leak (when the second allocation fails, init returns "
                "without freeing the first: only fault injection finds it)",
                "none",
                choices=KMEM_BUGS,
            ),
        ),
    ),
    Template(
        "kunit",
        "a KUnit suite as a module: loading runs its test cases, each one a result in every report "
        "(needs a kernel with KUnit: a debug target)",
        "kunit.c.j2",
        (
            *_common("KUnit tests generated by kmod-harness"),
            IdentParam("suite", "the KUnit suite's name", "kmh_example", max_len=40),
            IntParam("size", "bytes the allocation test case allocates", 64, minimum=1, maximum=4096),
            BoolParam("failing", "add a test case that fails on purpose", False),
        ),
    ),
    Template(
        "params",
        "int, bool, charp and int-array module parameters, visible in /sys/module/NAME/parameters",
        "params.c.j2",
        (
            *_common("Module parameters demo generated by kmod-harness"),
            IntParam("int_value", "default of the int parameter 'number'", 42),
            BoolParam("bool_value", "default of the bool parameter 'enabled'", True),
            StringParam("string_value", "default of the charp parameter 'label'", "kmh"),
            IntListParam(
                "array_values",
                "initial elements of the int array parameter 'values'",
                (1, 2, 3),
                max_items=64,
            ),
            IntParam(
                "array_size",
                "capacity of 'values' (insmod accepts up to this many)",
                8,
                minimum=1,
                maximum=64,
            ),
            ChoiceParam(
                "mode",
                "permissions of the parameter files in sysfs (0000: no files)",
                "0644",
                choices=PARAM_MODES,
            ),
        ),
        checks=(_array_fits,),
    ),
    Template(
        "chardev",
        "character device: dynamic major, cdev, class and /dev node, read/write buffer under a mutex",
        "chardev.c.j2",
        (
            *_common("Character device generated by kmod-harness"),
            IdentParam(
                "device_name", "name of the /dev node, the class and the /proc/devices entry", MODULE_NAME
            ),
            IntParam("buffer_size", "bytes the device stores", 4096, minimum=1, maximum=1 << 20),
            StringParam("message", "initial contents of the device", "", max_len=4096),
            _mode("0666", "the /dev node"),
            ChoiceParam(
                "leak",
                "deliberate defect: what exit forgets to undo (chrdev-region: "
                "unregister_chrdev_region; class: class_destroy; all: both)",
                "none",
                choices=LEAKS,
            ),
            BoolParam(
                "inject_failures",
                "add the load parameter fail_at=N (1..5) that makes init step N fail, to exercise "
                "every unwinding path",
                False,
            ),
        ),
        checks=(_message_fits,),
    ),
    Template(
        "misc",
        "misc device: one /dev node on the misc major; read returns a message, write is counted",
        "misc.c.j2",
        (
            *_common("Misc device generated by kmod-harness"),
            IdentParam("device_name", "name of the /dev node and the /proc/misc entry", MODULE_NAME),
            StringParam("message", "what reading the device returns", "Hello from a misc device\n"),
            _mode("0666", "the /dev node"),
            ChoiceParam(
                "leak",
                "deliberate defect: misc (exit forgets misc_deregister, leaving the kernel's misc list "
                "pointing into the unloaded module)",
                "none",
                choices=("none", "misc"),
            ),
        ),
    ),
    Template(
        "procfs",
        "a /proc entry backed by seq_file: a message and a read counter",
        "procfs.c.j2",
        (
            *_common("A /proc entry generated by kmod-harness"),
            IdentParam("entry_name", "name of the file under /proc", MODULE_NAME),
            StringParam("message", "first line the entry shows", "Hello from /proc"),
            _mode("0444", "the /proc entry"),
        ),
    ),
    Template(
        "exporter",
        "exports PREFIX_add (EXPORT_SYMBOL), PREFIX_multiply (EXPORT_SYMBOL_GPL) and int PREFIX_value",
        "exporter.c.j2",
        (
            *_common("Exports symbols for a consumer module (kmod-harness)"),
            IdentParam("prefix", "prefix of the exported symbol names", MODULE_NAME, max_len=40),
            IntParam("value", "initial value of the exported variable PREFIX_value", 7),
        ),
    ),
    Template(
        "consumer",
        "calls an exporter's functions and reads its variable at init (needs the exporter loaded)",
        "consumer.c.j2",
        (
            *_common("Uses the symbols of an exporter module (kmod-harness)"),
            IdentParam(
                "exporter_prefix",
                "the exporter's prefix (its module name by default)",
                "exporter",
                max_len=40,
            ),
            BoolParam("use_gpl", "also call the GPL-only PREFIX_multiply", True),
            IntParam("a", "first operand", 6),
            IntParam("b", "second operand", 7),
        ),
    ),
    Template(
        "netdev",
        "virtual Ethernet driver: COUNT interfaces PREFIX0.. with MACs, open/stop, counted xmit, MTU bounds",
        "netdev.c.j2",
        (
            *_common("Virtual Ethernet driver generated by kmod-harness"),
            IntParam("count", "how many interfaces init registers", 2, minimum=1, maximum=16),
            IdentParam(
                "prefix",
                "interface name prefix; the interfaces are PREFIX0, PREFIX1, ...",
                "kmhnet",
                max_len=IFNAME_PREFIX_MAX,
            ),
            MacParam(
                "mac", "MAC of PREFIX0; each next interface adds 1 to the last byte", "02:6b:6d:68:00:00"
            ),
            IntParam("mtu", "initial MTU", 1500, minimum=ETH_MIN_MTU, maximum=ETH_MAX_MTU),
            IntParam(
                "min_mtu",
                "smallest MTU the kernel accepts for it",
                ETH_MIN_MTU,
                minimum=ETH_MIN_MTU,
                maximum=ETH_MAX_MTU,
            ),
            IntParam(
                "max_mtu",
                "largest MTU the kernel accepts for it",
                9000,
                minimum=ETH_MIN_MTU,
                maximum=ETH_MAX_MTU,
            ),
            ChoiceParam(
                "leak",
                "deliberate defect: netdev = exit forgets unregister_netdev (interfaces outlive the module)",
                "none",
                choices=("none", "netdev"),
            ),
        ),
        checks=(_mtu_bounds, _macs_fit),
    ),
)


@dataclass(frozen=True)
class _Preset:
    name: str
    base: str
    defaults: Mapping[str, object]
    defect: str


_PRESETS: tuple[_Preset, ...] = (
    _Preset(
        "bad_init_error",
        "hello",
        {"init_error": "ENODEV"},
        "init returns -ENODEV: insmod fails with 'No such device'; nothing stays loaded",
    ),
    _Preset(
        "bad_null_deref",
        "hello",
        {"fault": "null-deref-init"},
        "init writes through a NULL pointer: oops ('kernel NULL pointer dereference') during insmod",
    ),
    _Preset(
        "bad_bug_exit",
        "hello",
        {"fault": "bug-exit"},
        "exit calls BUG(): loads fine, rmmod oopses ('kernel BUG at')",
    ),
    _Preset(
        "bad_loop_init",
        "hello",
        {"fault": "loop-init"},
        "init never returns (sleeps in a loop until insmod gets SIGKILL, then fails -EINTR): timeout",
    ),
    _Preset(
        "bad_warn_init",
        "hello",
        {"fault": "warn-init"},
        "init triggers a kernel WARNING and succeeds: taint W; the load step fails with the warning's "
        "source line, the module still unloads cleanly",
    ),
    _Preset(
        "bad_hold_ref",
        "hello",
        {"fault": "hold-ref"},
        "init takes a reference on its own module: refcount 1, rmmod fails 'Module is in use'",
    ),
    _Preset(
        "bad_compile",
        "hello",
        {"fault": "compile-error"},
        "calls an undeclared function: the build fails with 'implicit declaration' at a source line",
    ),
    _Preset(
        "bad_chardev_leak",
        "chardev",
        {"leak": "all"},
        "exit forgets unregister_chrdev_region and class_destroy: /proc/devices and /sys/class keep "
        "the name after rmmod, and a second load fails",
    ),
    _Preset(
        "bad_misc_leak",
        "misc",
        {"leak": "misc"},
        "exit forgets misc_deregister: rmmod succeeds, then reading /proc/misc (kmh's own state "
        "snapshot) walks into the freed module and oopses",
    ),
    _Preset(
        "bad_netdev_leak",
        "netdev",
        {"leak": "netdev"},
        "exit forgets unregister_netdev: rmmod succeeds, the interfaces stay in /sys/class/net, and the "
        "next rtnetlink query about them oopses in dev_get_phys_port_id (their netdev_ops left with the "
        "module; 6.1 and 6.12 alike)",
    ),
    _Preset(
        "bad_kmalloc_leak",
        "kmem",
        {"bug": "kmalloc-leak"},
        "init drops its only pointer to a kmalloc'd buffer: a stock kernel notices nothing; on a debug "
        "kernel kmemleak reports the object (size, backtrace into kmh_init) after unload: cleanup fails",
    ),
    _Preset(
        "bad_uaf_exit",
        "kmem",
        {"bug": "uaf-exit"},
        "exit reads the buffer it has just freed: silent on a stock kernel; KASAN reports a "
        "use-after-free in kmh_exit on a debug kernel: the unload step crashes",
    ),
    _Preset(
        "bad_abba",
        "kmem",
        {"bug": "abba"},
        "init takes two mutexes A then B, then B then A: no deadlock with one task, so a stock kernel "
        "is silent; lockdep reports the circular dependency with its chain: the load step fails",
    ),
    _Preset(
        "bad_sleep_atomic",
        "kmem",
        {"bug": "sleep-atomic"},
        "init allocates with GFP_KERNEL under a spinlock: fine until memory is short on a stock kernel; "
        "a debug kernel reports 'sleeping function called from invalid context': the load step fails",
    ),
    _Preset(
        "bad_init_leak",
        "kmem",
        {"bug": "init-leak"},
        "init fails with -ENODEV and its unwind forgets one kfree: every kernel reports the failed load, "
        "only a debug kernel's kmemleak also names the object the failed init left behind",
    ),
    _Preset(
        "bad_unwind_leak",
        "kmem",
        {"bug": "unwind-leak"},
        "init's error path for its second allocation forgets the first: every normal load is clean; "
        "fault injection (inject_faults) fails that allocation and kmemleak finds the buffer",
    ),
    _Preset(
        "bad_kunit",
        "kunit",
        {"failing": True},
        "a KUnit suite with two passing cases and one failing case: the failing case's expectation "
        "(file, line, expected and actual values) is its result's evidence",
    ),
    _Preset(
        "bad_gpl_user",
        "consumer",
        {"license": "Proprietary", "use_gpl": True},
        "Proprietary license calling a GPL-only export. modpost refuses it when it can see the exporter's "
        "Module.symvers; built alone with KBUILD_MODPOST_WARN=1 the .ko exists and the kernel refuses "
        "to load it ('Unknown symbol')",
    ),
)


def _preset(preset: _Preset) -> Template:
    base = next(t for t in _TEMPLATES if t.name == preset.base)
    unknown = set(preset.defaults) - set(base.param_names)
    assert not unknown, f"preset {preset.name} sets unknown parameters {unknown}"
    params = tuple(
        dataclasses.replace(p, default=preset.defaults[p.name]) if p.name in preset.defaults else p
        for p in base.params
    )
    return dataclasses.replace(
        base,
        name=preset.name,
        summary=f"{base.name} with "
        + ", ".join(f"{k}={'true' if v is True else v}" for k, v in preset.defaults.items()),
        params=params,
        base=base.name,
        defect=preset.defect,
    )


_CATALOGUE: tuple[Template, ...] = _TEMPLATES + tuple(_preset(p) for p in _PRESETS)


def catalogue() -> list[Template]:
    """Every template, then every preset (bad variants), in a stable order."""
    return list(_CATALOGUE)


def get_template(name: str) -> Template:
    """The template or preset called ``name``; a HarnessError lists the names when there is none."""
    for template in _CATALOGUE:
        if template.name == name:
            return template
    names = ", ".join(t.name for t in _CATALOGUE)
    raise HarnessError(f"no template named {name!r}; the templates are: {names}")

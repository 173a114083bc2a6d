"""Module specs: what to build, how to load it, and what must be true while it is loaded.

A spec is a TOML file (one per module, in ``modules/`` for the shipped ones)::

    [module]
    template = "hello"          # or: source = "path/to/dir"  or: debian = "usb-storage"
    name = "hello_kmh"          # the module name (templates) / the .ko to load (sources)
    params = { message = "hi" } # template parameters

    kernels = ["bookworm"]      # optional; --kernel on the command line wins
    build_against = "same"      # or "other" (a deliberate vermagic mismatch) or a kernel name

    [[companion]]               # other modules built with it and installed beside it, any number;
    template = "exporter"       # all are loaded in the order their symbols demand (not this order)
    name = "kmh_exporter"

    [[companion]]               # a module of the target's own tree: installed with its dependencies
    debian = "videodev"         # and softdeps, and modprobed before the built modules (the tree
                                # modules a built module takes symbols from are found without this)

    [load]
    method = "insmod"           # or "modprobe" (installs into /lib/modules/<rel>/extra, depmod)
    args = { count = 3 }        # module parameters given at load time
    timeout = 30
    inject_faults = false       # then fail each slab allocation of init in turn (a debug kernel:
                                # failslab, tracepoints) and check every failed init left nothing

    [expect]
    load_dmesg = ["hello_kmh: loaded"]      # regexes, each must match a new kernel log line
    unload_dmesg = ["hello_kmh: unloaded"]
    params = { count = "3" }    # /sys/module/NAME/parameters/<key> contents
    devices = ["/dev/kmh_chr"]  # must exist while loaded
    proc = ["/proc/kmh_proc"]
    sysfs = ["/sys/class/kmh"]
    kallsyms = ["kmh_exporter_add"]
    loaded = ["kmh_exporter"]   # other modules that must be live (e.g. pulled in by modprobe)
    holders = { kmh_exporter = ["hello_kmh"] }  # rmmod of the key must fail, held by these
    exercise = "echo hi > /dev/kmh_chr && cat /dev/kmh_chr"
    exercise_output = "^hi$"
    reload = true               # load and unload a second time
    warnings = "fail"           # a kernel WARNING the module triggers fails the step it happened
                                # in ("allow": reported on the step, the verdict unaffected)

    [[expect.links]]            # a network interface the module registers, checked over rtnetlink
    name = "kmhnet0"            # (in the guest, with Debian's python3 + pyroute2: specs with links
    mac = "02:6b:6d:68:00:00"   #  boot a VM with the Python layer). All keys but name are optional:
    mtu = 1500                  # MTU right after loading
    up = true                   # can be brought up (and is brought down again afterwards)
    set_mtu = 9000              # an MTU the driver must accept
    refuse_mtu = 9001           # an MTU the kernel must refuse; its error (and extack) is reported
    tx_count = 10               # send 10 raw frames (AF_PACKET): tx_packets must rise by exactly 10
                                # After unload, every listed link must be gone (checked in cleanup).
                                # Inline form: links = [{ name = "kmhnet0", mtu = 1500 }, ...]

    [outcome]                   # what the harness's own tests expect of this spec
    verdict = "pass"
    step = "load"
    message = "No such device"

Paths in a spec are relative to the spec file. Unknown keys are errors: a typo in an
expectation must not silently turn into no expectation. Types are strict for the same reason:
``reload = "false"`` is a string, not false, and ``timeout`` must be a finite number of seconds
above zero; no value is coerced, and every mistake is one line naming the file and the key.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.netcheck.model import LinkExpectation, link_from_table
from harness.templates import get_template, render

METHODS = ("insmod", "modprobe")
WARNING_POLICIES = ("fail", "allow")
VERDICTS = ("pass", "fail", "crash", "timeout")


@dataclass(frozen=True)
class ModuleDef:
    """One module to build (from a template or a directory) or take from the kernel's tree."""

    name: str
    template: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None
    #: A module of the kernel target's own tree (e.g. ``usb-storage``), loaded with modprobe.
    debian: str = ""

    @property
    def kind(self) -> str:
        return "template" if self.template else "debian" if self.debian else "source"

    def __hash__(self) -> int:
        # params may hold lists; the rendered text of the whole definition identifies it.
        return hash(repr(self))


@dataclass(frozen=True)
class Expectations:
    load_dmesg: tuple[str, ...] = ()
    unload_dmesg: tuple[str, ...] = ()
    params: dict[str, str] = field(default_factory=dict)
    devices: tuple[str, ...] = ()
    proc: tuple[str, ...] = ()
    sysfs: tuple[str, ...] = ()
    kallsyms: tuple[str, ...] = ()
    loaded: tuple[str, ...] = ()
    holders: dict[str, tuple[str, ...]] = field(default_factory=dict)
    exercise: str = ""
    exercise_output: str = ""
    reload: bool = True
    #: What a kernel WARNING (WARN_ON, taint W) the module triggers does to the verdict: "fail"
    #: (default: the step that triggered it fails, the remaining steps still run) or "allow"
    #: (reported on the step as a finding, the verdict unaffected).
    warnings: str = "fail"
    #: Network interfaces checked over rtnetlink while loaded, and checked gone after unload.
    links: tuple[LinkExpectation, ...] = ()


@dataclass(frozen=True)
class Outcome:
    """The verdict the harness's own test-suite expects (bad modules expect fail/crash/timeout)."""

    verdict: str = "pass"
    step: str = ""
    message: str = ""


@dataclass(frozen=True)
class ModuleSpec:
    """A parsed spec: the module, its companions, how to load it, what to expect."""

    module: ModuleDef
    origin: str
    companions: tuple[ModuleDef, ...] = ()
    kernels: tuple[str, ...] = ()
    #: Build against another kernel than the one it runs on: "same", "other" or a kernel name.
    build_against: str = "same"
    method: str = "insmod"
    args: dict[str, str] = field(default_factory=dict)
    timeout: float = 30.0
    #: Sweep init with injected allocation failures (see :mod:`harness.debugkernel.sweep`).
    inject_faults: bool = False
    expect: Expectations = field(default_factory=Expectations)
    outcome: Outcome = field(default_factory=Outcome)

    @property
    def name(self) -> str:
        return self.module.name

    @property
    def needs_python(self) -> bool:
        """The netlink checks run with Python in the guest (an optional, slower-booting layer)."""
        return bool(self.expect.links)

    def load_arguments(self) -> list[str]:
        """Module parameters as ``key=value`` words for insmod/modprobe."""
        return [f"{key}={value}" for key, value in self.args.items()]


def load_spec(path: Path) -> ModuleSpec:
    """Read and validate one spec file."""
    if path.exists() and not path.is_file():
        raise HarnessError(f"{path}: not a regular file (a spec is a TOML file)")
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise HarnessError(f"{path}: no such spec file") from None
    except UnicodeDecodeError as error:
        raise HarnessError(f"{path}: not UTF-8 (byte {error.start}); TOML files must be UTF-8") from None
    except OSError as error:
        raise HarnessError(f"{path}: cannot read the spec file: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise HarnessError(f"{path}: not valid TOML: {error}") from None
    return spec_from_dict(data, origin=str(path), base=path.parent)


def spec_for_template(
    template: str, name: str | None = None, params: dict[str, Any] | None = None
) -> ModuleSpec:
    """A spec with default expectations for a template (``kmh run --template hello``)."""
    module_name = name or f"kmh_{template}"
    return spec_from_dict(
        {"module": {"template": template, "name": module_name, "params": params or {}}},
        origin=f"template {template}",
        base=Path.cwd(),
    )


def spec_for_directory(directory: Path) -> ModuleSpec:
    """A spec for a user's module directory: load its (first) module, expect a clean cycle; for a
    DKMS tree, every module its dkms.conf declares (see harness.dkms.spec)."""
    if (directory / "dkms.conf").is_file():
        from harness.dkms.spec import dkms_spec  # harness.dkms builds on this module

        return dkms_spec(directory)
    name = _module_name_from_kbuild(directory)
    return ModuleSpec(module=ModuleDef(name=name, source=directory.resolve()), origin=str(directory))


def spec_from_dict(data: dict[str, Any], *, origin: str, base: Path) -> ModuleSpec:
    where = origin
    _only(data, {"module", "companion", "kernels", "build_against", "load", "expect", "outcome"}, where)
    module = _module_def(data.get("module"), base, f"{where} [module]")
    companions = tuple(
        _module_def(entry, base, f"{where} [[companion]]")
        for entry in _list(data.get("companion", []), where)
    )
    load = _table(data.get("load", {}), f"{where} [load]")
    _only(load, {"method", "args", "timeout", "inject_faults"}, f"{where} [load]")
    inject_faults = load.get("inject_faults", False)
    if not isinstance(inject_faults, bool):
        raise HarnessError(f"{where} [load]: inject_faults must be true or false")
    method = _string(load.get("method", "modprobe" if module.debian else "insmod"), f"{where} [load] method")
    if method not in METHODS:
        raise HarnessError(f"{where} [load]: method must be one of {', '.join(METHODS)}, not {method!r}")
    expect_data = _table(data.get("expect", {}), f"{where} [expect]")
    expect = _expectations(expect_data, f"{where} [expect]")
    outcome_data = _table(data.get("outcome", {}), f"{where} [outcome]")
    _only(outcome_data, {"verdict", "step", "message"}, f"{where} [outcome]")
    outcome = Outcome(
        **{key: _string(value, f"{where} [outcome] {key}") for key, value in outcome_data.items()}
    )
    if outcome.verdict not in VERDICTS:
        raise HarnessError(f"{where} [outcome]: verdict must be one of {', '.join(VERDICTS)}")
    kernels = data.get("kernels", [])
    return ModuleSpec(
        module=module,
        origin=origin,
        companions=companions,
        kernels=_strings(kernels, f"{where} kernels"),
        build_against=_string(data.get("build_against", "same"), f"{where} build_against"),
        method=method,
        args={
            str(k): _scalar(v, f"{where} [load] args.{k}")
            for k, v in _table(load.get("args", {}), f"{where} [load] args").items()
        },
        timeout=_seconds(load.get("timeout", 30), f"{where} [load] timeout"),
        inject_faults=inject_faults,
        expect=expect,
        outcome=outcome,
    )


def _module_def(data: Any, base: Path, where: str) -> ModuleDef:
    table = _table(data, where)
    _only(table, {"template", "name", "params", "source", "debian"}, where)
    kinds = [key for key in ("template", "source", "debian") if key in table]
    if len(kinds) != 1:
        raise HarnessError(f"{where}: give exactly one of template, source or debian")
    for key in ("template", "name", "source", "debian"):
        if key in table:
            _string(table[key], f"{where} {key}")
    if "debian" in table:
        return ModuleDef(name=str(table.get("name", table["debian"])), debian=str(table["debian"]))
    if "template" in table:
        template = get_template(str(table["template"]))
        name = str(table.get("name", f"kmh_{template.name}"))
        params = dict(_table(table.get("params", {}), f"{where} params"))
        try:
            render(template.name, name, params)  # validates the name and every parameter now
        except HarnessError as error:
            raise HarnessError(f"{where}: {error.message}") from None
        return ModuleDef(name=name, template=template.name, params=params)
    source = (base / str(table["source"])).resolve()
    if not source.is_dir():
        raise HarnessError(f"{where}: source {source} is not a directory")
    name = str(table.get("name") or _module_name_from_kbuild(source))
    return ModuleDef(name=name, source=source)


def _expectations(data: dict[str, Any], where: str) -> Expectations:
    fields = {f for f in Expectations.__dataclass_fields__}
    _only(data, fields, where)
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key in ("params",):
            values[key] = {
                str(k): _scalar(v, f"{where} params.{k}") for k, v in _table(value, f"{where} {key}").items()
            }
        elif key == "holders":
            values[key] = {
                str(k): _strings(v, f"{where} holders.{k}")
                for k, v in _table(value, f"{where} holders").items()
            }
        elif key in ("exercise", "exercise_output"):
            values[key] = _string(value, f"{where} {key}")
        elif key == "reload":
            if not isinstance(value, bool):
                raise HarnessError(f"{where} reload: must be true or false (unquoted), not {value!r}")
            values[key] = value
        elif key == "warnings":
            if value not in WARNING_POLICIES:
                allowed = ", ".join(map(repr, WARNING_POLICIES))
                raise HarnessError(f"{where} warnings: must be one of {allowed}, not {value!r}")
            values[key] = value
        elif key == "links":
            values[key] = tuple(
                link_from_table(item, f"{where} links[{index}]")
                for index, item in enumerate(_list(value, f"{where} links"))
            )
        else:
            values[key] = _strings(value, f"{where} {key}")
    for pattern in (
        *values.get("load_dmesg", ()),
        *values.get("unload_dmesg", ()),
        values.get("exercise_output", ""),
    ):
        try:
            re.compile(pattern)
        except re.error as error:
            raise HarnessError(f"{where}: bad regular expression {pattern!r}: {error}") from None
    return Expectations(**values)


def _module_name_from_kbuild(directory: Path) -> str:
    for name in ("Kbuild", "Makefile"):
        path = directory / name
        if path.is_file():
            text = path.read_text(errors="replace")  # only an ASCII pattern is looked for
            match = re.search(r"obj-m\s*[:+]?=\s*([A-Za-z0-9_-]+)\.o", text)
            if match:
                return match.group(1).replace("-", "_")
    raise HarnessError(
        f"{directory}: cannot tell the module name (no 'obj-m := NAME.o' in Kbuild or Makefile)"
    )


def _only(table: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise HarnessError(
            f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )


def _table(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        raise HarnessError(f"{where}: missing")
    if not isinstance(value, dict):
        raise HarnessError(f"{where}: expected a table")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise HarnessError(f"{where}: expected a list, got {value!r}")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise HarnessError(f"{where}: must be a string (in quotes), not {value!r}")
    return value


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise HarnessError(f"{where}: must be a list of strings, not {value!r}")
    return tuple(_string(item, where) for item in value)


def _seconds(value: Any, where: str) -> float:
    """A duration: a finite number above zero (0, negatives, nan and inf are no timeout at all)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise HarnessError(f"{where}: must be a positive number of seconds, not {value!r}")
    return float(value)


def _scalar(value: Any, where: str) -> str:
    """A module parameter value as the kernel reads it: bools as Y/N, arrays comma-separated."""
    if isinstance(value, list):
        return ",".join(_scalar(item, where) for item in value)
    if isinstance(value, bool):
        return "Y" if value else "N"
    if isinstance(value, float) and not math.isfinite(value):
        raise HarnessError(f"{where}: must be a finite value, not {value!r}")
    if not isinstance(value, str | int | float):
        raise HarnessError(f"{where}: must be a string, number, boolean or list value, not {value!r}")
    return str(value)

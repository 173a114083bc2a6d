"""The root ``kmh`` application (plumbum.cli): the verbs, registered by dotted path.

Each verb lives in its own file under :mod:`harness.commands` and only parses arguments, calls
the library and prints; registering by dotted path keeps ``kmh --help`` from importing them.
"""

from __future__ import annotations

from harness import __version__
from harness.commands.group import CommandGroup

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2


class Kmh(CommandGroup):
    """kmod-harness: generate, build, inspect, load and verify Linux kernel modules."""

    PROGNAME = "kmh"
    VERSION = __version__


_VERBS = {
    "vm": "harness.commands.vm.VmCommand",
    "run": "harness.commands.run.RunCommand",
    "kernel": "harness.commands.kernel.KernelCommand",
    "build": "harness.commands.build.BuildCommand",
    "templates": "harness.commands.templates.TemplatesCommand",
    "new": "harness.commands.new.NewCommand",
    "modinfo": "harness.commands.modinfo.ModinfoCommand",
    "inspect": "harness.commands.inspect.InspectCommand",
    "deps": "harness.commands.deps.DepsCommand",
    "check": "harness.commands.check.CheckCommand",
    "box": "harness.commands.box.BoxCommand",
    "doctor": "harness.commands.doctor.DoctorCommand",
}

for _verb, _path in _VERBS.items():
    Kmh.subcommand(_verb, _path)

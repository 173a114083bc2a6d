"""The root ``kmh`` application (plumbum.cli): the verbs, registered by dotted path.

Each verb lives in its own file under :mod:`harness.commands` and only parses arguments, calls
the library and prints; registering by dotted path keeps ``kmh --help`` from importing them.
"""

from __future__ import annotations

import sys

from plumbum import cli

from harness import __version__

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2


class Kmh(cli.Application):
    """kmod-harness: generate, build, inspect, load and verify Linux kernel modules."""

    PROGNAME = "kmh"
    VERSION = __version__

    def main(self, *args: str) -> int:
        if args:
            print(f"kmh: unknown command {args[0]!r}; see 'kmh --help'", file=sys.stderr)
            return EXIT_USAGE
        if not self.nested_command:
            self.help()
            return EXIT_USAGE
        return EXIT_OK


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
}

for _verb, _path in _VERBS.items():
    Kmh.subcommand(_verb, _path)

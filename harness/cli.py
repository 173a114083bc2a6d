"""The ``kmh`` command line: thin by design.

Each verb lives in its own file under :mod:`harness.commands` and only parses arguments, calls
the library and prints. Verbs are registered here by dotted path so ``kmh --help`` imports
nothing heavy. User mistakes arrive as :class:`~harness.errors.HarnessError` and leave with one
line on stderr and exit code 2; pass/fail verdicts use 0/1.
"""

from __future__ import annotations

import sys

from plumbum import cli

from harness import __version__
from harness.errors import HarnessError

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


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``kmh`` script; turns HarnessError into one line and exit 2."""
    try:
        _app, code = Kmh.run(argv=["kmh", *(sys.argv[1:] if argv is None else argv)], exit=False)
    except HarnessError as error:
        print(f"kmh: error: {error.message}", file=sys.stderr)
        if error.details:
            print(error.details.rstrip(), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("kmh: interrupted", file=sys.stderr)
        return 130
    return code if isinstance(code, int) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

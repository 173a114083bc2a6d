"""The ``kmh`` command line: thin by design.

The verbs are plumbum.cli applications (:mod:`harness.commands.app`). User mistakes arrive as
:class:`~harness.errors.HarnessError` and leave with one line on stderr and exit code 2;
pass/fail verdicts use 0/1.

One form skips plumbum: ``kmh inspect FILE [--json]``. Importing plumbum costs ~60 ms (its path
module pulls in urllib), more than reading a module, and inspect is the verb scripts call once per
file; anything else on that command line (``--help``, more files) goes through plumbum as usual.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from harness.errors import HarnessError

EXIT_OK = 0
EXIT_USAGE = 2


def _direct(args: list[str]) -> Callable[[], int] | None:
    """The command for argument lists simple enough to need no parser, else None."""
    if len(args) in (2, 3) and args[0] == "inspect" and not args[1].startswith("-"):
        if len(args) == 2 or args[2] == "--json":
            from harness.elf.report import show_module

            return lambda: show_module(args[1], as_json=len(args) == 3)
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``kmh`` script; turns HarnessError into one line and exit 2."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        direct = _direct(args)
        if direct is not None:
            return direct()
        from harness.commands.app import Kmh

        _app, code = Kmh.run(argv=["kmh", *args], exit=False)
    except HarnessError as error:
        print(f"kmh: error: {error.message}", file=sys.stderr)
        if error.details:
            print(error.details.rstrip(), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("kmh: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        from plumbum import CommandNotFound  # late: the inspect fast path never imports plumbum

        if not isinstance(error, CommandNotFound):
            raise
        print(
            f"kmh: error: {error.program} is not installed; "
            "run `kmh doctor` to see everything this host is missing",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return code if isinstance(code, int) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

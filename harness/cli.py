"""The ``kmh`` command line: thin by design.

The verbs are plumbum.cli applications (:mod:`harness.commands.app`). User mistakes arrive as
:class:`~harness.errors.HarnessError` and leave with one line on stderr and exit code 2;
pass/fail verdicts use 0/1.

One form skips plumbum: ``kmh inspect FILE [--json]``. Importing plumbum costs ~60 ms (its path
module pulls in urllib), more than reading a module, and inspect is the verb scripts call once per
file; anything else on that command line (``--help``, more files) goes through plumbum as usual.

Output never fails to encode, whatever the locale: module strings and file names that are not
UTF-8 arrive as lone surrogates (``surrogateescape``), and a strict UTF-8 or ASCII stdout would
raise UnicodeEncodeError on them. Both streams escape what they cannot encode instead, a byte
that was not UTF-8 as ``\\xNN`` (the byte), any other character as Python's backslash escape,
so the output is the same on every locale and nothing is silently dropped.
"""

from __future__ import annotations

import codecs
import io
import sys
from collections.abc import Callable

from harness.errors import HarnessError

EXIT_OK = 0
EXIT_USAGE = 2
ESCAPE_ERRORS = "kmh-escape"


def _escape_unencodable(error: UnicodeError) -> tuple[str, int]:
    """Codec error handler: a smuggled byte (U+DC80..U+DCFF) as \\xNN, anything else backslashed."""
    if not isinstance(error, UnicodeEncodeError):
        raise error
    pieces = []
    for char in error.object[error.start : error.end]:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:
            pieces.append(f"\\x{code - 0xDC00:02x}")
        else:
            pieces.append(char.encode("ascii", "backslashreplace").decode("ascii"))
    return "".join(pieces), error.end


codecs.register_error(ESCAPE_ERRORS, _escape_unencodable)


def _safe_output() -> None:
    """Make stdout and stderr escape what their encoding cannot hold (see the module docstring)."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors=ESCAPE_ERRORS)


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
    _safe_output()
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

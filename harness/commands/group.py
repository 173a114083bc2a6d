"""CommandGroup: a verb that only holds sub-verbs (``kmh``, ``kmh kernel``, ``kmh vm``, ``kmh box``)."""

from __future__ import annotations

import sys

from plumbum import cli

EXIT_USAGE = 2


class CommandGroup(cli.Application):
    """Without a sub-verb, print the help; with an unknown one, say so. Both are usage errors."""

    def main(self, *args: str) -> int:
        if args:
            print(
                f"{self.PROGNAME}: unknown command {args[0]!r}; see '{self.PROGNAME} --help'", file=sys.stderr
            )
            return EXIT_USAGE
        if not self.nested_command:
            self.help()
            return EXIT_USAGE
        return 0

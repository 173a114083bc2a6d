"""``kmh modinfo [-F FIELD] [-0] FILE...``: kmod's ``modinfo`` output, byte for byte.

Output is written as bytes: module strings are not guaranteed to be UTF-8, and parity with
modinfo means passing them through untouched. A bad file prints one error line and the others
are still shown; the exit status is then 2.
"""

from __future__ import annotations

import sys

from plumbum import cli

from harness.errors import HarnessError


class ModinfoCommand(cli.Application):
    """Show module information, exactly as kmod's modinfo prints it."""

    field = cli.SwitchAttr(["-F", "--field"], str, default=None, help="only print this field's values")
    null = cli.Flag(["-0", "--null"], help="end records with NUL instead of newline")
    author = cli.Flag(["-a", "--author"], help="same as -F author")
    description = cli.Flag(["-d", "--description"], help="same as -F description")
    license = cli.Flag(["-l", "--license"], help="same as -F license")
    parameters = cli.Flag(["-p", "--parameters"], help="same as -F parm")
    filename = cli.Flag(["-n", "--filename"], help="same as -F filename")

    def main(self, *files: str) -> int:
        from harness.elf.modinfo_text import render_modinfo
        from harness.elf.module import open_module

        if not files:
            raise HarnessError("kmh modinfo: name at least one module file")
        field = self.field
        for flag, name in (
            (self.author, "author"),
            (self.description, "description"),
            (self.license, "license"),
            (self.parameters, "parm"),
            (self.filename, "filename"),
        ):
            if flag:
                field = name
        separator = b"\0" if self.null else b"\n"
        out = sys.stdout.buffer
        status = 0
        for path in files:
            try:
                out.write(render_modinfo(open_module(path), field, separator))
            except HarnessError as error:
                out.flush()
                print(f"kmh: error: {error.message}", file=sys.stderr)
                status = 2
        out.flush()
        return status

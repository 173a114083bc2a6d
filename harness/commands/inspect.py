"""``kmh inspect FILE [--json]``: everything the harness reads from one .ko.

The text form is for a person (grouped, aligned, CRCs in hex); ``--json`` is complete: every
.modinfo field, export, undefined symbol, __versions entry, section and the signature.
"""

from __future__ import annotations

import sys

from plumbum import cli


class InspectCommand(cli.Application):
    """Show a module's modinfo fields, exports, needed symbols, CRCs, sections and signature."""

    as_json = cli.Flag("--json", help="print everything as JSON")

    def main(self, file: str) -> int:
        from harness.elf.module import read_module

        info = read_module(file)
        if self.as_json:
            import json

            print(json.dumps(info.as_dict(), indent=2))
        else:
            from harness.elf.report import describe_module

            sys.stdout.write(describe_module(info))
        return 0

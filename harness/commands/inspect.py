"""``kmh inspect FILE [--json]``: everything the harness reads from one .ko.

The text form is for a person (grouped, aligned, CRCs in hex); ``--json`` is complete: every
.modinfo field, export, undefined symbol, __versions entry, section and the signature.
"""

from __future__ import annotations

from plumbum import cli

from harness.elf.report import show_module


class InspectCommand(cli.Application):
    """Show a module's modinfo fields, exports, needed symbols, CRCs, sections and signature."""

    as_json = cli.Flag("--json", help="print everything as JSON")

    def main(self, file: str) -> int:
        return show_module(file, as_json=self.as_json)

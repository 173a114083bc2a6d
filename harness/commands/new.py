"""``kmh new TEMPLATE NAME [-p key=value]... [-o DIR] [--force]``: write a module directory."""

from __future__ import annotations

from pathlib import Path

from plumbum import cli

from harness.templates import parse_assignments, write_module


class NewCommand(cli.Application):
    """Render TEMPLATE as module NAME into a directory (source, Kbuild and a Makefile for plain make).
    See 'kmh templates' for the templates and their parameters."""

    params = cli.SwitchAttr(
        ["-p", "--param"], str, list=True, argname="KEY=VALUE", help="set a template parameter (repeatable)"
    )
    output = cli.SwitchAttr(
        ["-o", "--output"], str, default="", argname="DIR", help="directory (default ./NAME)"
    )
    force = cli.Flag("--force", help="write into a non-empty directory, overwriting the module's files")

    def main(self, template: str, name: str) -> int:
        values = parse_assignments(self.params)
        out_dir = Path(self.output) if self.output else Path.cwd() / name
        source = write_module(template, name, out_dir, values, force=self.force)
        assert source.directory is not None
        print(source.directory)
        for file_name in source.files:
            print(f"  {file_name}")
        return 0

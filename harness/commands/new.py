"""``kmh new TEMPLATE NAME [-p key=value]... [-o DIR] [--force] [--kernel K]...``: write a module directory.

A name the kernel already has in /sys/module from built-in code (``printk``) can never load
there; with ``--kernel`` that is an error, and without it a warning for any installed target.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from plumbum import cli

from harness.errors import HarnessError
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
    kernels = cli.SwitchAttr(
        ["-k", "--kernel"],
        str,
        list=True,
        help="refuse a name this kernel target's built-ins take (repeatable)",
    )

    def main(self, template: str, name: str) -> int:
        values = parse_assignments(self.params)
        _check_name_is_free(name, self.kernels)
        out_dir = Path(self.output) if self.output else Path.cwd() / name
        source = write_module(template, name, out_dir, values, force=self.force)
        assert source.directory is not None
        print(source.directory)
        for file_name in source.files:
            print(f"  {file_name}")
        return 0


def _check_name_is_free(name: str, kernels: Sequence[str]) -> None:
    """HarnessError if a named kernel's built-ins take NAME; a warning for installed targets."""
    from harness.elf.builtin import sysfs_builtin_names
    from harness.kernels.store import KernelStore

    store = KernelStore()
    targets = [store.get(kernel) for kernel in kernels] if kernels else store.list()
    taken = [target.release for target in targets if name in sysfs_builtin_names(target)]
    if not taken:
        return
    message = (
        f"module name {name} is taken by built-in code of {', '.join(taken)} "
        f"(/sys/module/{name} exists from boot): "
        f"{'that kernel refuses' if len(taken) == 1 else 'those kernels refuse'} a module of this name"
    )
    if kernels:
        raise HarnessError(message)
    print(f"kmh new: warning: {message}", file=sys.stderr)

"""``kmh kernel add|list|rm``: manage the Debian kernel targets in the harness's own store."""

from __future__ import annotations

from plumbum import cli

from harness.commands.common import format_table
from harness.commands.group import CommandGroup
from harness.kernels.store import KernelStore


class KernelCommand(CommandGroup):
    """Manage kernel targets (Debian kernels unpacked side by side, none of them installed)."""


@KernelCommand.subcommand("add")
class KernelAdd(cli.Application):
    """Download and unpack a Debian kernel: SPEC is a suite (bookworm, bookworm-backports),
    SUITE:FLAVOUR (bookworm:cloud-amd64) or an exact release (6.1.0-56-amd64)."""

    refresh = cli.Flag("--refresh", help="re-read the archive's package lists first")

    def main(self, spec: str) -> int:
        target = KernelStore().add(spec, refresh=self.refresh)
        print(target.release)
        return 0


@KernelCommand.subcommand("list")
class KernelList(cli.Application):
    """List the installed kernel targets."""

    def main(self) -> int:
        targets = KernelStore().list()
        if not targets:
            print("no kernel targets; add one with 'kmh kernel add bookworm'")
            return 0
        rows = [("RELEASE", "VERSION", "SUITE", "FLAVOUR", "PATH")]
        rows += [(t.release, t.version, t.suite, t.flavour, str(t.root)) for t in targets]
        print(format_table(rows))
        return 0


@KernelCommand.subcommand("rm")
class KernelRemove(cli.Application):
    """Remove an installed kernel target (NAME: release or suite)."""

    def main(self, name: str) -> int:
        target = KernelStore().remove(name)
        print(f"removed {target.release}")
        return 0

"""``kmh kernel add|list|rm``: manage the Debian kernel targets in the harness's own store."""

from __future__ import annotations

from pathlib import Path

from plumbum import cli

from harness.commands.common import format_table
from harness.commands.group import CommandGroup
from harness.errors import HarnessError
from harness.kernels.store import KernelStore


class KernelCommand(CommandGroup):
    """Manage kernel targets (Debian kernels unpacked side by side, none of them installed)."""


@KernelCommand.subcommand("add")
class KernelAdd(cli.Application):
    """Download and unpack a Debian kernel: SPEC is a suite (bookworm, bookworm-backports),
    SUITE:FLAVOUR (bookworm:cloud-amd64) or an exact release (6.1.0-56-amd64). SUITE:debug
    (bookworm:debug) builds the suite's kernel from Debian's linux-source package with KASAN,
    kmemleak, lockdep, failslab and KUnit (a small guest config: ~10-20 min on 2 cores, once).
    With --tree PATH, a kernel tree you configured and built becomes a target instead."""

    refresh = cli.Flag("--refresh", help="re-read the archive's package lists first")
    tree = cli.SwitchAttr(
        "--tree", str, help="add a built kernel source tree (needs Module.symvers, an image)"
    )

    def main(self, spec: str = "") -> int:
        store = KernelStore()
        if self.tree:
            if spec:
                raise HarnessError("give either SPEC or --tree PATH, not both")
            target = store.add_tree(Path(self.tree))
        elif not spec:
            raise HarnessError("kmh kernel add needs a SPEC (e.g. bookworm, bookworm:debug) or --tree PATH")
        else:
            target = store.add(spec, refresh=self.refresh)
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

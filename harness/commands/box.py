"""``kmh box build|list|remove|home``: the Vagrant boxes of the Vagrant backend."""

from __future__ import annotations

import sys
from typing import cast

from plumbum import cli

from harness.commands.common import format_table
from harness.commands.group import CommandGroup
from harness.vm.vagrant.access import blocking_directory
from harness.vm.vagrant.box import BOX_SUITES, BoxBuilder, remove_box
from harness.vm.vagrant.env import vagrant_home


class BoxCommand(CommandGroup):
    """Build and manage the Vagrant boxes (Debian with kernel headers) of the Vagrant backend."""


@BoxCommand.subcommand("build")
class BoxBuild(cli.Application):
    """Build the box of a Debian suite from Debian packages and add it to Vagrant (cached:
    rebuilt only when its kernel or recipe changed, or with --rebuild). Needs root."""

    kernel = cli.SwitchAttr(
        "--kernel", cli.Set(*BOX_SUITES), default="bookworm", help="the suite whose kernel the box runs"
    )
    rebuild = cli.Flag("--rebuild", help="build again even when the cached box is up to date")

    def main(self) -> int:
        box = BoxBuilder(cast(str, self.kernel)).ensure(rebuild=self.rebuild)  # cli.Set: str | list[str]
        print(f"{box.name}\t{box.release}")
        blocked = blocking_directory(box.kernel)
        if blocked is not None:
            # kmh's own VMs copy the kernel out; a plain `vagrant up` boots it from the box folder.
            print(
                f"kmh: note: libvirt's QEMU user cannot enter {blocked}, so a plain 'vagrant up' with "
                "this box fails to read its kernel; kmh's own VMs are not affected. For plain Vagrant, "
                "set KMH_VAGRANT_HOME to a directory that user can search and build again.",
                file=sys.stderr,
            )
        return 0


@BoxCommand.subcommand("list")
class BoxList(cli.Application):
    """List the boxes kmh built."""

    def main(self) -> int:
        boxes = [box for suite in BOX_SUITES if (box := BoxBuilder(suite, progress=None).installed())]
        if not boxes:
            print("no boxes; build one with 'kmh box build'")
            return 0
        rows = [("BOX", "KERNEL", "BUILT", "BUILD SECONDS")]
        rows += [(b.name, b.release, b.built, f"{sum(b.timings.values()):.0f}") for b in boxes]
        print(format_table(rows))
        return 0


@BoxCommand.subcommand("remove")
class BoxRemove(cli.Application):
    """Remove the box of SUITE from Vagrant and libvirt's storage pool."""

    def main(self, suite: str = "bookworm") -> int:
        if suite not in BOX_SUITES:
            print(f"kmh box remove: unknown suite {suite!r}", file=sys.stderr)
            return 2
        print(f"removed kmh/{suite}" if remove_box(suite) else f"no box for {suite}")
        return 0


@BoxCommand.subcommand("home")
class BoxHome(cli.Application):
    """Print the VAGRANT_HOME holding kmh's boxes (for plain 'vagrant up' with the shipped Vagrantfile)."""

    def main(self) -> int:
        print(vagrant_home())
        return 0

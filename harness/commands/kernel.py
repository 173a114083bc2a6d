"""``kmh kernel add|list|search|rm``: manage the Debian kernel targets in the harness's own store."""

from __future__ import annotations

import subprocess
from pathlib import Path

from plumbum import cli

from harness.buildenv import EnvironmentStore, recipe_for
from harness.commands.common import format_table
from harness.commands.group import CommandGroup
from harness.errors import HarnessError
from harness.kernels.apt import SUITE_GROUPS
from harness.kernels.debian import search
from harness.kernels.store import KernelStore
from harness.kernels.unpack import say


class KernelCommand(CommandGroup):
    """Manage kernel targets (Debian kernels unpacked side by side, none of them installed)."""


@KernelCommand.subcommand("add")
class KernelAdd(cli.Application):
    """Download and unpack a Debian kernel and create its suite's build environment: SPEC is a
    suite (bullseye, bookworm, bookworm-backports, bookworm-security, trixie, trixie-backports,
    forky, sid, experimental), SUITE:FLAVOUR (trixie:cloud-amd64) or an exact release. SUITE:debug
    (bookworm:debug) builds the suite's kernel from Debian's linux-source package with KASAN,
    kmemleak, lockdep, failslab and KUnit (a small guest config, built once in the suite's build
    environment). With --tree PATH, a kernel tree you configured and built becomes a target."""

    refresh = cli.Flag("--refresh", help="re-read the archive's package lists first")
    no_env = cli.Flag("--no-env", help="do not create the build environment now (it is made on first build)")
    tree = cli.SwitchAttr("--tree", str, help="add a kernel tree you built (needs Module.symvers, an image)")

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
        if not self.no_env:
            try:
                EnvironmentStore().for_kernel(target, progress=say)
            except HarnessError as error:
                raise HarnessError(
                    f"kernel {target.release} was added, but {error.message}", details=error.details
                ) from None
        return 0


@KernelCommand.subcommand("list")
class KernelList(cli.Application):
    """List the installed kernel targets, the build environment of each and their sizes."""

    def main(self) -> int:
        targets = KernelStore().list()
        if not targets:
            print("no kernel targets; add one with 'kmh kernel add bookworm'")
            return 0
        environments = {env.name: env for env in EnvironmentStore().list()}
        rows = [("RELEASE", "VERSION", "SUITE", "FLAVOUR", "SIZE", "BUILD ENV", "ENV SIZE")]
        for target in targets:
            try:
                env_name = recipe_for(target).name
            except HarnessError as error:
                env_name = f"(none: {error.message})"
            env = environments.get(env_name)
            env_size = _human(env.size()) if env else ("-" if env_name == "host" else "not created")
            rows.append(
                (target.release, target.version, target.suite, target.flavour, _human(_du(target.root)),
                 env_name, env_size)
            )  # fmt: skip
        print(format_table(rows))
        return 0


@KernelCommand.subcommand("search")
class KernelSearch(cli.Application):
    """What the Debian archive offers per suite (release, version, flavours); downloads only
    package lists, no kernels."""

    def main(self, *suites: str) -> int:
        unknown = [suite for suite in suites if suite not in SUITE_GROUPS]
        if unknown:
            raise HarnessError(f"unknown suite {unknown[0]!r}; suites: {', '.join(SUITE_GROUPS)}")
        rows = [("SUITE", "RELEASE", "VERSION", "FLAVOURS")]
        for offer in search(KernelStore().archive, tuple(suites)):
            rows.append((offer.suite, offer.release, offer.version, " ".join(offer.flavours)))
        print(format_table(rows))
        return 0


@KernelCommand.subcommand("rm")
class KernelRemove(cli.Application):
    """Remove an installed kernel target (NAME: release or suite) and the build environments
    no remaining kernel uses."""

    def main(self, name: str) -> int:
        store = KernelStore()
        target = store.remove(name)
        print(f"removed {target.release}")
        for env in EnvironmentStore().remove_unused(store.list()):
            print(f"removed build environment {env.name} (no kernel uses it)")
        return 0


def _du(path: Path) -> int:
    output = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True).stdout
    return int(output.split()[0]) if output else 0


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit != "GB" else f"{value:.1f} GB"
        value /= 1024
    return f"{size} B"

"""``kmh vm run|shell|accel``: boot a disposable guest of a kernel target and use it by hand.

Thin over :mod:`harness.vm`: it only turns options into a :class:`VMConfig`, prints what the
guest said, and maps the outcome to an exit code (the command's own code; 1 when the guest
crashed before the command could exit).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import cast

from plumbum import cli

from harness.commands.common import DEFAULT_KERNEL, kernel_targets
from harness.commands.group import CommandGroup
from harness.errors import HarnessError, ToolMissing
from harness.vm import accel
from harness.vm.crash import Crash
from harness.vm.qemu import VM, VMConfig
from harness.vm.result import NO_EXIT

GUEST_HOME = "/root"


def _print_crash(crash: Crash) -> None:
    print(f"kmh vm: kernel trouble: {crash.summary()}", file=sys.stderr)
    if crash.lines:
        print("\n".join(crash.lines), file=sys.stderr)


class _VmOptions(cli.Application):
    """Options shared by the verbs that boot a guest."""

    kernel = cli.SwitchAttr(
        ["-k", "--kernel"], str, default=DEFAULT_KERNEL, help="kernel target (release or suite)"
    )
    accel_name = cli.SwitchAttr("--accel", cli.Set(*accel.ACCELERATORS), help="force an accelerator")
    memory = cli.SwitchAttr("--memory", cli.Range(64, 65536), default=256, help="guest RAM in MiB")
    modules = cli.SwitchAttr(
        "--module",
        str,
        list=True,
        help="also install this module of the target in the guest (with its dependencies)",
    )
    verbose = cli.Flag(["-v", "--verbose"], help="say which accelerator was used and how long boot took")

    def _config(self) -> VMConfig:
        accel_name = cast("str | None", self.accel_name)  # cli.Set is typed as str | list[str]
        return VMConfig(memory_mb=self.memory, accel=accel_name, extra_modules=tuple(self.modules))

    def _boot(self) -> VM:
        target = kernel_targets([self.kernel])[0]
        vm = VM(target, self._config())
        vm.start()
        if self.verbose:
            how = "restored from snapshot" if vm.restored else "booted"
            print(
                f"kmh vm: {target.release} {how}, ready in {vm.boot_seconds:.2f} s, accel {vm.accel}",
                file=sys.stderr,
            )
        return vm


class VmCommand(CommandGroup):
    """Boot disposable VMs of a kernel target: run a command, or get a shell."""


def _parse_put(spec: str) -> tuple[Path, str]:
    """``FILE`` goes to /root/FILE's name; ``FILE:GUEST_PATH`` goes where it says."""
    local, sep, guest = spec.partition(":")
    path = Path(local)
    if not path.is_file():
        raise HarnessError(f"--put: no such file: {local}")
    if sep and not guest.startswith("/"):
        raise HarnessError(f"--put: the guest path must be absolute: {guest!r}")
    return path, guest if sep else f"{GUEST_HOME}/{path.name}"


@VmCommand.subcommand("run")
class VmRun(_VmOptions):
    """Boot a fresh VM, run CMD as root (in /root), print its output, exit with its code.

    One argument is a shell command line ('lsmod | grep hello'); several are run as they are.
    Example: kmh vm run --put hello.ko -- insmod hello.ko
    """

    puts = cli.SwitchAttr(
        "--put", str, list=True, help="upload FILE (to /root) or FILE:GUEST_PATH before running"
    )
    timeout = cli.SwitchAttr("--timeout", float, default=300.0, help="seconds before the command is killed")

    def main(self, *command: str) -> int:
        if not command:
            raise HarnessError("no command given; usage: kmh vm run [OPTIONS] -- CMD [ARG...]")
        uploads = [_parse_put(spec) for spec in self.puts]
        vm = self._boot()
        try:
            # Uploaded over the channel rather than baked into the image, so the VM can still
            # start from the configuration's snapshot.
            for path, guest in uploads:
                vm.put(path, guest, mode=0o755 if path.stat().st_mode & 0o111 else 0o644)
            argv = list(command)
            result = vm.run(argv if len(argv) > 1 else argv[0], timeout=self.timeout)
        finally:
            vm.close()
        sys.stdout.buffer.write(result.stdout_bytes)
        sys.stdout.flush()
        sys.stderr.write(result.stderr)
        if result.crash is not None:
            _print_crash(result.crash)
        return 1 if result.exit_code == NO_EXIT else result.exit_code


@VmCommand.subcommand("shell")
class VmShell(_VmOptions):
    """Boot a fresh VM and type commands into it; each line runs in its own shell (cd is kept).

    The VM is thrown away on exit (Ctrl-D or 'exit').
    """

    def main(self) -> int:
        try:
            import readline  # noqa: F401  (line editing for input())
        except ImportError:
            pass
        vm = self._boot()
        cwd = GUEST_HOME
        print(
            f"kmh vm shell: {vm.kernel.release} (accel {vm.accel}); Ctrl-D or 'exit' leaves", file=sys.stderr
        )
        try:
            while True:
                try:
                    line = input(f"kmh {cwd}# " if sys.stdin.isatty() else "")
                except EOFError:
                    break
                line = line.strip()
                if not line:
                    continue
                if line in ("exit", "logout"):
                    break
                if line == "cd" or line.startswith("cd "):
                    target = line[2:].strip() or GUEST_HOME
                    result = vm.run(f"cd {cwd} && cd {target} && pwd", allow_poisoned=True)
                    if result.exit_code == 0:
                        cwd = result.stdout.strip()
                    sys.stderr.write(result.stderr)
                    continue
                result = vm.run(f"cd {cwd} && {line}", timeout=3600, allow_poisoned=True)
                sys.stdout.buffer.write(result.stdout_bytes)
                sys.stdout.flush()
                sys.stderr.write(result.stderr)
                if result.crash is not None:
                    _print_crash(result.crash)
                if not vm.alive:
                    print("kmh vm shell: the guest is gone", file=sys.stderr)
                    return 1
                if result.exit_code != 0:
                    print(f"[exit {result.exit_code}]", file=sys.stderr)
        finally:
            vm.close()
        return 0


@VmCommand.subcommand("accel")
class VmAccel(cli.Application):
    """Show which accelerator VMs use here and why (the decision is cached)."""

    def main(self) -> int:
        qemu = shutil.which("qemu-system-x86_64")
        if not qemu:
            raise ToolMissing("qemu-system-x86_64", "qemu-system-x86", "VMs boot with it")
        print(accel.choose(qemu))
        return 0

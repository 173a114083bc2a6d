"""``kmh build DIR... [--kernel NAME]... [-j N]``: batched kbuild, prints the .ko paths."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from plumbum import cli

from harness.commands.common import kernel_targets
from harness.dkms import build_dkms, is_dkms_tree
from harness.kbuild import build_modules
from harness.kbuild.cache import SWITCH
from harness.kbuild.diagnostics import failure_excerpt
from harness.kernels.target import KernelTarget


class BuildCommand(cli.Application):
    """Build module directories (rendered by 'kmh new' or your own, with a Kbuild or Makefile)
    against kernel targets, all modules of a kernel in one kbuild run."""

    kernels = cli.SwitchAttr(
        ["-k", "--kernel"], str, list=True, help="kernel target (repeatable); default bookworm"
    )
    jobs = cli.SwitchAttr(["-j", "--jobs"], cli.Range(1, 256), default=None, help="parallel compile jobs")
    werror = cli.Flag("--werror", help="treat compiler warnings as errors")
    rebuild = cli.Flag(
        "--rebuild",
        help="run make even when the build cache holds an identical build (and store the new result); "
        "KMH_BUILD_CACHE=off bypasses the cache altogether",
    )

    def main(self, *directories: str) -> int:
        if not directories:
            print("kmh build: name at least one module directory", file=sys.stderr)
            return 2
        if self.rebuild:
            os.environ[SWITCH] = "refresh"
        failed = False
        packages = [Path(d) for d in directories if is_dkms_tree(Path(d))]
        plain = [Path(d) for d in directories if not is_dkms_tree(Path(d))]
        for kernel in kernel_targets(self.kernels):
            failed |= _build_packages(packages, kernel, self.werror)
            if not plain:
                continue
            results = build_modules(plain, kernel, jobs=self.jobs, werror=self.werror)
            environments = sorted({result.environment for result in results if result.environment})
            if environments:
                where = "the host's toolchain" if environments == ["host"] else ", ".join(environments)
                cached = sum(result.cached for result in results)
                note = (
                    f" ({cached} of {len(results)} cached: identical inputs, make not run; --rebuild runs it)"
                    if cached
                    else ""
                )
                print(f"kmh build: {kernel.release}: built with {where}{note}", file=sys.stderr)
            for result in results:
                for diagnostic in result.diagnostics:
                    print(diagnostic, file=sys.stderr)
                if result.ok:
                    for module in result.modules:
                        print(module.path)
                else:
                    failed = True
                    errors = len(result.errors)
                    detail = (
                        f"{errors} error(s)" if errors else "kbuild failed:\n" + failure_excerpt(result.log)
                    )
                    print(f"kmh build: {result.source_dir} for {kernel.release}: {detail}", file=sys.stderr)
        return 1 if failed else 0


def _build_packages(packages: list[Path], kernel: KernelTarget, werror: bool) -> bool:
    """Build DKMS trees with their own MAKE[0]; print each declared module's .ko. A kernel the
    package's BUILD_EXCLUSIVE rules out is reported as skipped, not failed. True if any failed."""
    failed = False
    for source in packages:
        package = build_dkms(source, kernel, werror=werror)
        where = f"{source} ({package.conf.package} {package.conf.version}) for {kernel.release}"
        if package.skipped:
            print(f"kmh build: {where}: skipped: {package.skipped}", file=sys.stderr)
            continue
        diagnostics = {str(d) for r in package.results.values() for d in r.diagnostics}
        for diagnostic in sorted(diagnostics):
            print(diagnostic, file=sys.stderr)
        if package.ok:
            for result in package.results.values():
                for module in result.modules:
                    print(module.path)
        else:
            failed = True
            missing = [name for name, result in package.results.items() if not result.ok]
            print(
                f"kmh build: {where}: {', '.join(missing)} not built:\n{failure_excerpt(package.log)}",
                file=sys.stderr,
            )
    return failed

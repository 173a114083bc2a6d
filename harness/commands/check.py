"""``kmh check FILE --kernel NAME [--with DIR]... [--json]``: will the module load on that kernel?

Exit 0 when it would load, 1 when it would not (each reason on its own line), 2 when the input
is unusable (not a module, unknown kernel, ...).
"""

from __future__ import annotations

import json
from pathlib import Path

from plumbum import cli

from harness.commands.common import DEFAULT_KERNEL


class CheckCommand(cli.Application):
    """Tell, without booting, whether a module can load on a kernel target, and why not."""

    kernel = cli.SwitchAttr(["-k", "--kernel"], str, default=DEFAULT_KERNEL, help="kernel target")
    with_dirs = cli.SwitchAttr(
        "--with", str, list=True, help="directory of extra modules that may provide symbols (repeatable)"
    )
    as_json = cli.Flag("--json", help="print the verdict as JSON")

    def main(self, file: str) -> int:
        from harness.elf.check import check_loadable
        from harness.kernels.store import KernelStore

        target = KernelStore().get(self.kernel)
        result = check_loadable(Path(file), target, [Path(d) for d in self.with_dirs])
        if self.as_json:
            print(json.dumps(result.as_dict(), indent=2))
            return 0 if result.loadable else 1
        verdict = "loadable" if result.loadable else "NOT loadable"
        print(f"{file}: {verdict} on {result.kernel}")
        for reason in result.reasons:
            print(f"  {reason.kind}: {reason.message}")
        for note in result.notes:
            print(f"  note: {note}")
        if result.load_first:
            print("  load first:")
            for path in result.load_first:
                print(f"    {path}")
        return 0 if result.loadable else 1

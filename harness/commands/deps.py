"""``kmh deps DIR [--symbols | --graph MODULE]``: depmod's modules.dep / modules.symbols, or one
module's dependency tree.

DIR is a module tree (``lib/modules/<release>``), or the name of a kernel target, meaning its
tree. The text is byte-identical to what ``depmod -n`` writes for that tree; a dependency cycle
is an error naming the cycle. A file that is not a readable module (empty, truncated) gets an
error line on stderr and no dependencies, as with depmod, and the exit code is 1.
"""

from __future__ import annotations

import sys
from pathlib import Path

from plumbum import cli

from harness.errors import HarnessError


class DepsCommand(cli.Application):
    """Print modules.dep for a module tree (as depmod -n does), or modules.symbols, or a module's
    dependency tree."""

    symbols = cli.Flag("--symbols", help="print modules.symbols instead of modules.dep")
    graph = cli.SwitchAttr(
        "--graph",
        str,
        default=None,
        help="show MODULE's dependency tree and load order",
        excludes=["--symbols"],
    )

    def main(self, directory: str) -> int:
        from harness.elf.depgraph import dependency_graph

        graph = dependency_graph(_tree_path(directory))
        # As depmod: each unreadable file gets an error line and no dependencies, the rest is
        # written; unlike depmod (which exits 0), the exit code then says something was wrong.
        for module in graph.tree.unreadable:
            reason = module.error.removeprefix(f"{module.location}: ")
            print(
                f"kmh deps: ERROR: failed to load symbols from {module.location}: {reason}", file=sys.stderr
            )
        status = 1 if graph.tree.unreadable else 0
        if self.graph is not None:
            module = graph.tree.find(self.graph)
            print(graph.tree_text(module))
            print()
            print("load order:")
            for item in graph.load_order(module):
                print(f"  {item.relpath}")
            return status
        out = sys.stdout.buffer
        out.write(graph.modules_symbols() if self.symbols else graph.modules_dep())
        out.flush()
        return status


def _tree_path(argument: str) -> Path:
    """ARGUMENT as a directory, or the module tree of the kernel target it names."""
    path = Path(argument)
    if path.is_dir() or "/" in argument:
        return path
    from harness.kernels.store import KernelStore

    try:
        return KernelStore().get(argument).modules_dir
    except HarnessError:
        raise HarnessError(
            f"{argument}: not a directory (expected a lib/modules/<release> tree) nor a kernel target"
        ) from None

"""elf stage of the pipeline: reading .ko files, the dependency graph, load-ability checks.

The public API, for the CLI verbs and the lifecycle stage:

* ``read_module(path) -> ModuleInfo`` / ``open_module(path) -> KernelModule``: one module
  (.ko, .ko.xz, .ko.zst): modinfo fields in order, exports, undefined symbols with CRCs,
  __versions, sections, signature;
* ``dependency_graph(tree) -> DependencyGraph``: modules.dep / modules.symbols identical to
  ``depmod -n``, load orders, dependency trees; ``show_depends(tree, module)``;
* ``check_loadable(ko_path, kernel, extra_dirs=()) -> LoadCheck``: verdict, reasons, and the
  modules to load first.

Every user mistake (bad file, corrupt module, unknown module) raises
:class:`~harness.errors.HarnessError`; nothing else escapes.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Imported on first use (PEP 562): a verb that only reads one module (kmh inspect, kmh modinfo)
# must not pay for the tree scanner's process pool or the checker's imports at start-up.
_EXPORTS = {
    "LoadCheck": "check",
    "Reason": "check",
    "check_loadable": "check",
    "DependencyGraph": "depgraph",
    "dependency_graph": "depgraph",
    "show_depends": "depgraph",
    "ExportedSymbol": "model",
    "ModinfoField": "model",
    "ModuleInfo": "model",
    "SectionInfo": "model",
    "Signature": "model",
    "UndefinedSymbol": "model",
    "VersionEntry": "model",
    "KernelModule": "module",
    "open_module": "module",
    "read_module": "module",
    "ModuleTree": "tree",
    "TreeModule": "tree",
}

__all__ = [
    "DependencyGraph",
    "ExportedSymbol",
    "KernelModule",
    "LoadCheck",
    "ModinfoField",
    "ModuleInfo",
    "ModuleTree",
    "Reason",
    "SectionInfo",
    "Signature",
    "TreeModule",
    "UndefinedSymbol",
    "VersionEntry",
    "check_loadable",
    "dependency_graph",
    "open_module",
    "read_module",
    "show_depends",
]

if TYPE_CHECKING:
    from harness.elf.check import LoadCheck, Reason, check_loadable
    from harness.elf.depgraph import DependencyGraph, dependency_graph, show_depends
    from harness.elf.model import (
        ExportedSymbol,
        ModinfoField,
        ModuleInfo,
        SectionInfo,
        Signature,
        UndefinedSymbol,
        VersionEntry,
    )
    from harness.elf.module import KernelModule, open_module, read_module
    from harness.elf.tree import ModuleTree, TreeModule


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'harness.elf' has no attribute {name!r}")
    return getattr(importlib.import_module(f"harness.elf.{module}"), name)

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

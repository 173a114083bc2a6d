"""Which modules a spec loads, and in which order: its built modules and the kernel's own.

A spec names one module and any number of companions. The built ones (from sources or
templates) are loaded in the order their symbols demand (a module after every module whose
exports it uses), not in the order the spec lists them, and unloaded in reverse. Modules of the
target kernel's own tree are needed in two ways: a built module uses their symbols (a V4L2
driver needs videodev, which needs mc), or the spec names them as ``[[companion]] debian =``.
Those are installed in the guest with their dependencies and soft dependencies (from the
target's tree, as the guest image gets its own modules: :class:`harness.vm.modules.ModuleTree`)
and loaded with modprobe before the built modules, as a distribution's modprobe would.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from harness.elf.check import LoadCheck, check_loadable, target_index
from harness.elf.depgraph import DependencyGraph
from harness.elf.tree import ModuleTree as ElfTree
from harness.elf.tree import TreeModule, module_facts
from harness.kernels.target import KernelTarget
from harness.lifecycle.cycle import GuestModules
from harness.lifecycle.spec import ModuleSpec
from harness.vm.modules import ModuleTree, modinfo_softdeps, read_module


def symbol_order(built: dict[str, Path], listed: Sequence[str]) -> list[str]:
    """The built modules in load order: each after the built modules it takes symbols from.

    The dependency rules are depmod's (:class:`harness.elf.depgraph.DependencyGraph`, as for
    ``kmh deps`` and ``kmh check``), over just these modules; ties keep the order of LISTED
    (companions first, as the spec wrote them). A cycle is an error naming it.
    """
    modules = []
    for name in listed:
        path = os.fspath(built[name])
        module = TreeModule(name.replace("-", "_"), path, path)
        module.exports, module.needs = module_facts(path)
        modules.append(module)
    graph = DependencyGraph(ElfTree(Path(os.fspath(built[listed[0]])).parent, modules))
    by_name = {module.name: name for module, name in zip(modules, listed, strict=True)}
    order: list[str] = []
    for module in modules:
        for needed in graph.load_order(module):
            if by_name[needed.name] not in order:
                order.append(by_name[needed.name])
    return order


@functools.lru_cache(maxsize=8)
def _guest_tree(modules_dir: Path) -> ModuleTree:
    return ModuleTree(modules_dir)


def tree_roots(
    built: dict[str, Path], kernel: KernelTarget, named: Sequence[str] = ()
) -> tuple[list[str], list[str]]:
    """(needed, soft): the target-tree modules to modprobe for these built modules, in order.

    NEEDED are the spec's ``debian =`` companions (NAMED), then the owners of symbols the built
    modules use that no built module exports, in the order first needed. SOFT are the built
    modules' own soft dependencies: loaded too, but, as for modprobe, they may fail to load
    (crc32c_intel needs SSE 4.2) without failing the module.
    """
    index = target_index(kernel)
    ours: set[bytes] = set()
    ours_named = {name.replace("-", "_") for name in built}
    facts = {name: module_facts(path) for name, path in built.items()}
    for exports, _needs in facts.values():
        ours.update(exports)
    # The guest's view of the tree (built-ins, soft dependencies; 0.1 s to read) only when asked.
    guest_tree = functools.partial(_guest_tree, kernel.modules_dir)
    roots = [n.replace("-", "_") for n in named if n.replace("-", "_") not in guest_tree().builtin]
    soft_roots: list[str] = []
    for name, (_exports, needs) in facts.items():
        for symbol, _weak in needs:
            symbol = symbol.removeprefix(b".")
            owner = index.owner(symbol)
            if owner and symbol not in ours and owner not in roots and owner not in ours_named:
                roots.append(owner)
        pre, post = modinfo_softdeps(read_module(built[name]), built[name])
        for soft in (*pre, *post):
            for target in guest_tree().softdep_names(soft):
                if target not in (*roots, *soft_roots) and target not in guest_tree().builtin:
                    soft_roots.append(target)
    return roots, soft_roots


def plan_loads(modules: GuestModules, spec: ModuleSpec, kernel: KernelTarget) -> None:
    """Fill in MODULES' load order and the target modules to install and modprobe first."""
    named = [d.debian for d in spec.companions if d.debian]
    if len(modules.built) > 1:
        modules.order = symbol_order(modules.built, modules.order)
    needed, soft = tree_roots(modules.built, kernel, named)
    if not needed and not soft:
        return
    modules.tree = _guest_tree(kernel.modules_dir).resolve([*needed, *soft])
    modules.tree_roots = [*needed, *soft]
    modules.expect_loaded += [name for name in needed if name not in modules.expect_loaded]


def check_together(modules: GuestModules, main: str, kernel: KernelTarget) -> LoadCheck:
    """The pre-boot check of every built module, each with the others as ``--with`` modules.

    Returns MAIN's verdict when all of them can load, else the first refused companion's,
    its reasons prefixed with its name, so a companion's unknown symbol or duplicate export is
    found before booting, as the spec's own module's is.
    """
    dirs = {name: path.parent for name, path in modules.built.items()}
    verdict = check_loadable(modules.built[main], kernel, [d for n, d in dirs.items() if n != main])
    if not verdict.loadable:
        return verdict
    for name, path in modules.built.items():
        if name == main:
            continue
        companion = check_loadable(path, kernel, [d for n, d in dirs.items() if n != name])
        if not companion.loadable:
            reasons = tuple(replace(r, message=f"companion {name}: {r.message}") for r in companion.reasons)
            return replace(companion, reasons=reasons)
    return verdict

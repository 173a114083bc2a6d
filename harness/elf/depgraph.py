"""DependencyGraph: who needs whom in a module tree, and modules.dep / modules.symbols from it.

The rules are depmod's (kmod 30), so the text is byte-identical to ``depmod -n``:

* each exported symbol has one owner; when two modules export it, the later one in the tree's
  order wins;
* a module depends on the owner of each symbol it needs (undefined symbols, then __versions
  names), in the order first needed; symbols of vmlinux have no owner and add nothing;
* a topological sort (Kahn's, roots taken from a stack, modules nobody uses first) gives each
  module a ``dep_sort_idx``; a module's modules.dep line lists all its transitive dependencies by
  ascending index, so the line read backwards is a valid load order;
* modules left over by the sort lie on a cycle: an error naming the cycle, as depmod fails too,
  and the place of the modules on it (a graph may join several places: ``kmh check --with``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from harness.elf.kmodhash import SYMBOLS_BUCKETS, iteration_order
from harness.elf.tree import ModuleTree, TreeModule
from harness.errors import HarnessError


@dataclass(frozen=True)
class DependencyCycle:
    """Modules that need each other in a ring: no load order exists."""

    names: tuple[str, ...]

    def __str__(self) -> str:
        return " -> ".join((*self.names, self.names[0]))


class DependencyGraph:
    """The dependency relation of a :class:`ModuleTree`."""

    def __init__(self, tree: ModuleTree) -> None:
        self.tree = tree
        #: Symbol -> the module that exports it (the later exporter wins).
        self.owner: dict[bytes, TreeModule] = {}
        for module in tree.modules:
            for symbol in module.exports:
                self.owner[symbol] = module
        #: Module name -> its direct dependencies, in the order first needed.
        self.direct: dict[str, list[TreeModule]] = {}
        for module in tree.modules:
            deps: list[TreeModule] = []
            seen: set[str] = set()
            for symbol, _weak in module.needs:
                owner = self.owner.get(symbol.removeprefix(b"."))
                if owner is not None and owner.name not in seen:
                    seen.add(owner.name)
                    deps.append(owner)
            self.direct[module.name] = deps
        self.sort_index = self._topological_order()
        for deps in self.direct.values():
            deps.sort(key=lambda dep: self.sort_index[dep.name])

    def _topological_order(self) -> dict[str, int]:
        modules = self.tree.modules
        users = {module.name: 0 for module in modules}
        for deps in self.direct.values():
            for dep in deps:
                users[dep.name] += 1
        stack = [module for module in modules if users[module.name] == 0]
        index: dict[str, int] = {}
        while stack:
            module = stack.pop()
            index[module.name] = len(index)
            for dep in self.direct[module.name]:
                users[dep.name] -= 1
                if users[dep.name] == 0:
                    stack.append(dep)
        if len(index) < len(modules):
            cycle = self._find_cycle({m.name for m in modules if m.name not in index})
            raise HarnessError(self._cycle_message(cycle))
        return index

    def _find_cycle(self, remaining: set[str]) -> DependencyCycle:
        """One cycle among REMAINING (modules the sort could not place): walk until a repeat."""
        start = min(remaining)
        path: list[str] = []
        position: dict[str, int] = {}
        current = start
        while current not in position:
            position[current] = len(path)
            path.append(current)
            current = next(dep.name for dep in self.direct[current] if dep.name in remaining)
        return DependencyCycle(tuple(path[position[current] :]))

    def _cycle_message(self, cycle: DependencyCycle) -> str:
        """The cycle and where its modules are: one directory, or each module's own."""
        by_name = {module.name: module for module in self.tree.modules}
        places = {name: os.path.dirname(by_name[name].location) for name in cycle.names}
        if len(set(places.values())) == 1:
            return f"dependency cycle in {places[cycle.names[0]]}: {cycle}"
        where = ", ".join(f"{name} in {place}" for name, place in places.items())
        return f"dependency cycle: {cycle} ({where})"

    # -- queries -------------------------------------------------------------------------------

    def dependencies(self, module: TreeModule) -> list[TreeModule]:
        """Every module MODULE needs, directly or not, in modules.dep order (users before providers)."""
        found: dict[str, TreeModule] = {}
        pending = list(self.direct[module.name])
        while pending:
            dep = pending.pop()
            if dep.name not in found:
                found[dep.name] = dep
                pending.extend(self.direct[dep.name])
        return sorted(found.values(), key=lambda dep: self.sort_index[dep.name])

    def load_order(self, module: TreeModule) -> list[TreeModule]:
        """The modules to insert for MODULE, dependencies first and MODULE last, as modprobe does.

        modprobe walks the modules.dep line from its end (it prepends while parsing), loading each
        dependency's own dependencies before it.
        """
        order: list[TreeModule] = []
        visited: set[str] = set()

        def visit(current: TreeModule) -> None:
            if current.name in visited:
                return
            visited.add(current.name)
            for dep in reversed(self.dependencies(current)):
                visit(dep)
            order.append(current)

        visit(module)
        return order

    # -- depmod's files ------------------------------------------------------------------------

    def modules_dep(self) -> bytes:
        """modules.dep, byte-identical to depmod's."""
        lines = []
        for module in self.tree.modules:
            deps = self.dependencies(module) if self.direct[module.name] else []
            line = os.fsencode(module.relpath) + b":"
            if deps:
                line += b" " + b" ".join(os.fsencode(dep.relpath) for dep in deps)
            lines.append(line + b"\n")
        return b"".join(lines)

    def modules_symbols(self) -> bytes:
        """modules.symbols, byte-identical to depmod's (its order is kmod's symbol hash order)."""
        lines = [b"# Aliases for symbols, used by symbol_request().\n"]
        for symbol in iteration_order(self.owner, SYMBOLS_BUCKETS):
            lines.append(b"alias symbol:%s %s\n" % (symbol, self.owner[symbol].name.encode()))
        return b"".join(lines)

    def tree_text(self, module: TreeModule) -> str:
        """MODULE's dependency tree, one module a line, drawn with box characters.

        Each module's own dependencies are drawn once; later mentions say "(see above)".
        """
        lines = [f"{module.name}  {module.relpath}"]
        expanded = {module.name}

        def draw(current: TreeModule, indent: str) -> None:
            deps = self.direct[current.name]
            for number, dep in enumerate(deps):
                last = number == len(deps) - 1
                repeat = dep.name in expanded and bool(self.direct[dep.name])
                suffix = "  (see above)" if repeat else ""
                lines.append(f"{indent}{'└── ' if last else '├── '}{dep.name}  {dep.relpath}{suffix}")
                if dep.name not in expanded:
                    expanded.add(dep.name)
                    draw(dep, indent + ("    " if last else "│   "))

        draw(module, "")
        return "\n".join(lines)


def dependency_graph(tree: ModuleTree | os.PathLike[str] | str) -> DependencyGraph:
    """The dependency graph of TREE (a ModuleTree or a lib/modules/<release> directory)."""
    if not isinstance(tree, ModuleTree):
        tree = ModuleTree.scan(os.fspath(tree))
    return DependencyGraph(tree)


def show_depends(tree: ModuleTree | os.PathLike[str] | str, module: str) -> list[TreeModule]:
    """The modules to load for MODULE (a name or relative path), in order, MODULE last."""
    graph = dependency_graph(tree)
    return graph.load_order(graph.tree.find(module))

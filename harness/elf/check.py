"""check_loadable: will this .ko load on that kernel target, and if not, why — before booting.

It applies the kernel's own load-time rules (kernel/module/main.c and version.c) to facts read
from files, without a VM:

* vermagic: compared like ``same_magic()``: when both sides use modversions only the part after
  the release string must match (CRCs decide the rest), otherwise the whole string;
* symbol versions: each needed symbol's CRC in ``__versions`` must equal the exporter's, and
  ``module_layout`` is always checked; a module without ``__versions`` on a modversions kernel is
  refused unless the kernel allows forced loads;
* every non-weak undefined symbol must be exported by vmlinux (Module.symvers), by a module of the
  target's tree, or by a ``--with`` module;
* GPL-only exports are unavailable to modules whose license is not GPL-compatible;
* a namespaced export needs ``MODULE_IMPORT_NS`` of that namespace;
* unsigned modules are refused when the kernel enforces signatures;
* the name must be free: a built-in with ``/sys/module/NAME`` from boot refuses it (see
  :mod:`harness.elf.builtin`); another built-in or a tree module of that name is a note.

The providers found give the modules to load first, in modprobe's order.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.elf.builtin import builtin_module_names, sysfs_builtin_names
from harness.elf.depgraph import DependencyGraph
from harness.elf.model import ExportedSymbol, ModuleInfo
from harness.elf.module import open_module
from harness.elf.symvers import VMLINUX, SymversEntry, read_symvers
from harness.elf.tree import ModuleTree, TreeModule, module_facts
from harness.elf.treecache import TreeIndex, cached_tree, tree_index
from harness.errors import HarnessError
from harness.kernels.target import KernelTarget

MODULE_LAYOUT = "module_layout"


@dataclass(frozen=True, slots=True)
class Reason:
    """One reason the module would be refused."""

    #: vermagic | no-versions | unknown-symbol | crc | gpl-only | namespace | unsigned | name-taken
    #: | duplicate-export
    kind: str
    message: str
    symbol: str = ""


@dataclass(frozen=True)
class LoadCheck:
    """The verdict for one module on one kernel target."""

    module: ModuleInfo
    kernel: str
    reasons: tuple[Reason, ...]
    #: Modules to insert before this one, in order (absolute paths).
    load_first: tuple[Path, ...]
    #: Facts worth knowing that do not stop the load (weak symbols left unresolved, ...).
    notes: tuple[str, ...] = field(default=())

    @property
    def loadable(self) -> bool:
        return not self.reasons

    def as_dict(self) -> dict[str, Any]:
        return {
            "module": str(self.module.path),
            "name": self.module.name,
            "kernel": self.kernel,
            "loadable": self.loadable,
            "reasons": [{"kind": r.kind, "symbol": r.symbol, "message": r.message} for r in self.reasons],
            "load_first": [str(path) for path in self.load_first],
            "notes": list(self.notes),
        }


@dataclass(frozen=True, slots=True)
class _Provider:
    """Who exports a symbol the module needs, and how."""

    owner: str  # "vmlinux" or a module name
    crc: int | None
    gpl_only: bool
    namespace: str


def kernel_config(kernel: KernelTarget) -> dict[str, str]:
    """CONFIG_* values of the target (empty when its config file is missing)."""
    values: dict[str, str] = {}
    try:
        text = kernel.config.read_text(errors="replace")
    except OSError:
        return values
    for line in text.splitlines():
        if line.startswith("CONFIG_"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


def same_magic(module_magic: str, kernel_magic: str, has_crcs: bool) -> bool:
    """The kernel's vermagic comparison: the release part is skipped when CRCs are checked."""
    if has_crcs:
        module_magic = module_magic[len(module_magic.split(" ", 1)[0]) :]
        kernel_magic = kernel_magic[len(kernel_magic.split(" ", 1)[0]) :]
    return module_magic == kernel_magic


def target_vermagic(index: TreeIndex) -> str:
    """The vermagic the target's kernel expects: the one its own modules carry."""
    for _name, _relpath, path in index.modules[:5]:
        magic = _vermagic_of(Path(path))
        if magic:
            return magic
    raise HarnessError(f"{index.root}: cannot tell the kernel's vermagic (no module carries one)")


def _vermagic_of(path: Path) -> str | None:
    for key, value in open_module(path).raw_modinfo:
        if key == b"vermagic":
            return value.decode("utf-8", "surrogateescape")
    return None


@dataclass
class _Findings:
    """Reasons and notes gathered by the rules below."""

    reasons: list[Reason] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def check_loadable(
    ko_path: Path | str, kernel: KernelTarget, extra_dirs: Sequence[Path | str] = ()
) -> LoadCheck:
    """Whether the module at KO_PATH can load on KERNEL, given the target's tree and EXTRA_DIRS."""
    module = open_module(ko_path)
    info = module.info()
    config, index, symvers, kernel_magic = _target_facts(kernel)
    me = TreeModule(info.name, os.fspath(ko_path), os.fspath(ko_path))
    me.exports, me.needs = module_facts(ko_path)
    graph, extra_names = _combined_graph(me, kernel, index, extra_dirs)
    kernel_modversions = config.get("CONFIG_MODVERSIONS") == "y" or " modversions " in f"{kernel_magic} "
    crcs_checked = kernel_modversions and module.image.has("__versions")

    found = _Findings()
    for extra in graph.tree.modules:
        if extra.name in extra_names and extra.error:
            # Say so: silently it would look as if the directory held nothing this module needs.
            found.notes.append(
                f"--with module {extra.location} is unreadable, so it provides nothing: "
                f"{extra.error.removeprefix(f'{extra.location}: ')}"
            )
    _check_name(info.name, Path(ko_path), kernel, index, found)
    if not kernel_modversions:
        # Debian's 7.x kernels are built without MODVERSIONS: every CRC in Module.symvers is 0.
        found.notes.append(
            f"{kernel.release} has CONFIG_MODVERSIONS off: symbol CRCs cannot be compared, so an ABI "
            "change behind an unchanged symbol name goes unnoticed; only the whole vermagic is checked"
        )
    _check_vermagic(info, kernel_magic, crcs_checked, found)
    _check_versions_present(module.image.has("__versions"), kernel_modversions, config, found)
    if config.get("CONFIG_MODULE_SIG_FORCE") == "y" and info.signature is None:
        found.reasons.append(
            Reason("unsigned", "module is not signed and the kernel only loads signed modules")
        )
    providers = _providers(graph, me, symvers)
    for name, weak, crc in _needed_symbols(info, crcs_checked):
        _check_symbol(info, name, weak, crc, providers.get(name), crcs_checked, config, found)
    _check_duplicate_exports(me, graph, extra_names, index, symvers, found)
    load_first = tuple(m.path.resolve() for m in graph.load_order(me)[:-1])
    return LoadCheck(info, kernel.release, tuple(found.reasons), load_first, tuple(found.notes))


#: One reader of a target's facts at a time: the runner reads them in the background while it
#: builds, and a check that starts before that read is done waits for it instead of doing the
#: same 0.3 s of work a second time (lru_cache does not merge concurrent calls).
_FACTS_LOCK = threading.Lock()


def _target_facts(kernel: KernelTarget) -> tuple[dict[str, str], TreeIndex, dict[str, SymversEntry], str]:
    """Config, tree index, Module.symvers and vermagic of a target, read once per process."""
    with _FACTS_LOCK:
        return _read_target_facts(kernel)


def target_index(kernel: KernelTarget) -> TreeIndex:
    """Who exports what in KERNEL's module tree (shared with the checks)."""
    return _target_facts(kernel)[1]


@functools.lru_cache(maxsize=8)
def target_tree(kernel: KernelTarget) -> ModuleTree:
    """KERNEL's whole module tree, with what each module needs: read only when a check has a
    provider in it, which most modules built against a kernel's headers do not."""
    return cached_tree(kernel.modules_dir)


@functools.lru_cache(maxsize=8)
def _read_target_facts(
    kernel: KernelTarget,
) -> tuple[dict[str, str], TreeIndex, dict[str, SymversEntry], str]:
    """An unpacked target never changes, and a run checks every module against the same few
    targets: re-reading them cost ~0.2 s per check."""
    index = tree_index(kernel.modules_dir)
    return kernel_config(kernel), index, read_symvers(kernel.symvers), target_vermagic(index)


def warm_target(kernel: KernelTarget) -> None:
    """Read KERNEL's facts now: the runner calls it in the background while kbuild runs, so
    the first check of a run does not wait for them."""
    _target_facts(kernel)


def _check_name(name: str, ko_path: Path, kernel: KernelTarget, index: TreeIndex, found: _Findings) -> None:
    """The kernel refuses a name it already has in /sys/module; other clashes are notes."""
    if name in sysfs_builtin_names(kernel):
        found.reasons.append(
            Reason(
                "name-taken",
                f"built-in code of the kernel already has /sys/module/{name} from boot, "
                f"so a module named {name} is refused; rename it",
            )
        )
    elif name in builtin_module_names(kernel):
        found.notes.append(
            f"{name} is also a module built into the kernel: insmod loads it, modprobe refuses it as built-in"
        )
    at = index.position.get(name)
    same = index.modules[at] if at is not None else None
    if same is not None and Path(same[2]).resolve() != ko_path.resolve():
        found.notes.append(
            f"the kernel's tree has a module named {name} ({same[1]}): "
            "yours is refused while that one is loaded, and modprobe may pick either"
        )


def _check_vermagic(info: ModuleInfo, kernel_magic: str, crcs_checked: bool, found: _Findings) -> None:
    magic = info.vermagic or ""
    if not same_magic(magic, kernel_magic, crcs_checked):
        found.reasons.append(
            Reason(
                "vermagic",
                f"vermagic {magic.strip()!r} does not match the kernel's {kernel_magic.strip()!r}",
            )
        )
    elif magic != kernel_magic:
        found.notes.append(
            f"built for {magic.split(' ', 1)[0]}, target is {kernel_magic.split(' ', 1)[0]}: "
            "accepted only if every symbol CRC matches"
        )


def _check_versions_present(
    has_versions: bool, kernel_modversions: bool, config: dict[str, str], found: _Findings
) -> None:
    if not kernel_modversions or has_versions:
        return
    if config.get("CONFIG_MODULE_FORCE_LOAD") == "y":
        found.notes.append("no __versions table: the kernel loads it forced, and taints itself")
    else:
        found.reasons.append(
            Reason(
                "no-versions",
                "no symbol versions (__versions): the kernel checks CRCs and refuses the module",
            )
        )


def _needed_symbols(info: ModuleInfo, crcs_checked: bool) -> list[tuple[str, bool, int | None]]:
    """(name, weak, CRC) of each undefined symbol, plus module_layout, which the kernel always checks."""
    needed = [(symbol.name, symbol.weak, symbol.crc) for symbol in info.undefined]
    if crcs_checked:
        layout = next((entry for entry in info.versions if entry.name == MODULE_LAYOUT), None)
        needed.append((MODULE_LAYOUT, False, layout.crc if layout else None))
    return needed


def _check_symbol(
    info: ModuleInfo,
    name: str,
    weak: bool,
    crc: int | None,
    provider: _Provider | None,
    crcs_checked: bool,
    config: dict[str, str],
    found: _Findings,
) -> None:
    """The kernel's rules for linking one symbol: exported at all, GPL, namespace, CRC."""
    if provider is None:
        if weak:
            found.notes.append(f"weak symbol {name} is not exported by anyone: it stays NULL")
        else:
            found.reasons.append(Reason("unknown-symbol", f"unknown symbol {name}", name))
        return
    if provider.gpl_only and not info.gpl_compatible:
        license_text = info.license if info.license is not None else "(none)"
        found.reasons.append(
            Reason(
                "gpl-only",
                f"uses GPL-only symbol {name} (from {provider.owner}) "
                f"but its license {license_text!r} is not GPL-compatible",
                name,
            )
        )
    if provider.namespace and provider.namespace not in info.imported_namespaces:
        message = (
            f"uses symbol {name} from namespace {provider.namespace} "
            f"without MODULE_IMPORT_NS({provider.namespace})"
        )
        if config.get("CONFIG_MODULE_ALLOW_MISSING_NAMESPACE_IMPORTS") == "y":
            found.notes.append(message)
        else:
            found.reasons.append(Reason("namespace", message, name))
    if crcs_checked and provider.crc is not None:
        if crc is None:
            found.notes.append(f"no symbol version for {name}: the kernel warns and links it anyway")
        elif crc != provider.crc:
            found.reasons.append(
                Reason(
                    "crc",
                    f"disagrees about version of symbol {name} "
                    f"(module {crc:#010x}, kernel {provider.crc:#010x} from {provider.owner})",
                    name,
                )
            )


def _check_duplicate_exports(
    me: TreeModule,
    graph: DependencyGraph,
    extra_names: set[str],
    index: TreeIndex,
    symvers: dict[str, SymversEntry],
    found: _Findings,
) -> None:
    """The kernel refuses a module exporting a symbol a loaded module or vmlinux already exports.

    vmlinux is always there and the --with modules are loaded with this one, so a clash with
    them is a reason; a module of the target's tree clashes only while it is loaded: a note.
    A tree module that the checked module or a --with module replaces (same name) is not there.
    """
    mine = set(me.exports)
    if not mine:
        return
    clashes: dict[int, list[bytes]] = {}
    for raw in mine:
        for at in index.exporters.get(raw, ()):
            clashes.setdefault(at, []).append(raw)
    for at in sorted(clashes):
        owner, relpath, _path = index.modules[at]
        if owner == me.name or owner in extra_names:
            continue
        clash = clashes[at]
        found.notes.append(
            f"exports {_first(clash)}{_more(clash)} like {owner} of the kernel's tree ({relpath}): "
            f"refused while {owner} is loaded"
        )
    for module in graph.tree.modules:
        clash = sorted(mine.intersection(module.exports)) if module.name in extra_names else []
        if clash:
            found.reasons.append(
                Reason(
                    "duplicate-export",
                    f"exports duplicate symbol {_first(clash)} (owned by {module.name}){_more(clash)}: "
                    "the kernel refuses the second module",
                    _first(clash),
                )
            )
    for raw in sorted(mine):
        entry = symvers.get(raw.decode("utf-8", "surrogateescape"))
        if entry is not None and entry.module == VMLINUX:
            found.reasons.append(
                Reason(
                    "duplicate-export",
                    f"exports duplicate symbol {entry.name} (owned by the kernel, vmlinux): "
                    "the kernel refuses the module",
                    entry.name,
                )
            )


def _first(symbols: list[bytes]) -> str:
    """The first of SYMBOLS in sorted order, as text: the one a clash message names."""
    return min(symbols).decode("utf-8", "surrogateescape")


def _more(symbols: list[bytes]) -> str:
    """' (and N more)' when a clash message names one of several SYMBOLS."""
    return f" (and {len(symbols) - 1} more)" if len(symbols) > 1 else ""


def _combined_graph(
    me: TreeModule, kernel: KernelTarget, index: TreeIndex, extra_dirs: Sequence[Path | str]
) -> tuple[DependencyGraph, set[str]]:
    """One graph over the target's modules, the --with modules (which override same-named target
    modules, like updates/) and the checked module ME, listed last so its exports win; and the
    names of the --with modules.

    Without --with modules, when no target module exports a symbol ME needs, the target's
    modules cannot change ME's providers or load order: the graph is ME alone, and the whole
    tree (what each of its 4000 modules needs) is not read.
    """
    needed = {raw for raw, _weak in me.needs} | {raw.removeprefix(b".") for raw, _weak in me.needs}
    if not extra_dirs and not any(raw in index.exporters for raw in needed):
        return DependencyGraph(ModuleTree(index.root, [me])), set()
    modules: dict[str, TreeModule] = {m.name: m for m in target_tree(kernel).modules}
    extra_names: set[str] = set()
    for directory in extra_dirs:
        for extra in ModuleTree.scan(directory).modules:
            modules.pop(extra.name, None)
            modules[extra.name] = extra
            extra_names.add(extra.name)
    extra_names.discard(me.name)
    modules.pop(me.name, None)
    modules[me.name] = me
    return DependencyGraph(ModuleTree(index.root, list(modules.values()))), extra_names


def _providers(
    graph: DependencyGraph, me: TreeModule, symvers: dict[str, SymversEntry]
) -> dict[str, _Provider]:
    """Symbol -> provider for every symbol the checked module needs (modules before vmlinux)."""
    providers: dict[str, _Provider] = {}
    export_details: dict[str, dict[str, ExportedSymbol]] = {}
    for raw, _weak in me.needs:
        name = raw.decode("utf-8", "surrogateescape")
        owner = graph.owner.get(raw)
        if owner is not None and owner is not me:
            details = export_details.get(owner.name)
            if details is None:
                details = {e.name: e for e in open_module(owner.path).symbols.exports()}
                export_details[owner.name] = details
            export = details.get(name)
            if export is not None:
                providers[name] = _Provider(owner.name, export.crc, export.gpl_only, export.namespace)
                continue
        entry = symvers.get(name)
        if entry is not None and entry.module == VMLINUX:
            providers[name] = _Provider(VMLINUX, entry.crc, entry.gpl_only, entry.namespace)
    return providers

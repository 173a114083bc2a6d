"""Runs module specs end to end: render → build (batched) → check → the guest cycle, on each kernel.

The runner first makes a :class:`Plan` (which module runs on which kernel; printable with
``--dry-run``), then works through it kernel by kernel: all sources of a kernel are built in one
batched kbuild, each module is checked for load-ability on the host (a module that cannot load is
reported without booting), and the loadable ones share VM boots: ``jobs`` worker threads, each
with its own VM, take modules from a queue. A VM is replaced after a crash, a timeout or a module
that stayed loaded or left state behind, so one bad module never taints the next one's verdict.
No result is lost: every planned module × kernel ends as one :class:`ModuleRun`.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import cast

from harness.dkms import build_sources, skipped_build
from harness.elf.check import warm_target
from harness.elf.depgraph import show_depends
from harness.elf.treecache import cached_tree
from harness.errors import HarnessError
from harness.kbuild import BuildResult, pick_module
from harness.kbuild.diagnostics import failure_excerpt
from harness.kbuild.guest import build_in_guest
from harness.kernels.store import KernelStore
from harness.kernels.target import KernelTarget
from harness.lifecycle.cycle import GuestCycle, GuestLost, GuestModules
from harness.lifecycle.durations import build_shares
from harness.lifecycle.interrupt import Interrupted
from harness.lifecycle.loadorder import check_together, plan_loads
from harness.lifecycle.result import ModuleRun, StepResult
from harness.lifecycle.spec import ModuleDef, ModuleSpec
from harness.lifecycle.state import Snapshot
from harness.paths import cache_root
from harness.templates.render import prune_rendered, write_stable
from harness.vm.backends import factory_for
from harness.vm.pool import Prewarmed

DEFAULT_KERNEL = "bookworm"
StepCallback = Callable[[ModuleRun, StepResult], None]
RunCallback = Callable[[ModuleRun], None]


@dataclass
class PlannedRun:
    spec: ModuleSpec
    kernel: KernelTarget
    #: The kernel the module is built against (differs only for deliberate mismatches).
    build_kernel: KernelTarget
    run: ModuleRun
    #: True once the run has its final step (a failure before the guest, or the guest cycle).
    finished: bool = False


@dataclass
class Plan:
    items: list[PlannedRun] = field(default_factory=list)

    def describe(self) -> str:
        lines = []
        for item in self.items:
            built = (
                "" if item.build_kernel == item.kernel else f" (built against {item.build_kernel.release})"
            )
            lines.append(f"{item.spec.name:<28} {item.kernel.release:<24} from {item.spec.origin}{built}")
        return "\n".join(lines)


def make_plan(specs: Sequence[ModuleSpec], kernels: Sequence[str] = ()) -> Plan:
    """Pair each spec with its kernels: ``kernels`` when given, else the spec's own, else bookworm."""
    store = KernelStore()
    plan = Plan()
    for spec in specs:
        for name in kernels or spec.kernels or (DEFAULT_KERNEL,):
            kernel = store.ensure(name)
            build_kernel = _build_kernel(store, spec, kernel)
            run = ModuleRun(module=spec.name, source=spec.origin, kernel=kernel.release, target=kernel.suite)
            plan.items.append(PlannedRun(spec, kernel, build_kernel, run))
    return plan


def _build_kernel(store: KernelStore, spec: ModuleSpec, kernel: KernelTarget) -> KernelTarget:
    wanted = spec.build_against
    if not wanted or wanted == "same":
        return kernel
    if wanted == "other":
        others = [t for t in store.list() if t.release != kernel.release]
        if not others:
            raise HarnessError(f"{spec.origin}: build_against = 'other' needs a second kernel target")
        return others[-1] if kernel.major_minor < others[-1].major_minor else others[0]
    return store.ensure(wanted)


class Runner:
    """Executes a plan; see the module docstring for the order of work."""

    def __init__(
        self,
        *,
        jobs: int = 1,
        werror: bool = False,
        isolate: bool = False,
        backend: str = "qemu",
        build_in_vm: bool = False,
        vm_factory: Callable[..., object] | None = None,
        on_step: StepCallback | None = None,
        on_finished: RunCallback | None = None,
    ) -> None:
        self.jobs = max(1, jobs)
        self.werror = werror
        #: A fresh VM for every module instead of sharing boots between modules that behave.
        self.isolate = isolate
        factory = factory_for(backend)
        if build_in_vm and backend != "vagrant":
            raise HarnessError("--build-in-vm needs --backend vagrant (the QEMU guest has no compiler)")
        self.vm_factory = vm_factory or factory
        #: kbuild runs inside the guest against its own headers (a full distribution box).
        self.build_in_vm = build_in_vm
        self.on_step = on_step
        self.on_finished = on_finished
        self._lock = threading.Lock()
        #: Set when the run is interrupted: workers take no new module and record nothing more.
        self._stop = threading.Event()
        #: Guests in use by workers, so an interruption can stop them.
        self._live: set[object] = set()
        self._workers: list[threading.Thread] = []

    def execute(self, plan: Plan) -> list[ModuleRun]:
        """Every planned module × kernel ends as one ModuleRun, in plan order.

        On :class:`Interrupted` (SIGINT/SIGTERM, see :mod:`harness.lifecycle.interrupt`) the work
        in flight is stopped, finished results are kept, every other run gets an
        ``interrupted`` step, and the exception goes on to the caller, which writes the reports.
        """
        self._stop.clear()
        self._workers = []
        # Boot one VM per kernel while the host renders and builds: under TCG a boot takes about
        # as long as a kbuild, so the guest is usually ready when the first module is.
        self._prewarmed = Prewarmed()
        try:
            try:
                for kernel in _unique_kernels(item.kernel for item in plan.items):
                    debian = _debian_modules(plan, kernel)
                    self._prewarmed.boot(kernel.release, partial(self._new_vm, kernel, debian, plan))
                    self._prewarmed.warm(partial(warm_target, kernel))
                return self._execute(plan)
            finally:
                self._prewarmed.close()
        except Interrupted as interruption:
            self._abort(plan, interruption)
            raise

    def _abort(self, plan: Plan, interruption: Interrupted) -> None:
        """Stop the workers and their guests, then mark every unfinished run interrupted."""
        self._stop.set()
        with self._lock:
            live = list(self._live)
        for vm in live:
            stop = getattr(vm, "abort", None) or getattr(vm, "close")  # noqa: B009 - any backend
            stop()
        for worker in self._workers:
            worker.join(timeout=30)
        for item in plan.items:
            if not item.finished:
                message = f"interrupted by {interruption.name} before it finished"
                item.run.steps.append(StepResult("interrupted", "interrupted", message=message))
                self._finish(item)

    def _execute(self, plan: Plan) -> list[ModuleRun]:
        sources = self._render(plan)
        guest_work: dict[str, list[tuple[PlannedRun, GuestModules]]] = {}
        kernels: dict[str, KernelTarget] = {}
        for build_kernel in _unique_kernels(item.build_kernel for item in plan.items):
            items = [i for i in plan.items if i.build_kernel == build_kernel and not _finished(i)]
            built = self._build(items, build_kernel, sources)
            for item in items:
                modules = self._check(item, built, sources)
                if modules is not None:
                    guest_work.setdefault(item.kernel.release, []).append((item, modules))
                    kernels[item.kernel.release] = item.kernel
        for release, work in guest_work.items():
            self._run_in_vms(kernels[release], work)
        return [item.run for item in plan.items]

    # -- render ------------------------------------------------------------------------------

    def _render(self, plan: Plan) -> dict[ModuleDef, Path]:
        """Render every template module once (companions shared between specs are rendered once),
        each into a stable directory named by its content (see write_stable)."""
        sources: dict[ModuleDef, Path] = {}
        root = cache_root() / "rendered"
        for item in plan.items:
            if _finished(item):
                continue
            started = time.monotonic()
            try:
                for definition in (*item.spec.companions, item.spec.module):
                    if definition in sources or definition.debian:
                        continue
                    if definition.template:
                        # A stable directory per rendered content: a re-run of the same spec
                        # reuses kbuild's objects and the build cache (harness.kbuild.cache).
                        rendered = write_stable(definition.template, definition.name, root, definition.params)
                        sources[definition] = cast(Path, rendered.directory)
                    elif definition.source is not None:
                        sources[definition] = definition.source
            except HarnessError as error:
                self._step(item, StepResult("render", "fail", time.monotonic() - started, error.message))
                self._finish(item)
                continue
            if item.spec.module.template:
                message = f"rendered template {item.spec.module.template}"
                self._step(item, StepResult("render", "pass", time.monotonic() - started, message))
        prune_rendered(root, keep=sources.values())
        return sources

    # -- build -------------------------------------------------------------------------------

    def _build(
        self, items: list[PlannedRun], kernel: KernelTarget, sources: dict[ModuleDef, Path]
    ) -> dict[ModuleDef, BuildResult]:
        """One batched kbuild per group of uniquely named modules for this kernel."""
        wanted: list[ModuleDef] = []
        for item in items:
            for definition in (*item.spec.companions, item.spec.module):
                if definition in sources and definition not in wanted:
                    wanted.append(definition)
        results: dict[ModuleDef, BuildResult] = {}
        build = self._build_in_guest if self.build_in_vm else self._build_on_host
        timed: list[tuple[list[ModuleDef], float]] = []
        for batch in _batches_with_unique_names(wanted):
            started = time.monotonic()
            for definition, result in zip(batch, build([sources[d] for d in batch], kernel), strict=True):
                results[definition] = result
            timed.append((batch, time.monotonic() - started))
        users = Counter(
            d for item in items for d in {*item.spec.companions, item.spec.module} if d in results
        )
        shares = build_shares(timed, users)
        for item in items:
            definitions = [d for d in (*item.spec.companions, item.spec.module) if d in results]
            if not definitions:
                continue
            elapsed = sum(shares[d] for d in set(definitions))
            failed = [d for d in definitions if not results[d].ok]
            if skipped_build(item.run, [results[d] for d in definitions]):
                self._step(item, StepResult("build", "skip", elapsed, f"skipped: {item.run.skipped}"))
                self._finish(item)
            elif failed:
                result = results[failed[0]]
                evidence = "\n".join(str(d) for d in result.diagnostics) or failure_excerpt(result.log)
                errors = len(result.errors)
                message = f"{failed[0].name} does not build for {kernel.release}" + (
                    f": {errors} compiler error(s), first: {result.errors[0]}".split("\n")[0]
                    if errors
                    else ""
                )
                if not errors and result.log.startswith("no build environment"):
                    message = result.log.splitlines()[0]  # names the kernel and why
                self._step(item, StepResult("build", "fail", elapsed, message, evidence))
                self._finish(item)
            else:
                warnings = sum(len(results[d].warnings) for d in definitions)
                note = f", {warnings} warning(s)" if warnings else ""
                environment = results[definitions[0]].environment
                where = f" with {environment}" if environment and environment != "host" else ""
                cached = sum(results[d].cached for d in definitions)
                if cached:  # say so: the .ko and its warnings are an identical earlier build's
                    note += f", cached ({cached} of {len(definitions)} from the build cache)"
                message = f"built against {kernel.release}{where}{note}"
                evidence = "\n".join(str(w) for d in definitions for w in results[d].warnings)
                self._step(item, StepResult("build", "pass", elapsed, message, evidence))
        return results

    def _build_on_host(self, directories: list[Path], kernel: KernelTarget) -> list[BuildResult]:
        return build_sources(directories, kernel, werror=self.werror)  # DKMS trees with their MAKE[0]

    def _build_in_guest(self, directories: list[Path], kernel: KernelTarget) -> list[BuildResult]:
        """kbuild inside the (prewarmed) guest against its own headers; .ko files come back to the host."""
        vm = self._prewarmed.take(kernel.release) or self.vm_factory(kernel, ())
        try:
            return build_in_guest(vm, directories, kernel)  # type: ignore[arg-type]
        finally:
            # Hand the booted guest on to the first worker of this kernel.
            self._prewarmed.give(kernel.release, vm)

    # -- check -------------------------------------------------------------------------------

    def _check(
        self, item: PlannedRun, built: dict[ModuleDef, BuildResult], sources: dict[ModuleDef, Path]
    ) -> GuestModules | None:
        """Host-side load-ability check; returns what to install in the guest, or None to stop."""
        if _finished(item):
            return None
        started = time.monotonic()
        modules = GuestModules()
        for definition in (*item.spec.companions, item.spec.module):
            if definition.debian:
                continue
            result = built[definition]
            try:
                # The kernel's names: a-b.ko is module a_b, so name = "a_b" or "a-b" both pick it;
                # a name matching none of several .ko is an error, not the first in sorted order.
                modules.built[definition.name] = pick_module(result, definition.name).path
            except HarnessError as error:
                self._step(item, StepResult("check", "fail", time.monotonic() - started, error.message))
                self._finish(item)
                return None
            modules.order.append(definition.name)
            shown = f"{definition.template} template" if definition.template else str(result.source_dir)
            modules.sources[definition.name.replace("-", "_")] = shown
        if item.spec.module.debian:
            return self._check_debian(item, modules, started)
        try:
            plan_loads(modules, item.spec, item.kernel)
        except HarnessError as error:
            self._step(item, StepResult("check", "fail", time.monotonic() - started, error.message))
            self._finish(item)
            return None
        try:
            verdict = check_together(modules, item.spec.name, item.kernel)
        except HarnessError as error:
            self._step(item, StepResult("check", "fail", time.monotonic() - started, error.message))
            self._finish(item)
            return None
        elapsed = time.monotonic() - started
        if not verdict.loadable:
            reasons = [reason.message for reason in verdict.reasons]
            message = f"cannot load on {item.kernel.release}: {reasons[0]}"
            evidence = "\n".join([*reasons, *verdict.notes])
            self._step(item, StepResult("check", "fail", elapsed, message, evidence))
            self._finish(item)
            return None
        first = [path.name for path in verdict.load_first]
        needs = f"; loads after {', '.join(first)}" if first else ""
        self._step(item, StepResult("check", "pass", elapsed, f"loadable on {item.kernel.release}{needs}"))
        return modules

    def _check_debian(self, item: PlannedRun, modules: GuestModules, started: float) -> GuestModules | None:
        """A module of the target's own tree: what modprobe must load, from our depmod-identical graph."""
        try:
            order = show_depends(cached_tree(item.kernel.modules_dir), item.spec.module.debian)
        except HarnessError as error:
            self._step(item, StepResult("check", "fail", time.monotonic() - started, error.message))
            self._finish(item)
            return None
        modules.expect_loaded = [module.name for module in order]
        message = f"modprobe must load, in order: {' '.join(modules.expect_loaded)}"
        self._step(item, StepResult("check", "pass", time.monotonic() - started, message))
        return modules

    # -- guest -------------------------------------------------------------------------------

    def _run_in_vms(self, kernel: KernelTarget, work: list[tuple[PlannedRun, GuestModules]]) -> None:
        pending: queue.Queue[tuple[PlannedRun, GuestModules]] = queue.Queue()
        for entry in work:
            pending.put(entry)
        plan = Plan([item for item, _ in work])
        debian = _debian_modules(plan, kernel)
        workers = [
            threading.Thread(target=self._worker, args=(kernel, debian, pending, plan), daemon=True)
            for _ in range(min(self.jobs, len(work)))
        ]
        self._workers += workers
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    def _new_vm(self, kernel: KernelTarget, debian: tuple[str, ...], plan: Plan):  # type: ignore[no-untyped-def]
        """A VM for this kernel; with the Python layer only when a spec of the plan checks links.

        ``python=True`` is passed only then, so factories written before it existed keep working.
        """
        if any(item.kernel == kernel and item.spec.needs_python for item in plan.items):
            return self.vm_factory(kernel, debian, python=True)
        return self.vm_factory(kernel, debian)

    def _worker(
        self, kernel: KernelTarget, debian: tuple[str, ...], pending: queue.Queue, plan: Plan
    ) -> None:
        vm = None
        known_state: Snapshot | None = None
        try:
            while not self._stop.is_set():
                try:
                    item, modules = pending.get_nowait()
                except queue.Empty:
                    return
                item.run.required = _required_steps(item.spec)
                lost: list[str] = []
                while True:
                    started = time.monotonic()
                    try:
                        if vm is None:
                            vm = self._prewarmed.take(kernel.release) or self._new_vm(kernel, debian, plan)
                            with self._lock:
                                self._live.add(vm)
                        cycle = GuestCycle(
                            vm,
                            item.spec,
                            item.run,
                            modules,
                            kernel.release,
                            self._guest_step,
                            known_state,
                            stopped=self._stop.is_set,
                        )
                        cycle.execute()
                        if self._stop.is_set():
                            return  # what the guest said after the interruption is not evidence
                        known_state = cycle.clean_state
                        if self.isolate or not cycle.reusable or vm.poisoned:
                            vm.close()
                            vm = None
                            known_state = None
                    except GuestLost as error:
                        if self._stop.is_set():
                            return
                        # Nothing the module did can be judged from a guest lost before its
                        # first step: once more on a fresh guest, then an error verdict.
                        lost.append(error.reason)
                        if vm is not None:
                            vm.close()
                            vm = None
                        known_state = None
                        if len(lost) < 2:
                            continue
                        message = f"the guest was lost twice before the first step: {lost[-1]}"
                        evidence = "\n".join(f"attempt {n}: {reason}" for n, reason in enumerate(lost, 1))
                        self._step(
                            item,
                            StepResult(
                                "load", "error", time.monotonic() - started, message, evidence, error.crash
                            ),
                        )
                    except HarnessError as error:
                        if self._stop.is_set():
                            return
                        elapsed = time.monotonic() - started
                        self._step(item, StepResult("load", "error", elapsed, error.message))
                        if vm is not None:
                            vm.close()
                            vm = None
                        known_state = None
                    break
                if self._stop.is_set():
                    return
                self._finish(item)
        finally:
            if vm is not None:
                with self._lock:
                    self._live.discard(vm)
                vm.close()

    # -- bookkeeping -------------------------------------------------------------------------

    def _guest_step(self, run: ModuleRun, step: StepResult) -> None:
        if self.on_step:
            with self._lock:
                self.on_step(run, step)

    def _step(self, item: PlannedRun, step: StepResult) -> None:
        item.run.steps.append(step)
        item.run.duration += step.duration
        if self.on_step:
            with self._lock:
                self.on_step(item.run, step)

    def _finish(self, item: PlannedRun) -> None:
        item.run.duration = sum(step.duration for step in item.run.steps)
        item.run.seal()
        item.finished = True
        if self.on_finished:
            with self._lock:
                self.on_finished(item.run)


def _required_steps(spec: ModuleSpec) -> tuple[str, ...]:
    """What must have passed for a pass: load, unload, cleanup, and reload when the spec asks."""
    return ("load", "unload", "cleanup", *(("reload",) if spec.expect.reload else ()))


def _finished(item: PlannedRun) -> bool:
    return item.finished


def _debian_modules(plan: Plan, kernel: KernelTarget) -> tuple[str, ...]:
    """The kernel's own modules the guest image must carry for this plan (e.g. usb-storage)."""
    return tuple(
        sorted({i.spec.module.debian for i in plan.items if i.kernel == kernel and i.spec.module.debian})
    )


def _unique_kernels(kernels) -> list[KernelTarget]:  # type: ignore[no-untyped-def]
    seen: list[KernelTarget] = []
    for kernel in kernels:
        if kernel not in seen:
            seen.append(kernel)
    return seen


def _batches_with_unique_names(definitions: list[ModuleDef]) -> list[list[ModuleDef]]:
    """Split so no batch builds two different modules of the same name (modpost would refuse)."""
    batches: list[list[ModuleDef]] = []
    for definition in definitions:
        for batch in batches:
            if all(other.name != definition.name for other in batch):
                batch.append(definition)
                break
        else:
            batches.append([definition])
    return batches


def _tail(log: str, lines: int = 30) -> str:
    return "\n".join(log.rstrip().splitlines()[-lines:])

"""The in-guest part of a run: load → verify → exercise → unload → verify → cleanup → reload.

:class:`GuestCycle` drives one module (with its companions) through one VM and records a
:class:`StepResult` per step. It never raises for what the module or kernel did: an insmod error
is a failed step, an oops a crashed step, a command that never returns a timed-out step; once the
VM is poisoned the remaining steps are skipped. It tells the runner whether the VM may be reused.

Every guest command of a step, the module's own and the harness's probes alike (state
snapshots, ``cat /proc/modules``, the kernel log), goes through :meth:`GuestCycle._sh`: a command
that crashes or times out, or a crash the guest core finds between commands, ends the step as a
``crash``/``timeout`` step carrying the oops, so a probe's crash is never mistaken for a state
difference. An incomplete snapshot is never diffed. Kernel WARNINGs are findings of their own:
the step reports them (text, taint W, the user's source line) and, unless the spec says
``warnings = "allow"``, fails, but the kernel goes on, so the remaining steps still run.

If the guest is lost before the module's first step (it was poisoned by what ran before, or
died while the module was being installed), :class:`GuestLost` tells the runner to try again
on a fresh guest: nothing the module did can be judged from it.
"""

from __future__ import annotations

import functools
import re
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.debugkernel.detectors import Detectors, leak_message, target_features
from harness.debugkernel.kmemleak import describe as describe_leaks
from harness.debugkernel.kunit import parse_ktap, runs_kunit_suites
from harness.debugkernel.sweep import FaultSweep
from harness.errors import HarnessError
from harness.lifecycle.guest import ProcModule, explain_error, find_module
from harness.lifecycle.loaderrors import explain_load_error
from harness.lifecycle.probes import modules_and_initstate_command, split_modules_and_initstate
from harness.lifecycle.result import ModuleRun, StepResult, StepStatus
from harness.lifecycle.spec import ModuleSpec
from harness.lifecycle.state import (
    END_COMMAND,
    KALLSYMS_COMMAND,
    SNAPSHOT_COMMAND,
    TAINT_WARN,
    Snapshot,
    diff,
    taint_letters,
)
from harness.netcheck import NetReport, check_links
from harness.netcheck.run import Phase
from harness.vm.backend import VMBackend
from harness.vm.crash import Crash
from harness.vm.modules import GuestModule, guest_path, install_in_guest, missing_command
from harness.vm.result import CommandResult

# The guest's busybox sh runs its own applets before searching PATH (Debian builds it with
# FEATURE_SH_STANDALONE), so kmod's real tools are called by absolute path.

#: Seconds any bookkeeping command in the guest may take: they take 5-50 ms under TCG on a
#: quiet machine (bench/vm.py) and a few hundred ms at load average 14, so 20 s is >40x that.
QUICK = 20.0
#: How much longer they take on a debug kernel (KASAN, lockdep and kmemleak instrument every
#: fork and exec): reading a module's ~25 sections took over 20 s there at load 4-7.
INSTRUMENTED_SLOWDOWN = 6
#: ``depmod -a`` reads every module of the guest's tree: milliseconds in the QEMU guest's small
#: tree, but ~4000 modules in a full Vagrant box, where it took over 20 s under TCG at load
#: average 12. Generous, since a depmod that times out makes the guest unusable for the module.
DEPMOD_TIMEOUT = 180.0
EVIDENCE_LINES = 40


@dataclass
class GuestModules:
    """What to install in the guest: our built .ko files and the target's own modules."""

    #: Built modules: module name → .ko on the host. The spec's own module comes last.
    built: dict[str, Path] = field(default_factory=dict)
    #: Load order for insmod (companions first).
    order: list[str] = field(default_factory=list)
    #: Modules that must be live after loading (a tree module's dependency closure, from the host).
    expect_loaded: list[str] = field(default_factory=list)
    #: Module name → what to call its source in reports (the user's source directory), so a
    #: WARNING's file path points at the user's file rather than a deleted batch directory.
    sources: dict[str, str] = field(default_factory=dict)
    #: Modules of the target's own tree to install (with dependencies and softdeps, load order)
    #: and the ones to modprobe before the built modules (:mod:`harness.lifecycle.loadorder`).
    tree: list[GuestModule] = field(default_factory=list)
    tree_roots: list[str] = field(default_factory=list)


class GuestLost(Exception):
    """The guest could not take the module's first step; the runner retries on a fresh one."""

    def __init__(self, reason: str, crash: Crash | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.crash = crash


class _Trouble(Exception):
    """A guest command crashed or timed out (or a crash surfaced between commands)."""

    def __init__(self, crash: Crash, command: str, background: bool = False) -> None:
        super().__init__(crash.summary())
        self.crash = crash
        self.command = command
        self.background = background


class _ProbeFailed(Exception):
    """A harness probe gave no usable answer (e.g. a cut-short state snapshot)."""


class GuestCycle:
    """One module's steps in one VM."""

    def __init__(
        self,
        vm: VMBackend,
        spec: ModuleSpec,
        run: ModuleRun,
        modules: GuestModules,
        release: str,
        on_step: Callable[[ModuleRun, StepResult], None] | None = None,
        known_state: Snapshot | None = None,
        *,
        stopped: Callable[[], bool] = lambda: False,
    ) -> None:
        self.vm = vm
        self.spec = spec
        self.run = run
        self.modules = modules
        self.release = release
        self.on_step = on_step
        #: True once the run was interrupted: nothing the guest says afterwards is recorded.
        self.stopped = stopped
        #: False when the module (or junk it left) is still in the kernel: the VM must be replaced.
        self.reusable = True
        self._preloaded: frozenset[str] = frozenset()
        self._stop = False
        #: The state the VM is known to be in (the previous module's clean "after"), if any.
        self._before = known_state or Snapshot()
        self._known_state = known_state is not None
        #: The state after a clean unload, which the next module in this VM can start from.
        self.clean_state: Snapshot | None = None
        self._load_mark = 0
        #: The guest's crash when the cycle last looked: a new one surfaced during this step.
        self._known_crash: Crash | None = None
        #: WARNINGs seen during the current step.
        self._warnings: list[Crash] = []
        #: Taint bits already reported with their cause (W after a reported WARNING).
        self._reported_taint = 0
        #: A debug kernel's kmemleak bookkeeping (no-ops on other kernels).
        self.detectors = Detectors(target_features(release), self._sh, modules.built)

    # -- driver ------------------------------------------------------------------------------

    def execute(self) -> None:
        """Run every step; raises :class:`GuestLost` only before the first step."""
        steps: list[tuple[str, Callable[[], StepResult]]] = [
            ("load", self._load),
            ("verify", self._verify),
            ("exercise", self._exercise),
            ("unload", self._unload),
            ("cleanup", self._cleanup),
            ("reload", self._reload),
            *([("faults", FaultSweep(self).run)] if self.spec.inject_faults else []),
        ]
        self._prepare()
        for name, action in steps:
            if self.stopped():
                return
            if self.vm.poisoned or self._stop:
                self._record(StepResult(name, "skip", message="skipped: an earlier step failed"))
                continue
            started = time.monotonic()
            self._warnings = []
            step = self._guarded(name, action)
            step.duration = time.monotonic() - started
            if step.status in ("crash", "timeout", "error"):
                self.reusable = False
                self._stop = True
            if step.status == "fail" and name in ("load", "unload"):
                self._stop = True
            self._judge_warnings(step)
            self._record(step)
            if name == "load" and step.status == "pass" and self._runs_kunit:
                self._record_kunit()

    def _prepare(self) -> None:
        """Install the module and take the "before" snapshot: the guest must be sound for this."""
        if self.vm.poisoned:
            assert self.vm.crash is not None
            raise GuestLost(f"the guest was poisoned before the first step: {self.vm.crash.summary()}")
        self._known_crash = self.vm.crash
        try:
            # Before the install, so that a restored guest that has run nothing yet can hand
            # over its saved answer (the install only writes files under /lib/modules).
            if not self._known_state:
                self._before = self._snapshot(answered=True)
            self._install()
            # What was loaded before the module: the "before" snapshot lists it (no extra read).
            self._preloaded = self._before.sections.get("modules", frozenset())
        except _Trouble as trouble:
            reason = f"the guest broke before the first step: {trouble.crash.summary()}"
            raise GuestLost(reason, trouble.crash) from None
        except (_ProbeFailed, HarnessError) as error:
            raise GuestLost(f"the guest broke before the first step: {error}") from None

    def _guarded(self, name: str, action: Callable[[], StepResult]) -> StepResult:
        """The step's result, or a crash/timeout/error step when a guest command went wrong."""
        try:
            return action()
        except _Trouble as trouble:
            return self._trouble_step(name, trouble)
        except _ProbeFailed as error:
            return StepResult(name, "error", message=str(error))
        except HarnessError as error:
            # The guest stopped taking commands without a report we could read.
            crash = self.vm.crash
            if crash is not None:
                return self._trouble_step(name, _Trouble(crash, crash.command, background=True))
            return StepResult(name, "error", message=f"the guest stopped answering: {error.message}")

    def _trouble_step(self, name: str, trouble: _Trouble) -> StepResult:
        crash = trouble.crash
        status: StepStatus = "timeout" if crash.kind == "timeout" else "crash"
        if trouble.background:
            after = crash.command or "no command"
            message = f"the kernel crashed between commands ({after}): {crash.summary()}"
        else:
            what = "timed out" if status == "timeout" else "crashed the kernel"
            message = f"{trouble.command} {what}: {crash.summary()}"
        lines = list(crash.lines) or self._safe_dmesg(self._load_mark)
        return StepResult(name, status, message=message, evidence=_tail(lines), crash=crash)

    def _judge_warnings(self, step: StepResult) -> None:
        """WARNINGs are reported on the step that triggered them; by default they fail it."""
        if not self._warnings:
            return
        step.warnings = list(self._warnings)
        self.reusable = False  # taint W stays for good: the next module gets an untainted kernel
        self._reported_taint |= TAINT_WARN
        text = "\n".join(self._describe_warning(w) for w in self._warnings)
        taint = self._taint_now()
        lines = [text, f"kernel taint now: {taint or 'none'}"]
        lines += ["--- report ---", *(line for w in self._warnings for line in w.lines[:EVIDENCE_LINES])]
        evidence = "\n".join(lines)
        first = self._warnings[0]
        report = "WARNING" if first.kind == "WARNING" else f"{first.kind} report"
        headline = f"kernel {report} during {step.name}: {self._describe_warning(first)}"
        if step.status == "pass" and self.spec.expect.warnings == "fail":
            step.status, step.message = "fail", headline
            step.evidence = "\n".join(filter(None, [evidence, step.evidence]))
        else:
            note = f"{headline} (allowed by the spec)" if step.status == "pass" else headline
            step.message = f"{step.message}; {note}" if step.message else note
            step.evidence = "\n".join(filter(None, [step.evidence, evidence]))

    def _describe_warning(self, warning: Crash) -> str:
        """``at <user's file>:<line> in func [mod]``: the path mapped out of the build directory."""
        where = _WARN_AT.search(warning.title)
        place = ""
        if where:
            place = where.group("path")
            shown = self.modules.sources.get(warning.module.replace("-", "_"))
            if shown:
                # kbuild compiled the file as [<batch dir>/]m<N>/<path in the module's dir>.
                inside = _BATCH_PATH.sub("", place) if _BATCH_PATH.search(place) else Path(place).name
                place = f"{shown.rstrip('/')}/{inside}"
        func = f" in {warning.function}" if warning.function else ""
        mod = f" [{warning.module}]" if warning.module else ""
        return f"at {place}{func}{mod}" if place else f"{warning.title}{func}{mod}"

    def _taint_now(self) -> str:
        try:
            result = self.vm.run("cat /proc/sys/kernel/tainted", timeout=QUICK, allow_poisoned=True)
        except HarnessError:
            return "unknown"
        value = result.stdout.strip()
        return taint_letters(int(value)) if value.isdigit() else "unknown"

    def _record(self, step: StepResult) -> None:
        if self.stopped():
            return
        self.run.steps.append(step)
        if self.on_step:
            self.on_step(self.run, step)

    # -- guest helpers -----------------------------------------------------------------------

    def _sh(self, command: str, timeout: float | None = None, *, what: str = "") -> CommandResult:
        """Run a guest command; its crash, timeout, or a crash found between commands, raises.

        TIMEOUT defaults to :data:`QUICK` (scaled on a debug kernel); WHAT names the command in a
        report (default: the command itself)."""
        if timeout is None:
            features = self.detectors.features
            instrumented = features.kasan or features.kmemleak or features.lockdep
            timeout = QUICK * (INSTRUMENTED_SLOWDOWN if instrumented else 1)
        result = self.vm.run(command, timeout=timeout, allow_poisoned=True)
        self._warnings += result.warnings
        if result.crash is not None:
            raise _Trouble(result.crash, what or command.strip().splitlines()[0][:120])
        self._check_background()
        return result

    def _check_background(self) -> None:
        crash = self.vm.crash
        if crash is not None and crash is not self._known_crash:
            self._known_crash = crash
            raise _Trouble(crash, crash.command, background=True)

    def _install(self) -> None:
        extra = f"/lib/modules/{self.release}/extra"
        for name, path in self.modules.built.items():
            self.vm.put(path, f"{extra}/{name}.ko")
        if self.modules.tree:
            missing = set(self._sh(missing_command(self.modules.tree, self.release)).stdout.split())
            tree = [m for m in self.modules.tree if guest_path(m, self.release) in missing]
            install_in_guest(self.vm, tree, self.release)
        if self.spec.method == "modprobe" or self.spec.module.debian or self.modules.tree:
            self._sh(f"/sbin/depmod -a {shlex.quote(self.release)}", timeout=DEPMOD_TIMEOUT)

    def _snapshot(self, *, kallsyms: bool = False, answered: bool = False) -> Snapshot:
        """The kernel state now. ANSWERED: the saved guest's answer may stand in for running
        the listing, when this guest was restored from it and has run nothing since."""
        command = SNAPSHOT_COMMAND + (KALLSYMS_COMMAND + "\n" if kallsyms else "") + END_COMMAND
        saved = self.vm.saved_answer(command) if answered else None
        if saved is not None:
            return Snapshot.parse(saved)
        result = self._sh(command, timeout=60, what="kmh's kernel state snapshot (/proc, /sys, /dev)")
        snapshot = Snapshot.parse(result.stdout)
        if not snapshot.complete:
            raise _ProbeFailed(
                f"the kernel state snapshot was cut short (exit {result.exit_code}): not compared"
            )
        return snapshot

    def _proc_module(self, name: str) -> ProcModule | None:
        return find_module(self._sh("cat /proc/modules").stdout, name)

    def _dmesg(self, since: int) -> list[str]:
        lines = self.vm.dmesg(since=since)
        self._check_background()
        return lines

    def _mark(self) -> int:
        mark = self.vm.mark()
        self._check_background()
        return mark

    def _safe_dmesg(self, since: int) -> list[str]:
        try:
            return self.vm.dmesg(since=since)
        except Exception:  # noqa: BLE001 - a dead guest has no log to give; the crash says enough
            return []

    def _lost_note(self, since: int) -> str:
        """Why a kernel log line may be missing: records overwritten before they were read."""
        lost = self.vm.lost(since)
        return f" ({lost} kernel log record(s) were lost: the log overflowed)" if lost else ""

    # -- steps -------------------------------------------------------------------------------

    def _load_commands(self) -> list[tuple[str, str]]:
        """(module, command) pairs: target-tree modules first (modprobe), then the built ones in
        their symbol order (:mod:`harness.lifecycle.loadorder`), the spec's module with its arguments."""
        args = " ".join(shlex.quote(word) for word in self.spec.load_arguments())
        commands = [(n, f"/sbin/modprobe {shlex.quote(n)}") for n in self.modules.tree_roots]
        extra = f"/lib/modules/{self.release}/extra"
        order = self.modules.order if self.spec.name in self.modules.order else [self.spec.name]
        for name in order:
            own_args = args if name == self.spec.name else ""
            if self.spec.method == "modprobe":
                target = self.spec.module.debian or name if name == self.spec.name else name
                command = f"/sbin/modprobe {shlex.quote(target)} {own_args}"
            else:
                command = f"/sbin/insmod {extra}/{name}.ko {own_args}"
            commands.append((name, command.strip()))
        return commands

    def _load(self, step: str = "load") -> StepResult:
        self._load_mark = self._mark()
        self.detectors.before_load()
        loaded: list[str] = []
        for module, command in self._load_commands():
            result = self._sh(command, timeout=self.spec.timeout)
            if result.exit_code != 0:
                log = self._dmesg(self._load_mark)
                evidence = result.stderr.strip() + "\n" + _tail(log)
                why = explain_load_error(result.stderr, log, self.release, module)
                leaks = self.detectors.leaks(module)  # what the failed init left behind
                if leaks:
                    why += f"; {leak_message(leaks)}"
                    evidence += "\n--- kmemleak ---\n" + describe_leaks(leaks)
                    self.reusable = False
                left = self._undo_partial_load()
                if left:
                    evidence += (
                        f"\nstill loaded after the failed load (the VM is replaced): {', '.join(left)}"
                    )
                return StepResult(step, "fail", message=f"{command}: {why}", evidence=evidence.strip())
            loaded.append(module)
        entry = self._proc_module(self.spec.name)
        if entry is None:
            return StepResult(step, "fail", message=f"{self.spec.name} is not in /proc/modules after loading")
        self.detectors.loaded([name for name in loaded if name in self.modules.built])
        return StepResult(step, "pass", message=entry.describe())

    def _undo_partial_load(self) -> list[str]:
        """Take out what a failed load left (its companions, the tree modules it modprobed).

        The next module in this VM starts from the state before this one; what cannot be
        removed makes the VM unusable for it. Returns the modules still loaded.
        """
        for _round in range(8):
            proc = self._sh("cat /proc/modules").stdout
            left = [
                line.split()[0]
                for line in proc.splitlines()
                if line and line.split()[0] not in self._preloaded
            ]
            unused = [
                line.split()[0]
                for line in proc.splitlines()
                if line.split()[0] in left and line.split()[2] == "0"
            ]
            if not unused:
                break
            for name in unused:
                self._sh(f"/sbin/rmmod {shlex.quote(name)}")
        if left:
            self.reusable = False
        return left

    @functools.cached_property
    def _runs_kunit(self) -> bool:
        return any(runs_kunit_suites(path) for path in self.modules.built.values())

    def _record_kunit(self) -> None:
        """One result per KUnit test case the load ran (KTAP in the kernel log since the load)."""
        cases = parse_ktap(self._safe_dmesg(self._load_mark))
        for case in cases:
            evidence = "\n".join(case.diagnostics)
            message = f"KUnit {case.name}: {case.status}"
            if case.status == "fail" and case.diagnostics:
                message += f": {case.diagnostics[0].lstrip('# ')}"
            status: StepStatus = "fail" if case.status == "fail" else "pass"
            if case.status == "skip":
                status = "skip"
            self._record(StepResult(f"kunit {case.name}", status, message=message, evidence=evidence))

    def _verify(self) -> StepResult:
        expect = self.spec.expect
        problems: list[str] = []
        notes: list[str] = []
        both = self._sh(modules_and_initstate_command(_sys_name(self.spec.name))).stdout
        proc_modules, initstate = split_modules_and_initstate(both)
        entry = find_module(proc_modules, self.spec.name)
        if entry is None:
            problems.append(f"{self.spec.name} vanished from /proc/modules")
        else:
            notes.append(entry.describe())
            if entry.state != "Live":
                problems.append(f"{self.spec.name} is in state {entry.state}, not Live")
        # The spec's own initstate came with /proc/modules; companions' are read one by one.
        problems += self._check_initstate(self.spec.name, proc_modules, initstate)
        for loaded in (n for n in self.modules.order if n != self.spec.name):
            problems += self._check_initstate(loaded, proc_modules)
        log = self._dmesg(self._load_mark)
        for pattern in expect.load_dmesg:
            if not any(re.search(pattern, line) for line in log):
                lost = self._lost_note(self._load_mark)
                problems.append(f"no kernel log line matched {pattern!r} on load{lost}")
        for path in (*expect.devices, *expect.proc, *expect.sysfs):
            if self._sh(f"test -e {shlex.quote(path)}").exit_code != 0:
                problems.append(f"{path} does not exist while the module is loaded")
        for key, wanted in expect.params.items():
            path = f"/sys/module/{_sys_name(self.spec.name)}/parameters/{key}"
            result = self._sh(f"cat {shlex.quote(path)}")
            if result.exit_code != 0:
                problems.append(f"{path} does not exist")
            elif result.stdout.strip() != wanted:
                problems.append(f"{path} is {result.stdout.strip()!r}, expected {wanted!r}")
        if expect.kallsyms:
            symbols = self._sh("awk 'NF == 4 { print $3, $4 }' /proc/kallsyms").stdout.splitlines()
            present = {line.split()[0] for line in symbols if line}
            for symbol in expect.kallsyms:
                if symbol not in present:
                    problems.append(f"symbol {symbol} is not in /proc/kallsyms")
        for other in (*expect.loaded, *self.modules.expect_loaded):
            if find_module(proc_modules, other) is None:
                problems.append(f"{other} is not loaded (expected alongside {self.spec.name})")
        for held, holders in expect.holders.items():
            found, why = self._check_holders(held, holders)
            problems += found
            notes.append(why)
        net: NetReport | None = None
        if expect.links:
            net = self._netcheck("loaded")
            if net.crash is not None:
                return _net_crash("verify", net, "\n".join(problems))
            problems += net.problems
            notes.append(net.summary())
        if problems:
            evidence = "\n".join(problems)
            if net is not None:
                evidence += "\n--- netlink checks ---\n" + net.describe()
            evidence += "\n--- kernel log since load ---\n" + _tail(self._dmesg(self._load_mark))
            return StepResult("verify", "fail", message=problems[0], evidence=evidence)
        # The netlink checks stay in the report when they pass: what was sent, refused and counted.
        return StepResult("verify", "pass", message="; ".join(notes), evidence=net.describe() if net else "")

    def _check_initstate(self, name: str, proc_modules: str, initstate: str | None = None) -> list[str]:
        """NAME's /sys/module entry says live (the kernel spells the directory with underscores);
        INITSTATE when it was already read (with /proc/modules, for the spec's own module)."""
        problems = []
        if name != self.spec.name and find_module(proc_modules, name) is None:
            problems.append(f"{name} is not loaded (expected alongside {self.spec.name})")
        sys_dir = f"/sys/module/{_sys_name(name)}"
        if initstate is None:
            initstate = self._sh(f"cat {shlex.quote(sys_dir + '/initstate')}").stdout.strip()
        if initstate != "live":
            problems.append(f"{sys_dir}/initstate is {initstate or 'missing'!r}, not 'live'")
        return problems

    def _check_holders(self, held: str, holders: tuple[str, ...]) -> tuple[list[str], str]:
        """rmmod of a module others depend on must fail, and the kernel must name the holders.

        Returns the problems and, for the report, why the kernel refused (its message, the
        holders in /sys/module/NAME/holders and the refcount in /proc/modules).
        """
        problems = []
        result = self._sh(f"/sbin/rmmod {shlex.quote(held)}")
        listed = sorted(self._sh(f"ls /sys/module/{held}/holders").stdout.split())
        entry = self._proc_module(held)
        if result.exit_code == 0:
            problems.append(f"rmmod {held} succeeded although {', '.join(holders)} should hold it")
        for holder in holders:
            if holder not in listed:
                problems.append(f"/sys/module/{held}/holders lists {listed}, not {holder}")
        refcount = f", refcount {entry.refcount}" if entry else ""
        held_by = ", ".join(listed) or "nobody"
        why = f"rmmod {held} refused ({explain_error(result.stderr)}): held by {held_by}{refcount}"
        return problems, why

    def _exercise(self) -> StepResult:
        command = self.spec.expect.exercise
        if not command:
            return StepResult("exercise", "skip", message="no exercise in the spec")
        result = self._sh(command, timeout=self.spec.timeout)
        output = result.stdout + result.stderr
        if result.exit_code != 0:
            return StepResult(
                "exercise", "fail", message=f"exercise exited {result.exit_code}", evidence=output.strip()
            )
        pattern = self.spec.expect.exercise_output
        if pattern and not re.search(pattern, result.stdout, re.M):
            return StepResult(
                "exercise",
                "fail",
                message=f"exercise output did not match {pattern!r}",
                evidence=output.strip(),
            )
        return StepResult("exercise", "pass", message=f"{command!r} exited 0")

    def _unload_command(self) -> str:
        tree = [n for n in reversed(self.modules.tree_roots) if n not in self._preloaded]
        order = self.modules.order if self.spec.name in self.modules.order else [self.spec.name]
        names = list(reversed(order))
        if self.spec.method == "modprobe":
            # modprobe -r of the module also takes out the dependencies nobody else uses; the
            # rest may be gone already (kmod 30 exits 0 then; a newer one may not): what stays
            # is swept.
            main = f"/sbin/modprobe -r {shlex.quote(self.spec.module.debian or self.spec.name)}"
            return " && ".join(
                main if n == self.spec.name else f"{{ /sbin/modprobe -r {shlex.quote(n)} || true; }}"
                for n in names + tree
            )
        commands = [f"/sbin/rmmod {shlex.quote(n)}" for n in names]
        # A tree module another one still holds stays; the stray sweep after the unload takes it.
        commands += [f"{{ /sbin/modprobe -r {shlex.quote(n)} || true; }}" for n in tree]
        return " && ".join(commands)

    def _unload(self, step: str = "unload") -> StepResult:
        mark = self._mark()
        command = self._unload_command()
        result = self._sh(command, timeout=self.spec.timeout)
        entry = self._proc_module(self.spec.name)
        if result.exit_code != 0 or entry is not None:
            self.reusable = False
            why = explain_error(result.stderr) if result.exit_code != 0 else "exit code 0"
            evidence = [result.stderr.strip()]
            if entry is not None:
                evidence.append(entry.describe())
                holders = self._sh(f"ls /sys/module/{_sys_name(self.spec.name)}/holders").stdout.split()
                evidence.append(f"holders: {', '.join(holders) or 'none'}")
                if entry.refcount and not holders:
                    evidence.append(
                        "the refcount is held by the module itself or by open files, not by modules"
                    )
            return StepResult(
                step,
                "fail",
                message=f"{command}: {why}; the module is still loaded",
                evidence="\n".join(evidence),
            )
        sweep = self.spec.method == "modprobe" or self.modules.tree
        leftovers = self._remove_stray_dependencies() if sweep else []
        note = f"; modprobe -r left {', '.join(leftovers)} loaded, removed with rmmod" if leftovers else ""
        if step == "unload":
            log = self._dmesg(mark)
            missing = [
                p for p in self.spec.expect.unload_dmesg if not any(re.search(p, line) for line in log)
            ]
            if missing:
                return StepResult(
                    step,
                    "fail",
                    message=f"no kernel log line matched {missing[0]!r} on unload{self._lost_note(mark)}",
                    evidence=_tail(log),
                )
        return StepResult(step, "pass", message=f"{self.spec.name} unloaded{note}")

    def _remove_stray_dependencies(self) -> list[str]:
        """Unused modules modprobe pulled in but ``modprobe -r`` did not take out again.

        kmod's ``modprobe -r`` skips a dependency that is still held at the moment it tries it
        (usb-storage leaves usb_common and scsi_common behind); they are not the module's
        leftovers, so they are removed here, innermost holder first, and named in the report.
        """
        removed: list[str] = []
        for _round in range(8):
            proc = self._sh("cat /proc/modules").stdout
            stray = [
                line.split()[0]
                for line in proc.splitlines()
                if line and line.split()[0] not in self._preloaded and line.split()[2] == "0"
            ]
            if not stray:
                break
            for name in stray:
                if self._sh(f"/sbin/rmmod {shlex.quote(name)}").exit_code == 0:
                    removed.append(name)
        return removed

    def _netcheck(self, phase: Phase) -> NetReport:
        """The spec's links checked over rtnetlink in the guest (Python takes a few seconds here)."""
        return check_links(self.vm, self.spec.expect.links, phase, timeout=max(self.spec.timeout, 120))

    def _cleanup(self) -> StepResult:
        after = self._snapshot()
        if after.sections.get("modules") != self._before.sections.get("modules"):
            # Module symbols are in kallsyms exactly while their module is in the module list
            # (/proc/modules shows every state), so kallsyms (~0.3 s to read under TCG) is read
            # only when a module is left: then it names what stayed.
            after = self._snapshot(kallsyms=True)
        changes = diff(self._before, after, reported_taint=self._reported_taint)
        text = changes.describe()
        net: NetReport | None = None
        if self.spec.expect.links:
            # Asked even when the diff already shows leftovers: a link that outlived its driver
            # is what netlink must not report (and asking may be what brings the kernel down).
            net = self._netcheck("unloaded")
            if net.crash is not None:
                return _net_crash("cleanup", net, text)
            if not net.ok:
                problems = "\n".join(net.problems)
                self.reusable = False
                evidence = "\n".join(filter(None, [text, problems, net.describe()]))
                message = (text or problems).splitlines()[0]
                return StepResult("cleanup", "fail", message=message, evidence=evidence)
        leaks = self.detectors.leaks(self.spec.name)
        if leaks:
            self.reusable = False
            found = "\n".join(filter(None, [leak_message(leaks), describe_leaks(leaks), text]))
            return StepResult("cleanup", "fail", message=leak_message(leaks), evidence=found)
        if not changes.clean:
            self.reusable = False
            return StepResult("cleanup", "fail", message=text.splitlines()[0], evidence=text)
        self.clean_state = after
        gone = f"; {len(self.spec.expect.links)} link(s) gone from netlink" if self.spec.expect.links else ""
        evidence = net.describe() if net else ""
        return StepResult("cleanup", "pass", message=f"nothing left behind{gone}", evidence=evidence)

    def _reload(self) -> StepResult:
        if not self.spec.expect.reload:
            return StepResult("reload", "skip", message="reload disabled in the spec")
        loaded = self._load("reload")
        if loaded.status != "pass":
            if loaded.status == "fail":
                loaded.message = "second load failed (state survived the first unload?): " + loaded.message
            return loaded
        unloaded = self._unload("reload")
        if unloaded.status != "pass":
            return unloaded
        return StepResult("reload", "pass", message="loaded and unloaded a second time")


#: The source line of a WARNING: "... PID: 91 at /path/x.c:20 func" (to 6.17) or
#: "WARNING: m0/x.c:19 at func" (6.18 on, relative to the M= directory).
_WARN_AT = re.compile(r"(?:^WARNING: | at )(?P<path>\S+?:\d+) ")
#: The build copy's prefix: ``<build root>/umbrella/<name>-<digest>[_<sub dir>]/`` (absolute up
#: to 6.17, from the umbrella on later), or an older ``[batch-*/]m<N>/``.
_BATCH_PATH = re.compile(r"^(?:(?:.*/umbrella/)?[^/]*-[0-9a-f]{10}(?:_[^/]+)?|(?:.*/batch-[^/]+/)?m\d+)/")


def _sys_name(name: str) -> str:
    """The kernel's name of a module (its /sys/module directory): dashes become underscores."""
    return name.replace("-", "_")


def _net_crash(step: str, net: NetReport, found: str) -> StepResult:
    """The netlink check took the kernel down: report the crash, with what was found before it."""
    assert net.crash is not None
    status: StepStatus = "timeout" if net.crash.kind == "timeout" else "crash"
    what = "timed out" if status == "timeout" else "crashed the kernel"
    message = f"netlink check ({net.phase}) {what}: {net.crash.summary()}"
    if found:
        message = f"{found.splitlines()[0]}; {message}"
    oops = "\n".join(list(net.crash.lines)[:EVIDENCE_LINES])  # its head: the BUG line, RIP, trace
    evidence = "\n".join(filter(None, [found, message, oops]))
    return StepResult(step, status, message=message, evidence=evidence, crash=net.crash)


def _tail(lines: list[str] | tuple[str, ...], count: int = EVIDENCE_LINES) -> str:
    return "\n".join(list(lines)[-count:])

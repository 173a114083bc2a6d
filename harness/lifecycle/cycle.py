"""The in-guest part of a run: load → verify → exercise → unload → verify → cleanup → reload.

:class:`GuestCycle` drives one module (with its companions) through one VM and records a
:class:`StepResult` per step. It never raises for what the module or kernel did: an insmod error
is a failed step, an oops a crashed step, a command that never returns a timed-out step; once the
VM is poisoned the remaining steps are skipped. It tells the runner whether the VM may be reused.
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.lifecycle.guest import ProcModule, explain_error, find_module
from harness.lifecycle.result import ModuleRun, StepResult
from harness.lifecycle.spec import ModuleSpec
from harness.lifecycle.state import KALLSYMS_COMMAND, SNAPSHOT_COMMAND, Snapshot, diff
from harness.netcheck import NetReport, check_links
from harness.netcheck.run import Phase
from harness.vm.backend import VMBackend
from harness.vm.result import CommandResult

# The guest's busybox sh runs its own applets before searching PATH (Debian builds it with
# FEATURE_SH_STANDALONE), so kmod's real tools are called by absolute path.

#: Seconds any bookkeeping command in the guest may take.
QUICK = 20.0
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
    ) -> None:
        self.vm = vm
        self.spec = spec
        self.run = run
        self.modules = modules
        self.release = release
        self.on_step = on_step
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

    # -- driver ------------------------------------------------------------------------------

    def execute(self) -> None:
        steps: list[tuple[str, Callable[[], StepResult]]] = [
            ("load", self._load),
            ("verify", self._verify),
            ("exercise", self._exercise),
            ("unload", self._unload),
            ("cleanup", self._cleanup),
            ("reload", self._reload),
        ]
        self._install()
        if not self._known_state:
            self._before = self._snapshot()
        for name, action in steps:
            if self.vm.poisoned or self._stop:
                self._record(StepResult(name, "skip", message="skipped: an earlier step failed"))
                continue
            started = time.monotonic()
            step = action()
            step.duration = time.monotonic() - started
            if step.status in ("crash", "timeout"):
                self.reusable = False
                self._stop = True
            if step.status == "fail" and name in ("load", "unload"):
                self._stop = True
            self._record(step)

    def _record(self, step: StepResult) -> None:
        self.run.steps.append(step)
        if self.on_step:
            self.on_step(self.run, step)

    # -- guest helpers -----------------------------------------------------------------------

    def _sh(self, command: str, timeout: float = QUICK) -> CommandResult:
        return self.vm.run(command, timeout=timeout, allow_poisoned=True)

    def _install(self) -> None:
        extra = f"/lib/modules/{self.release}/extra"
        for name, path in self.modules.built.items():
            self.vm.put(path, f"{extra}/{name}.ko")
        if self.spec.method == "modprobe" or self.spec.module.debian:
            self._sh(f"/sbin/depmod -a {shlex.quote(self.release)}")
        proc = self._sh("cat /proc/modules").stdout
        self._preloaded = frozenset(line.split(" ", 1)[0] for line in proc.splitlines() if line)

    def _snapshot(self, *, kallsyms: bool = False) -> Snapshot:
        command = SNAPSHOT_COMMAND + (KALLSYMS_COMMAND if kallsyms else "")
        return Snapshot.parse(self._sh(command, timeout=60).stdout)

    def _proc_module(self, name: str) -> ProcModule | None:
        return find_module(self._sh("cat /proc/modules").stdout, name)

    def _dmesg(self, since: int) -> list[str]:
        return self.vm.dmesg(since=since)

    def _trouble(self, step: str, result: CommandResult, since: int, what: str) -> StepResult | None:
        """A crash/timeout step when the command took the kernel down or never came back."""
        if result.crash is None:
            return None
        status = "timeout" if result.timed_out else "crash"
        message = (
            f"{what} {'timed out' if status == 'timeout' else 'crashed the kernel'}: {result.crash.summary()}"
        )
        lines = list(result.crash.lines) or self._safe_dmesg(since)
        return StepResult(step, status, message=message, evidence=_tail(lines), crash=result.crash)

    def _safe_dmesg(self, since: int) -> list[str]:
        try:
            return self._dmesg(since)
        except Exception:  # noqa: BLE001 - a dead guest has no log to give; the crash says enough
            return []

    # -- steps -------------------------------------------------------------------------------

    def _load_commands(self) -> list[tuple[str, str]]:
        """(module, command) pairs that load the spec's module (and its companions for insmod)."""
        args = " ".join(shlex.quote(word) for word in self.spec.load_arguments())
        name = self.spec.module.debian or self.spec.name
        if self.spec.method == "modprobe":
            return [(self.spec.name, f"/sbin/modprobe {shlex.quote(name)} {args}".strip())]
        extra = f"/lib/modules/{self.release}/extra"
        commands = [(n, f"/sbin/insmod {extra}/{n}.ko") for n in self.modules.order if n != self.spec.name]
        commands.append((self.spec.name, f"/sbin/insmod {extra}/{self.spec.name}.ko {args}".strip()))
        return commands

    def _load(self, step: str = "load") -> StepResult:
        self._load_mark = self.vm.mark()
        for _module, command in self._load_commands():
            result = self._sh(command, timeout=self.spec.timeout)
            trouble = self._trouble(step, result, self._load_mark, command)
            if trouble:
                return trouble
            if result.exit_code != 0:
                evidence = result.stderr.strip() + "\n" + _tail(self._dmesg(self._load_mark))
                return StepResult(
                    step,
                    "fail",
                    message=f"{command}: {explain_error(result.stderr)}",
                    evidence=evidence.strip(),
                )
        entry = self._proc_module(self.spec.name)
        if entry is None:
            return StepResult(step, "fail", message=f"{self.spec.name} is not in /proc/modules after loading")
        return StepResult(step, "pass", message=entry.describe())

    def _verify(self) -> StepResult:
        expect = self.spec.expect
        problems: list[str] = []
        notes: list[str] = []
        proc_modules = self._sh("cat /proc/modules").stdout
        entry = find_module(proc_modules, self.spec.name)
        if entry is None:
            problems.append(f"{self.spec.name} vanished from /proc/modules")
        else:
            notes.append(entry.describe())
            if entry.state != "Live":
                problems.append(f"{self.spec.name} is in state {entry.state}, not Live")
        initstate = self._sh(f"cat /sys/module/{self.spec.name}/initstate").stdout.strip()
        if initstate != "live":
            problems.append(
                f"/sys/module/{self.spec.name}/initstate is {initstate or 'missing'!r}, not 'live'"
            )
        log = self._dmesg(self._load_mark)
        for pattern in expect.load_dmesg:
            if not any(re.search(pattern, line) for line in log):
                problems.append(f"no kernel log line matched {pattern!r} on load")
        for path in (*expect.devices, *expect.proc, *expect.sysfs):
            if self._sh(f"test -e {shlex.quote(path)}").exit_code != 0:
                problems.append(f"{path} does not exist while the module is loaded")
        for key, wanted in expect.params.items():
            path = f"/sys/module/{self.spec.name}/parameters/{key}"
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
        mark = self.vm.mark()
        result = self._sh(command, timeout=self.spec.timeout)
        trouble = self._trouble("exercise", result, mark, "the exercise")
        if trouble:
            return trouble
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
        if self.spec.method == "modprobe":
            return f"/sbin/modprobe -r {shlex.quote(self.spec.module.debian or self.spec.name)}"
        names = [self.spec.name] + [n for n in reversed(self.modules.order) if n != self.spec.name]
        return " && ".join(f"/sbin/rmmod {shlex.quote(n)}" for n in names)

    def _unload(self, step: str = "unload") -> StepResult:
        mark = self.vm.mark()
        command = self._unload_command()
        result = self._sh(command, timeout=self.spec.timeout)
        trouble = self._trouble(step, result, mark, command)
        if trouble:
            return trouble
        entry = self._proc_module(self.spec.name)
        if result.exit_code != 0 or entry is not None:
            self.reusable = False
            why = explain_error(result.stderr) if result.exit_code != 0 else "exit code 0"
            evidence = [result.stderr.strip()]
            if entry is not None:
                evidence.append(entry.describe())
                holders = self._sh(f"ls /sys/module/{self.spec.name}/holders").stdout.split()
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
        leftovers = self._remove_stray_dependencies() if self.spec.method == "modprobe" else []
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
                    message=f"no kernel log line matched {missing[0]!r} on unload",
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
        changes = diff(self._before, after)
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


def _net_crash(step: str, net: NetReport, found: str) -> StepResult:
    """The netlink check took the kernel down: report the crash, with what was found before it."""
    assert net.crash is not None
    status = "timeout" if net.crash.kind == "timeout" else "crash"
    what = "timed out" if status == "timeout" else "crashed the kernel"
    message = f"netlink check ({net.phase}) {what}: {net.crash.summary()}"
    if found:
        message = f"{found.splitlines()[0]}; {message}"
    oops = "\n".join(list(net.crash.lines)[:EVIDENCE_LINES])  # its head: the BUG line, RIP, trace
    evidence = "\n".join(filter(None, [found, message, oops]))
    return StepResult(step, status, message=message, evidence=evidence, crash=net.crash)


def _tail(lines: list[str] | tuple[str, ...], count: int = EVIDENCE_LINES) -> str:
    return "\n".join(list(lines)[-count:])

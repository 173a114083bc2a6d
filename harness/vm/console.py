"""Find kernel crash reports in console or dmesg text and turn them into :class:`Crash` values.

Works line by line on what the kernel prints, with or without ``[ time]`` prefixes, so the same
parser reads the serial console of a guest that panicked and the kmsg lines of one that lived.
The patterns are the report openers the kernel has printed for years (cf. syzkaller's title
table, reduced to what a module test meets); a report runs until its ``---[ end trace`` line, the
next report, or a line budget.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace

from harness.vm.crash import Crash, CrashKind

_PREFIX = re.compile(r"^\[\s*\d+\.\d+\]\s?")

#: (kind, pattern) in priority order; the first match opens a report.
_OPENERS: tuple[tuple[CrashKind, re.Pattern[str]], ...] = (
    # A debug kernel's reports (KASAN, lockdep, might_sleep) come first: they open with
    # "BUG:"/"WARNING:" lines that are not an oops nor a WARN_ON.
    ("KASAN", re.compile(r"^BUG: KASAN: ")),
    ("sleep in atomic", re.compile(r"^BUG: (sleeping function called from invalid context|"
                                   r"workqueue leaked lock or atomic)")),
    ("lockdep", re.compile(r"^WARNING: (possible circular locking dependency detected|"
                           r"possible recursive locking detected|inconsistent lock state|"
                           r"possible irq lock inversion dependency detected|"
                           r"lock held when returning to user space|"
                           r"held lock freed|suspicious RCU usage|"
                           r"bad unlock balance detected|nested lock was not taken)")),
    ("lockdep", re.compile(r"^BUG: held lock freed")),
    ("soft lockup", re.compile(r"BUG: soft lockup")),
    ("hung task", re.compile(r"INFO: task \S+ blocked for more than \d+ seconds")),
    ("BUG", re.compile(r"kernel BUG at ")),
    ("oops", re.compile(r"BUG: (kernel NULL pointer dereference|unable to handle)")),
    ("oops", re.compile(r"general protection fault")),
    ("oops", re.compile(r"^Oops: ")),
    ("BUG", re.compile(r"^BUG: ")),
    ("WARNING", re.compile(r"^WARNING: CPU: \d+ PID: \d+ at ")),
    # From 6.18 (Debian's 7.x): "WARNING: m0/x.c:19 at func+0x23/0xff0 [mod], CPU#0: insmod/90".
    ("WARNING", re.compile(r"^WARNING: \S+:\d+ at [\w.$]+\+0x")),
    ("panic", re.compile(r"^Kernel panic - not syncing")),
)

_RIP = re.compile(r"RIP: [0-9a-f]{4}:(?P<func>[\w.$]+)\+0x[0-9a-f]+/0x[0-9a-f]+(?: \[(?P<mod>[\w-]+)\])?")
_WARN_AT = re.compile(r" at \S+ (?P<func>[\w.$]+)\+0x[0-9a-f]+/0x[0-9a-f]+(?: \[(?P<mod>[\w-]+)\])?")
_TAINT = re.compile(r"Tainted: (?P<flags>[A-Z ]+?)\s+\d+\.\d+")
_FRAME = re.compile(r"^\s*(?:\? )?(?P<frame>[\w.$]+\+0x[0-9a-f]+/0x[0-9a-f]+(?: \[[\w-]+\])?)")
_END = re.compile(r"---\[ end (trace|Kernel panic)")
#: KASAN reports are framed by a line of "=" signs; lockdep and might_sleep ones end with the
#: stack dump they print last.
_KASAN_END = re.compile(r"^={20,}$")
_TASK_END = "</TASK>"
#: "in func+0x1c/0x30 [mod]" in a KASAN title; "at: func+0x.. [mod]" in a lockdep lock line;
#: "[<ffffffff...>] func+0x../0x.. [mod]" after "Preemption disabled at:".
_IN_FUNC = re.compile(r" in (?P<func>[\w.$]+)\+0x[0-9a-f]+/0x[0-9a-f]+(?: \[(?P<mod>[\w-]+)\])?")
_AT_FUNC = re.compile(r"(?:at: |\] )(?P<func>[\w.$]+)\+0x[0-9a-f]+/0x[0-9a-f]+ \[(?P<mod>[\w-]+)\]")
#: The KASAN line saying what the access was ("Read of size 8 at addr ... by task rmmod/90").
KASAN_ACCESS = re.compile(
    r"^(?P<access>(?:Read|Write) of size \d+) at addr (?P<addr>[0-9a-f]+) by task (?P<task>\S+)"
)
_FRAME_PARTS = re.compile(r"(?P<func>[\w.$]+)\+0x[0-9a-f]+/0x[0-9a-f]+(?: \[(?P<mod>[\w-]+)\])?")
_MACHINERY = re.compile(
    r"(dump_stack|show_stack|panic|vpanic|__schedule|schedule|schedule_timeout|"
    r"schedule_preempt_disabled|io_schedule)\b|__pfx_"
)
_MAX_LINES = 120


def strip_prefix(line: str) -> str:
    return _PREFIX.sub("", line.rstrip("\r\n"))


def _opener(text: str) -> CrashKind | None:
    for kind, pattern in _OPENERS:
        if pattern.search(text):
            return kind
    return None


def _build(kind: CrashKind, lines: list[str], command: str) -> Crash:
    title = lines[0]
    function = module = taint = ""
    trace: list[str] = []
    in_trace = False
    panicked = False
    if kind == "KASAN":
        match = _IN_FUNC.search(title)
        if match:
            function, module = match.group("func"), match.group("mod") or ""
        # The title says what and where; the access line says how: both belong in one line.
        access = next((m for m in map(KASAN_ACCESS.match, lines) if m), None)
        if access:
            title = f"{title}: {access.group('access')} by task {access.group('task')}"
    for line in lines:
        if not function and kind in ("lockdep", "sleep in atomic"):
            match = _AT_FUNC.search(line)
            if match:
                function, module = match.group("func"), match.group("mod")
        if not function:
            match = _RIP.search(line) or (_WARN_AT.search(line) if kind == "WARNING" else None)
            if match:
                function, module = match.group("func"), match.group("mod") or ""
        if "Not tainted" in line and not taint:
            taint = ""
        match = _TAINT.search(line)
        if match and not taint:
            # "G" only says "no proprietary module" (the slot of "P"): it is not a taint.
            taint = match.group("flags").replace(" ", "").replace("G", "")
        if line.strip() == "Call Trace:":
            in_trace = True
            continue
        if in_trace:
            if line.strip() in ("<TASK>", "<IRQ>", "</IRQ>"):
                continue
            if line.strip() == "</TASK>" or line.startswith(("RIP:", "Modules linked in", "---[")):
                in_trace = False
                continue
            frame = _FRAME.match(line)
            if frame and not line.lstrip().startswith("?"):
                trace.append(frame.group("frame"))
        if line.startswith("Kernel panic - not syncing"):
            panicked = True
    if kind == "WARNING" and not function:
        match = _WARN_AT.search(title)
        if match:
            function, module = match.group("func"), match.group("mod") or ""
    if not function and trace:
        # No RIP (hung task, direct panic): blame the first frame that isn't the reporting
        # machinery, preferring one inside a module.
        frames = [f for f in trace if not _MACHINERY.match(f)] or trace
        culprit = next((f for f in frames if f.endswith("]")), frames[0])
        match = _FRAME_PARTS.match(culprit)
        if match:
            function, module = match.group("func"), match.group("mod") or ""
    return Crash(
        kind=kind,
        title=title,
        function=function,
        module=module,
        call_trace=tuple(trace),
        taint=taint,
        command=command,
        panicked=panicked,
        lines=tuple(lines),
    )


def _ends(kind: CrashKind, line: str) -> bool:
    """Whether LINE closes a debug kernel's report of KIND (they have no ``end trace`` line)."""
    if kind == "KASAN":
        return bool(_KASAN_END.match(line))
    if kind in ("lockdep", "sleep in atomic"):
        return line.strip() == _TASK_END
    return False


def parse_crashes(text: str | Iterable[str], *, command: str = "") -> list[Crash]:
    """Every crash report in TEXT (console or dmesg output), in order of appearance.

    A ``Kernel panic`` that follows an oops belongs to that oops (``panicked=True``) rather than
    being a report of its own; a panic with no report before it (``panic()`` called directly) is
    kind ``panic``.
    """
    raw = text.splitlines() if isinstance(text, str) else list(text)
    lines = [strip_prefix(line) for line in raw]
    crashes: list[Crash] = []
    current: list[str] = []
    kind: CrashKind | None = None
    for line in lines:
        opened = _opener(line)
        if kind is not None:
            continuation = opened is None or (
                # "Oops:" after "BUG: kernel NULL pointer dereference" is the same report, and so
                # is the panic an oops leads to; a hung-task report has no end marker.
                (opened == "oops" and line.startswith("Oops: ") and kind in ("oops", "BUG"))
                or (opened == "panic" and kind != "panic")
            )
            if continuation and len(current) < _MAX_LINES:
                current.append(line)
                if _END.search(line) or _ends(kind, line):
                    crashes.append(_build(kind, current, command))
                    kind, current = None, []
                continue
            crashes.append(_build(kind, current, command))
            kind, current = None, []
        if opened is not None:
            kind, current = opened, [line]
    if kind is not None:
        crashes.append(_build(kind, current, command))
    return _merge_follow_up_panics(crashes)


_FOLLOW_UP_PANIC = re.compile(
    r"Fatal exception|softlockup|hung_task|blocked tasks|panic_on_warn|panic_on_oops"
)


def _merge_follow_up_panics(crashes: list[Crash]) -> list[Crash]:
    """Fold a panic caused by the report before it (oops=panic, softlockup_panic) into that report."""
    merged: list[Crash] = []
    for crash in crashes:
        if crash.kind == "panic" and merged and _FOLLOW_UP_PANIC.search(crash.title):
            previous = merged[-1]
            merged[-1] = replace(previous, panicked=True, lines=previous.lines + crash.lines)
            continue
        merged.append(crash)
    return merged


def primary(crashes: list[Crash]) -> Crash | None:
    """The report that matters most: the first one that poisons the kernel, else the first one."""
    for crash in crashes:
        if crash.poisons:
            return crash
    return crashes[0] if crashes else None

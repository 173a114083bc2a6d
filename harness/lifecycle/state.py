"""Kernel state snapshots taken in the guest, and their diff: did the module leave anything behind?

One shell command gathers every place a module typically registers something: character and
block majors (/proc/devices), misc minors (/proc/misc), device classes and their devices
(/sys/class), device nodes (/dev), /proc entries, module symbols in /proc/kallsyms, debugfs,
the loaded modules and the taint mask. Taken before the first load and after the unload, the
two snapshots must be equal except for taint flags that loading any out-of-tree module sets
for good (O, E, and P for a proprietary one).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.vm.probes import LISTING_END, STATE_LISTING

SECTIONS = ("devices", "misc", "class", "dev", "proc", "kallsyms", "debugfs", "modules")

#: Taint bits a successful load of an out-of-tree module sets permanently, by letter.
EXPECTED_TAINT = {"P": 1 << 0, "O": 1 << 12, "E": 1 << 13}
#: The taint bit a kernel WARNING sets.
TAINT_WARN = 1 << 9
TAINT_LETTERS = "PFSRMBUDAWCIOELKXT"

#: The listing the snapshots are made from (shared with the VM, which answers it ahead of time
#: for a restored guest: :mod:`harness.vm.probes`).
SNAPSHOT_COMMAND = STATE_LISTING
#: The files the snapshot's one ``grep`` prints, by the section their lines belong to.
FILES = {
    "/proc/devices": "devices",
    "/proc/misc": "misc",
    "/proc/modules": "modules",
    "/proc/sys/kernel/tainted": "taint",
}
DEBUGFS = "/sys/kernel/debug"
#: Printed last: a snapshot without it was cut short and must never be diffed.
END_COMMAND = LISTING_END
#: Module symbols only; appended for the snapshot after unload. Reading kallsyms costs ~0.3 s
#: under TCG, and before the first load every module symbol belongs to a module already loaded.
KALLSYMS_COMMAND = "echo @@kallsyms; grep -F ']' /proc/kallsyms"


@dataclass(frozen=True)
class Snapshot:
    """The kernel state visible from userspace at one moment."""

    sections: dict[str, frozenset[str]] = field(default_factory=dict)
    taint: int = 0
    #: True when the output ran to its end marker: only complete snapshots may be compared.
    complete: bool = True

    @classmethod
    def parse(cls, output: str) -> Snapshot:
        """Read the snapshot command's output: ``@@section`` blocks, where the ``files`` block
        holds ``path:line`` lines of the files in ``FILES`` and ``paths`` those of /dev and debugfs."""
        sections: dict[str, set[str]] = {name: set() for name in SECTIONS}
        taint = 0
        current = ""
        seen: set[str] = set()
        for line in output.splitlines():
            if line.startswith("@@"):
                current = line[2:].strip()
                seen.add(current)
                if current == "files":
                    seen.update(FILES.values())
                continue
            section = current
            if current == "files":
                path, _, line = line.partition(":")
                section = FILES.get(path, "")
            elif current == "paths":
                section = "debugfs" if line == DEBUGFS or line.startswith(DEBUGFS + "/") else "dev"
            line = line.strip()
            if not line:
                continue
            if section == "taint":
                taint = int(line) if line.isdigit() else 0
            elif section == "kallsyms":
                fields = line.split()
                if len(fields) == 4:
                    sections[section].add(f"{fields[2]} {fields[3]}")
            elif section == "modules":
                sections[section].add(line.split()[0])  # a /proc/modules line, or just the name
            elif section in sections:
                sections[section].add(line)
        complete = "end" in seen and {"taint", "modules", "devices"} <= seen
        return cls({name: frozenset(values) for name, values in sections.items()}, taint, complete)


@dataclass(frozen=True)
class StateDiff:
    """What appeared and disappeared between two snapshots (per section), and new taint."""

    added: dict[str, tuple[str, ...]]
    removed: dict[str, tuple[str, ...]]
    new_taint: str

    @property
    def clean(self) -> bool:
        return not any(self.added.values()) and not any(self.removed.values()) and not self.new_taint

    def describe(self) -> str:
        """The leftovers, one per line, the way a person would look for them."""
        lines = []
        for section, values in self.added.items():
            if section == "kallsyms":
                owners: dict[str, int] = {}
                for symbol in values:
                    owner = symbol.split()[-1]
                    owners[owner] = owners.get(owner, 0) + 1
                lines += [
                    f"left behind in /proc/kallsyms: {n} symbol(s) of {o}" for o, n in sorted(owners.items())
                ]
                continue
            lines += [f"left behind in {_where(section)}: {value}" for value in values]
        for section, values in self.removed.items():
            lines += [f"gone from {_where(section)}: {value}" for value in values]
        if self.new_taint:
            lines.append(f"kernel newly tainted: {self.new_taint}")
        return "\n".join(lines)


def _where(section: str) -> str:
    return {
        "devices": "/proc/devices",
        "misc": "/proc/misc",
        "class": "/sys/class",
        "dev": "/dev",
        "proc": "/proc",
        "kallsyms": "/proc/kallsyms",
        "debugfs": "debugfs",
        "modules": "/proc/modules",
    }.get(section, section)


def diff(
    before: Snapshot,
    after: Snapshot,
    *,
    ignore_modules: frozenset[str] = frozenset(),
    reported_taint: int = 0,
) -> StateDiff:
    """Compare two snapshots; modules in ``ignore_modules`` may legitimately stay loaded, and
    taint bits in ``reported_taint`` were already reported with their cause (a WARNING's W)."""
    added: dict[str, tuple[str, ...]] = {}
    removed: dict[str, tuple[str, ...]] = {}
    for section in SECTIONS:
        old, new = before.sections.get(section, frozenset()), after.sections.get(section, frozenset())
        if section == "modules":
            new = new - ignore_modules
            old = old - ignore_modules
        if section == "kallsyms":
            # Symbols of modules that were loaded before are not leftovers.
            loaded = before.sections.get("modules", frozenset()) | ignore_modules
            new = frozenset(symbol for symbol in new if symbol.split()[-1].strip("[]") not in loaded)
            old = frozenset()
        added[section] = tuple(sorted(new - old))
        removed[section] = tuple(sorted(old - new))
    allowed = sum(EXPECTED_TAINT.values()) | reported_taint
    appeared = (after.taint & ~before.taint) & ~allowed
    return StateDiff(added, removed, taint_letters(appeared))


def taint_letters(mask: int) -> str:
    """Taint mask → the letters the kernel prints (only the set bits)."""
    return "".join(letter for bit, letter in enumerate(TAINT_LETTERS) if mask & (1 << bit))

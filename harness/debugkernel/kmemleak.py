"""kmemleak after unload: which unreferenced objects did the module allocate?

kmemleak reports objects nothing points to any more, with the backtrace of their allocation.
Once the module is gone its own frames are raw addresses (``0xffffffffc034003c``): the kernel
has forgotten its symbols. So while the module is loaded the cycle records where each of its
sections was placed (``/sys/module/NAME/sections/*``); with the section sizes and symbols from
the .ko itself, a raw frame is mapped back to ``kmh_init+0x3c [kmh_leak]`` on the host. A leak
is the module's when a frame of its allocation backtrace falls inside the module's sections, or
(for an init that failed: its sections were never listed) when it was allocated by the loading
task under ``do_init_module`` from an address no live code owns.

kmemleak only reports objects older than 5 s (by the guest's clock) and may need two scans to
settle, so the scan command first waits, in the guest, until :data:`MIN_AGE` has passed on the
guest's own clock since the load started (the cycle's other steps usually fill it): the age is
the guest's to judge, and a TCG guest's clock need not keep pace with the host's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

KMEMLEAK = "/sys/kernel/debug/kmemleak"
#: kmemleak's MSECS_MIN_AGE (5 s) plus a margin: younger objects are never reported.
MIN_AGE = 5.5
#: ``echo clear``: forget what was reported so far (boot-time objects, a previous module's); the
#: guest's uptime follows, for :func:`scan_command`'s wait.
CLEAR_COMMAND = f"echo clear > {KMEMLEAK} && cat /proc/uptime"


def guest_uptime(clear_output: str) -> float:
    """The guest's uptime in seconds from :data:`CLEAR_COMMAND`'s output (0.0 when absent)."""
    fields = clear_output.split()
    try:
        return float(fields[0]) if fields else 0.0
    except ValueError:
        return 0.0


def scan_command(loaded_at: float) -> str:
    """Wait until the guest's uptime reaches LOADED_AT + MIN_AGE, scan twice (an object can
    survive the first through a stale pointer on a stack), then list what is unreferenced."""
    ready = loaded_at + MIN_AGE
    wait = (
        f"while awk -v t={ready:.2f} '{{exit !($1 < t)}}' /proc/uptime; do sleep 0.2; done; "
        if loaded_at
        else ""
    )
    return wait + f"echo scan > {KMEMLEAK} && echo scan > {KMEMLEAK} && cat {KMEMLEAK}"


def sections_command(module: str) -> str:
    """Print ``section address`` for every section of a loaded module."""
    return f'cd /sys/module/{module}/sections && for f in .* *; do [ -f "$f" ] && echo "$f $(cat "$f")"; done'


@dataclass(frozen=True)
class Leak:
    """One unreferenced object kmemleak reported."""

    address: str
    size: int
    comm: str
    backtrace: tuple[str, ...]
    #: The module it is attributed to ("" when none), and the frame that tied it there.
    module: str = ""
    frame: str = ""
    #: The allocating task's PID (0 when the report gave none): which of several loads it was.
    pid: int = 0

    def describe(self) -> str:
        where = f" in {self.frame}" if self.frame else ""
        return f"{self.size} bytes at {self.address} allocated by {self.comm!r}{where}"


_OBJECT = re.compile(r"^unreferenced object (?P<addr>0x[0-9a-f]+) \(size (?P<size>\d+)\):")
_COMM = re.compile(r'^\s+comm "(?P<comm>[^"]*)"(?:, pid (?P<pid>\d+))?')
#: ``  backtrace:`` (6.1) or ``  backtrace (crc 5ba08882):`` (6.7 and later) opens the frames.
_BACKTRACE = re.compile(r"^\s+backtrace(?: \(crc [0-9a-f]+\))?:$")
#: ``[<ffffffff...>] func+0x1f/0x53`` up to 6.6 (the bracketed pointer hashed or
#: ``(____ptrval____)``), plain ``func+0x1f/0x53`` from 6.7 on; ``0xffffffffa00180d6`` for code
#: that is gone.
_FRAME = re.compile(r"^\s+(?:\[<[^>]*>\] )?(?P<frame>\S+(?: \[[\w-]+\])?)$")
_RAW = re.compile(r"^0x(?P<addr>[0-9a-f]+)$")


def parse_report(text: str) -> list[Leak]:
    """The objects in ``cat /sys/kernel/debug/kmemleak`` output."""
    leaks: list[Leak] = []
    current: dict[str, object] | None = None
    frames: list[str] = []
    in_backtrace = False

    def close() -> None:
        if current is not None:
            leaks.append(
                Leak(
                    str(current["addr"]),
                    int(str(current["size"])),
                    str(current.get("comm", "")),
                    tuple(frames),
                    pid=int(str(current.get("pid", "0"))),
                )
            )

    for line in text.splitlines():
        opened = _OBJECT.match(line)
        if opened:
            close()
            current, frames = {"addr": opened.group("addr"), "size": opened.group("size")}, []
            in_backtrace = False
            continue
        if current is None:
            continue
        comm = _COMM.match(line)
        if comm:
            current["comm"] = comm.group("comm")
            current["pid"] = comm.group("pid") or "0"
            continue
        if _BACKTRACE.match(line):
            in_backtrace = True
            continue
        frame = _FRAME.match(line) if in_backtrace else None
        if frame:
            frames.append(frame.group("frame"))
    close()
    return leaks


@dataclass
class ModuleLayout:
    """Where a loaded module's sections are, and the symbols of its .ko, to name raw addresses."""

    name: str
    #: (start, end, section name)
    ranges: list[tuple[int, int, str]] = field(default_factory=list)
    #: section name -> [(offset, size, symbol)]
    symbols: dict[str, list[tuple[int, int, str]]] = field(default_factory=dict)

    @classmethod
    def from_guest(cls, name: str, listing: str, ko: Path | None) -> ModuleLayout:
        """LISTING is :func:`sections_command`'s output; KO the module file (for sizes and symbols)."""
        placed: dict[str, int] = {}
        for line in listing.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].startswith("0x"):
                placed[parts[0]] = int(parts[1], 16)
        layout = cls(name)
        sizes: dict[str, int] = {}
        if ko is not None and ko.is_file():
            with ko.open("rb") as handle:
                elf = ELFFile(handle)
                for section in elf.iter_sections():
                    sizes[section.name] = section["sh_size"]
                index_names = {i: s.name for i, s in enumerate(elf.iter_sections())}
                for section in elf.iter_sections():
                    if not isinstance(section, SymbolTableSection):
                        continue
                    for symbol in section.iter_symbols():
                        if symbol["st_info"]["type"] != "STT_FUNC" or not isinstance(symbol["st_shndx"], int):
                            continue
                        owner = index_names.get(symbol["st_shndx"], "")
                        layout.symbols.setdefault(owner, []).append(
                            (symbol["st_value"], symbol["st_size"], symbol.name)
                        )
        for placed_name, start in placed.items():
            size = sizes.get(placed_name, 0)
            if size:
                layout.ranges.append((start, start + size, placed_name))
        return layout

    def name_address(self, address: int) -> str | None:
        """``func+0x3c/0x80 [module]`` (or ``.section+0x10 [module]``) for an address inside the module."""
        for start, end, section in self.ranges:
            if start <= address < end:
                offset = address - start
                for value, size, symbol in self.symbols.get(section, []):
                    if value <= offset < value + max(size, 1):
                        return f"{symbol}+{offset - value:#x}/{size:#x} [{self.name}]"
                return f"{section}+{offset:#x} [{self.name}]"
        return None


def attribute(leaks: list[Leak], layouts: list[ModuleLayout], *, loader: str = "insmod") -> list[Leak]:
    """The leaks that belong to the modules of LAYOUTS, with their raw frames named.

    A raw frame inside a recorded section names the module. Without one (an init that failed
    before its sections could be read), a raw frame under ``do_init_module`` in an object the
    loading task allocated is the module's init, so it is attributed to the first layout's module.
    """
    found: list[Leak] = []
    for leak in leaks:
        named: list[str] = []
        owner = frame = ""
        for entry in leak.backtrace:
            raw = _RAW.match(entry)
            name = None
            if raw:
                address = int(raw.group("addr"), 16)
                for layout in layouts:
                    name = layout.name_address(address)
                    if name:
                        if not owner:
                            owner, frame = layout.name, name
                        break
            named.append(name or entry)
        if not owner and layouts and leak.comm in (loader, "kmod", "modprobe"):
            in_init = any(f.startswith(("do_init_module", "do_one_initcall")) for f in leak.backtrace)
            raw_frames = [f for f in leak.backtrace if _RAW.match(f)]
            if in_init and raw_frames:
                owner, frame = layouts[0].name, f"{raw_frames[0]} (its init, already unloaded)"
        if owner:
            found.append(Leak(leak.address, leak.size, leak.comm, tuple(named), owner, frame, leak.pid))
    return found


def describe(leaks: list[Leak]) -> str:
    """The evidence: each object with its allocation backtrace (module frames named)."""
    lines = []
    for leak in leaks:
        lines.append(f"unreferenced object {leak.address} (size {leak.size}), comm {leak.comm!r}:")
        lines += [f"    {frame}" for frame in leak.backtrace]
    return "\n".join(lines)

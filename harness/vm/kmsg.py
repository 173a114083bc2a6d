"""The guest kernel log as the agent streams it: raw /dev/kmsg records turned into dmesg lines.

Records carry a sequence number, which is what makes ``mark``/``dmesg(since=)`` exact: no
counting of lines that a wrapped ring buffer could shift.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ESCAPE = re.compile(r"\\x([0-9a-f]{2})")


@dataclass(frozen=True)
class LogRecord:
    seq: int
    level: int
    usec: int
    text: str

    def line(self) -> str:
        """The record the way ``dmesg`` prints it: ``[    1.234567] text``."""
        return f"[{self.usec // 1_000_000:5d}.{self.usec % 1_000_000:06d}] {self.text}"


def parse_record(raw: bytes) -> LogRecord | None:
    """One /dev/kmsg record (``prio,seq,usec,flags;text\\n`` plus ``KEY=value`` continuation lines)."""
    head, sep, rest = raw.decode("utf-8", "replace").partition(";")
    if not sep:
        return None
    fields = head.split(",")
    try:
        prio, seq, usec = int(fields[0]), int(fields[1]), int(fields[2])
    except (IndexError, ValueError):
        return None
    text = rest.split("\n", 1)[0]
    text = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
    return LogRecord(seq=seq, level=prio & 7, usec=usec, text=text)

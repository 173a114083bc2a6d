"""Harness probes that read several guest files in one command.

Each guest command costs a process start in the guest (5-20 ms under TCG), so the lifecycle
reads what one step needs with one ``cat`` of several files and splits the output here: the
same bytes the separate reads gave, in fewer round trips.
"""

from __future__ import annotations

import shlex


def modules_and_initstate_command(name: str) -> str:
    """/proc/modules followed by the module's initstate (cat goes on past a missing file)."""
    return f"cat /proc/modules {shlex.quote(f'/sys/module/{name}/initstate')}"


def split_modules_and_initstate(stdout: str) -> tuple[str, str]:
    """(the /proc/modules text, the initstate word or '' when the file was missing).

    A /proc/modules line has at least six fields; initstate is one word ('live', 'coming',
    'going'), printed last.
    """
    lines = stdout.splitlines()
    if lines and len(lines[-1].split()) == 1:
        return "".join(line + "\n" for line in lines[:-1]), lines[-1].strip()
    return stdout, ""

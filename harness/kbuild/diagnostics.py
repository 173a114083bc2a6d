"""Compiler and kbuild diagnostics, mapped back to the user's own files.

kbuild compiles a private copy of each module directory, so gcc names paths inside that copy;
a person wants ``their/dir/file.c:12:5: error: ...``. :func:`parse_diagnostics` finds gcc's
``file:line:col: severity: message`` lines (with the source excerpt lines that follow them) and
rewrites the copy's prefix to the source directory.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

DIAGNOSTIC = re.compile(
    r"^(?P<file>[^\s:][^:]*):(?P<line>\d+):(?:(?P<column>\d+):)?\s*"
    r"(?P<severity>fatal error|error|warning|note):\s*(?P<message>.*)$"
)
#: modpost's own complaints (undefined or GPL-only symbols), which name the module, not a file.
#: Before 5.13 a GPL-only symbol in a non-GPL module is ``FATAL: modpost: GPL-incompatible ...``.
MODPOST = re.compile(
    r"^(?P<severity>ERROR|FATAL|WARNING): modpost: (?P<message>.*?(?P<module>[\w-]+)\.ko.*)$", re.M
)
#: modpost's complaints that start with the path of an object or module (``x.o`` on 6.1, ``x``
#: on 6.12, ``x.ko`` on 7.x), e.g. ``WARNING: modpost: /b/m/x.o: section mismatch in reference``.
MODPOST_OBJECT = re.compile(
    r"^(?P<severity>ERROR|WARNING): modpost: (?P<file>\S*/\S+?): (?P<message>.*)$", re.M
)
#: objtool's checks of each object (``x.o: warning: objtool: init_module(): not an indirect
#: call target``): no line number, and no compiler flag makes them errors, so --werror counts them.
OBJTOOL = re.compile(r"^(?P<file>\S+?\.o): (?P<severity>warning|error): objtool: (?P<message>.*)$", re.M)
#: Lines gcc prints under a diagnostic: the source line and the caret line.
EXCERPT = re.compile(r"^\s*(\d+\s*)?\|")


@dataclass(frozen=True)
class Diagnostic:
    """One compiler message about one place in a source file."""

    file: Path
    line: int
    column: int | None
    severity: str
    message: str
    excerpt: str = ""

    def __str__(self) -> str:
        column = f"{self.column}:" if self.column is not None else ""
        line = f"{self.line}:" if self.line else ""
        text = f"{self.file}:{line}{column} {self.severity}: {self.message}"
        return f"{text}\n{self.excerpt}" if self.excerpt else text


def parse_diagnostics(log: str, mapping: dict[Path, Path]) -> dict[Path, list[Diagnostic]]:
    """Diagnostics of a kbuild log, grouped by source directory.

    ``mapping`` maps each build copy's directory to the user's source directory; messages about
    files outside every copy (kernel headers included from a module) are attributed to the
    module whose compile produced them, found from the ``In file included from`` chain or, failing
    that, left out.
    """
    grouped: dict[Path, list[Diagnostic]] = {source: [] for source in mapping.values()}
    lines = log.splitlines()
    current_source: Path | None = None
    for index, line in enumerate(lines):
        owner = _owner(line, mapping)
        if owner is not None:
            current_source = owner
        match = DIAGNOSTIC.match(line)
        if not match:
            continue
        file = Path(match.group("file"))
        source = _owner(str(file), mapping) or current_source
        if source is None:
            continue
        excerpt = []
        for following in lines[index + 1 : index + 4]:
            if not EXCERPT.match(following):
                break
            excerpt.append(following)
        grouped[source].append(
            Diagnostic(
                file=_map_path(file, mapping),
                line=int(match.group("line")),
                column=int(match.group("column")) if match.group("column") else None,
                severity=match.group("severity"),
                message=match.group("message"),
                excerpt="\n".join(excerpt),
            )
        )
    return grouped


def _owner(text: str, mapping: dict[Path, Path]) -> Path | None:
    for copy, source in mapping.items():
        if f"{copy}/" in text:
            return source
    return None


def _map_path(file: Path, mapping: dict[Path, Path]) -> Path:
    for copy, source in mapping.items():
        if file.is_relative_to(copy):
            return source / file.relative_to(copy)
    return file


def modpost_diagnostics(
    log: str, owner_of: Callable[[str], Path | None], mapping: dict[Path, Path] | None = None
) -> dict[Path, list[Diagnostic]]:
    """modpost's and objtool's errors and warnings. Those naming a module are attributed through
    ``owner_of`` (name → source directory) and point at the directory's Kbuild: modpost works on
    the linked module, so there is no source line to name. Those naming an object file are
    attributed through ``mapping`` (build copy → source directory) and name that object."""
    grouped: dict[Path, list[Diagnostic]] = {}
    for match in MODPOST.finditer(log):
        if MODPOST_OBJECT.match(match.group(0)):
            continue
        source = owner_of(match.group("module"))
        if source is None:
            continue
        severity = "warning" if match.group("severity") == "WARNING" else "error"
        grouped.setdefault(source, []).append(
            Diagnostic(source / "Kbuild", 0, None, severity, match.group("message"))
        )
    for pattern, tool in ((MODPOST_OBJECT, "modpost"), (OBJTOOL, "objtool")):
        for match in pattern.finditer(log):
            file = Path(match.group("file"))
            source = _owner(str(file), mapping or {})
            if source is None:
                continue
            severity = "warning" if match.group("severity").lower() == "warning" else "error"
            grouped.setdefault(source, []).append(
                Diagnostic(
                    _map_path(file, mapping or {}), 0, None, severity, f"{tool}: {match.group('message')}"
                )
            )
    return grouped


#: Lines of a kbuild log that say nothing about why it failed: make changing directory, and
#: kbuild's progress lines (``  CC [M]  x.o``, ``  LD [M]``, ``  MODPOST``...).
NOISE = re.compile(
    r"^(make(\[\d+\])?: (Entering|Leaving|Nothing to be done)|\s+[A-Z][A-Z0-9_]*( \[M\])?\s+\S)"
)


def failure_excerpt(log: str, lines: int = 30) -> str:
    """The end of a failed kbuild's log without its noise: what a compiler, linker, shell or
    make itself said (``No rule to make target``, ``No such file or directory``), so a failure
    with no gcc diagnostic still shows its cause rather than make's Entering/Leaving lines."""
    meaningful = [line for line in log.rstrip().splitlines() if line.strip() and not NOISE.match(line)]
    if not meaningful:
        return (
            "make finished without an error but built no .ko: no obj-m reached "
            "(check obj-m and obj-y += sub/ in the Kbuild or Makefile)"
        )
    return "\n".join(meaningful[-lines:])

"""Report files are checked before a run starts, not discovered unwritable after it ends.

A run can take many minutes; a ``--junit`` path under a regular file used to end it with a
traceback after every module had run, and the other reports were never written. So ``kmh run``
asks here first, and every answer is a one-line error naming the option and the path.

The rule for a missing directory: the report's own directory may be missing and is then created,
but only if *its* parent exists and is not the root directory. One level is a convenience
(``--junit out/report.xml`` in a fresh checkout); anything deeper, or a new directory directly
under ``/``, is more likely a typo than a wish, and is refused rather than created.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path

from harness.errors import HarnessError


def check_report_paths(reports: Mapping[str, str | None]) -> dict[str, Path]:
    """Check every named report path (option → path or None); return the absolute paths to write.

    Creates a missing last directory level (see the module docstring) and proves each directory
    writable by creating and removing a probe file there: permission bits say nothing to root,
    and a read-only or full file system is only found by trying.
    """
    chosen: dict[str, Path] = {}
    for option, value in reports.items():
        if not value:
            continue
        path = Path(value).expanduser().absolute()
        for other, seen in chosen.items():
            if seen == path:
                raise HarnessError(
                    f"{option} {value}: the same file as {other}; give each report its own file"
                )
        _check_one(option, path)
        chosen[option] = path
    return chosen


def _check_one(option: str, path: Path) -> None:
    where = f"{option} {path}"
    if path.is_dir():
        raise HarnessError(f"{where}: is a directory; give a file name")
    if path.is_char_device():
        return  # /dev/null, a terminal: written like a file, nothing to create or probe
    if path.exists() and not path.is_file():
        raise HarnessError(f"{where}: exists and is not a regular file (a FIFO would block the report)")
    parent = path.parent
    blocker = _first_non_directory(parent)
    if blocker is not None:
        raise HarnessError(f"{where}: {blocker} is not a directory")
    if not parent.exists():
        grandparent = parent.parent
        if grandparent == Path(grandparent.anchor) or not grandparent.is_dir():
            raise HarnessError(f"{where}: directory {parent} does not exist (create it first)")
        try:
            parent.mkdir()
        except OSError as error:
            raise HarnessError(f"{where}: cannot create directory {parent}: {error.strerror}") from None
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".kmh-probe-"):
            pass
        if path.exists():
            with path.open("ab"):
                pass
    except OSError as error:
        raise HarnessError(f"{where}: cannot write there: {error.strerror}") from None


def _first_non_directory(path: Path) -> Path | None:
    """The first component of PATH that exists but is not a directory (a file where one is needed)."""
    for candidate in reversed([path, *path.parents]):
        if candidate.exists() and not candidate.is_dir():
            return candidate
    return None

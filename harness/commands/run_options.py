"""``kmh run``'s options checked before anything is built or booted.

Mistakes that used to surface only after a long run (a report path that cannot be written) or
never (``-p`` without ``--template``, silently ignored) end the command at once with one line.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.errors import HarnessError
from harness.report.destinations import check_report_paths


def check_run_options(
    params: Sequence[str],
    templates: Sequence[str],
    *,
    junit: str | None,
    ktap: str | None,
    json: str | None,
    html: str | None = None,
) -> None:
    """Raise HarnessError for option combinations and report paths that cannot work."""
    if params and not templates:
        raise HarnessError(
            "-p/--param sets parameters of a --template NAME run and there is none; "
            "a spec's parameters go in its [module] params table"
        )
    check_report_paths({"--junit": junit, "--ktap": ktap, "--json": json, "--html": html})

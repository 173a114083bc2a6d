"""Rendering: check a module name and parameters against a template, then produce its files.

All checking happens before Jinja runs, and Jinja itself is set up so that a template can only
print checked values (see :mod:`harness.templates.cvalues`). Undefined variables are errors
(StrictUndefined) so a misspelt name in a template fails its first render instead of vanishing.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path

import jinja2

from harness.errors import HarnessError
from harness.kbuild.prune import due
from harness.resources import template_dir
from harness.templates.catalogue import Template, get_template
from harness.templates.cvalues import FILTERS, MODULE_NAME_MAX, Ident, emit, ident_problem
from harness.templates.params import MODULE_NAME, IdentParam
from harness.templates.source import ModuleSource

TEMPLATE_DIR = template_dir()


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=emit,
    )
    env.filters.update(FILTERS)
    return env


def check_module_name(name: str) -> Ident:
    """The module name as an Ident, or a HarnessError saying why the kernel/kbuild would not take it."""
    problem = ident_problem(name, MODULE_NAME_MAX)
    if problem:
        raise HarnessError(
            f"module name {name!r} is not usable: {problem} "
            f"(module names must be C identifiers of at most {MODULE_NAME_MAX} characters)"
        )
    return Ident(name)


def resolve_params(
    template: Template, module_name: str, given: Mapping[str, object] | None
) -> dict[str, object]:
    """Every parameter of ``template`` with its checked value: the given ones, defaults for the rest."""
    given = dict(given or {})
    names = template.param_names
    unknown = [key for key in given if key not in names]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise HarnessError(
            f"template {template.name!r} has no parameter {key!r}{hint}; "
            f"its parameters are: {', '.join(names)}"
        )
    values: dict[str, object] = {}
    for param in template.params:
        if param.name in given:
            raw = given[param.name]
        elif param.default == MODULE_NAME and isinstance(param, IdentParam):
            raw = module_name
        else:
            raw = param.default
        values[param.name] = param.parse(raw, template.name)
    for check in template.checks:
        problem = check(values)
        if problem:
            raise HarnessError(f"template {template.name!r}: {problem}")
    return values


def render(template_name: str, module_name: str, params: Mapping[str, object] | None = None) -> ModuleSource:
    """Render ``template_name`` as module ``module_name``: ``NAME.c``, ``Kbuild`` and ``Makefile``.

    ``params`` values may be text (as typed on a command line) or native Python values (int, bool,
    list); both are checked the same way. Nothing is written; see :meth:`ModuleSource.write`.
    """
    template = get_template(template_name)
    module = check_module_name(module_name)
    values = resolve_params(template, module, params)
    context = {**values, "module": module, "template_name": Ident(template.name)}
    env = _environment()
    files = {
        f"{module}.c": env.get_template(template.source).render(context),
        "Kbuild": env.get_template("Kbuild.j2").render(context),
        "Makefile": env.get_template("Makefile.j2").render(context),
    }
    return ModuleSource(name=str(module), files=files, template=template.name, params=values)


def write_module(
    template_name: str,
    module_name: str,
    out_dir: Path,
    params: Mapping[str, object] | None = None,
    *,
    force: bool = False,
) -> ModuleSource:
    """Render and write into ``out_dir``; the returned source's ``directory`` is the absolute path."""
    return render(template_name, module_name, params).write(out_dir, force=force)


def parse_assignments(assignments: Iterable[str]) -> dict[str, str]:
    """``["key=value", ...]`` from the command line into a dict; the value may contain '='."""
    result: dict[str, str] = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise HarnessError(f"parameter {item!r} is not of the form key=value")
        if key in result:
            raise HarnessError(f"parameter {key!r} is given twice")
        result[key] = value
    return result


#: A rendered directory nobody used for this long is removed (like the build copies).
UNUSED_RENDER_SECONDS = 7 * 24 * 3600


def write_stable(
    template_name: str, module_name: str, root: Path, params: Mapping[str, object] | None = None
) -> ModuleSource:
    """Render into a directory under ROOT named after the rendered files' content, reused as is.

    A new directory per run would give kbuild's stable build copies (keyed by source directory)
    and the build cache (keyed by the copy's path, which debug info records) a new path each
    time, so a re-run of the same spec would always recompile. A directory named by its content
    is never rewritten (its files keep their mtimes) and two processes rendering the same module
    agree on it; it is written into a temporary directory and renamed into place."""
    source = render(template_name, module_name, params)
    digest = hashlib.sha256()
    for file_name in sorted(source.files):
        digest.update(f"{file_name}\0{source.files[file_name]}\0".encode())
    directory = root / f"{module_name}-{digest.hexdigest()[:16]}"
    if directory.is_dir() and not _holds(directory, source):
        shutil.rmtree(directory, ignore_errors=True)  # edited by hand: render it again
    if not directory.is_dir():
        try:
            root.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".new-", dir=root))
            source.write(staging, force=True)
            try:
                os.rename(staging, directory)
            except OSError:  # another process renamed the same content into place first
                shutil.rmtree(staging, ignore_errors=True)
        except OSError as error:
            raise HarnessError(f"cannot write the module into {root}: {error.strerror}") from None
    now = time.time()
    with contextlib.suppress(OSError):
        os.utime(directory, (now, now))
    return replace(source, directory=directory.resolve())


def _holds(directory: Path, source: ModuleSource) -> bool:
    """True when DIRECTORY holds exactly SOURCE's files with their rendered text."""
    try:
        names = {entry.name for entry in directory.iterdir()}
        return names == set(source.files) and all(
            (directory / name).read_text() == text for name, text in source.files.items()
        )
    except (OSError, UnicodeDecodeError):
        return False


def prune_rendered(root: Path, *, keep: Iterable[Path] = ()) -> None:
    """Remove rendered directories unused for a week (never one in KEEP)."""
    kept = set(keep)
    now = time.time()
    if not due(root / ".pruned", now):
        return
    with contextlib.suppress(OSError):
        for entry in root.iterdir():
            with contextlib.suppress(OSError):
                if entry not in kept and now - entry.stat().st_mtime > UNUSED_RENDER_SECONDS:
                    shutil.rmtree(entry, ignore_errors=True)

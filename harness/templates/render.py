"""Rendering: check a module name and parameters against a template, then produce its files.

All checking happens before Jinja runs, and Jinja itself is set up so that a template can only
print checked values (see :mod:`harness.templates.cvalues`). Undefined variables are errors
(StrictUndefined) so a misspelt name in a template fails its first render instead of vanishing.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Iterable, Mapping
from pathlib import Path

import jinja2

from harness.errors import HarnessError
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

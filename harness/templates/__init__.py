"""The template catalogue: parameter declarations, validation and rendering of module sources.

The C sources live in the repository's ``c_templates/`` (inside a wheel: ``harness/_data``; see
:mod:`harness.resources`). Use::

    from harness.templates import render, write_module
    source = write_module("chardev", "mydev", Path("out/mydev"), {"buffer_size": 128})
    source.directory  # -> the build stage
"""

from harness.templates.catalogue import Template, catalogue, get_template
from harness.templates.render import check_module_name, parse_assignments, render, write_module
from harness.templates.source import ModuleSource

__all__ = [
    "ModuleSource",
    "Template",
    "catalogue",
    "check_module_name",
    "get_template",
    "parse_assignments",
    "render",
    "write_module",
]

"""Where kmh's run-time data lives: the C templates, the guest's init and agent, the box recipe.

The repository keeps that data at its top level (``c_templates/``, ``vm/``, ``Vagrantfile``),
where people read and edit it. A built wheel carries the same files inside the package, under
``harness/_data/`` (pyproject.toml maps them there with ``package-dir``), because an installed
package cannot see a repository. So there are exactly two places to look, tried in this order:

1. ``<package>/_data/<name>``: a wheel, ``pipx install``, ``pip install git+...``;
2. ``<package>/../<name>``: a clone used in place (editable install, or ``PYTHONPATH``).

The package must be installed unpacked on a file system (every pip install is): QEMU, gcc and
Vagrant need real paths, not file objects.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

#: Name under ``_data/`` -> path in the repository, the same mapping as pyproject.toml's.
DATA = {
    "c_templates": "c_templates",
    "vm": "vm",
    "project/Vagrantfile": "Vagrantfile",
}


def _package_dir() -> Path:
    return Path(str(files("harness")))


def data_path(name: str) -> Path:
    """The installed path of NAME (a key of :data:`DATA`), from a wheel or from a clone.

    Never raises, so modules can keep their paths as constants: when neither place has it the
    wheel's path is returned and the first use names the missing file.
    """
    packaged = _package_dir() / "_data" / name
    if packaged.exists():
        return packaged
    checkout = _package_dir().parent / DATA[name]
    return checkout if checkout.exists() else packaged


def template_dir() -> Path:
    """``c_templates/``: the Jinja sources of every module template."""
    return data_path("c_templates")


def guest_dir() -> Path:
    """``vm/``: the guest's ``init``, the agent's C source and the Vagrant box recipe."""
    return data_path("vm")


def project_vagrantfile() -> Path:
    """The Vagrantfile copied into every disposable Vagrant project."""
    return data_path("project/Vagrantfile")

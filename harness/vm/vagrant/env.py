"""Where Vagrant keeps its state for kmh, and how every ``vagrant`` command is run.

Vagrant's own home (boxes, plugins' data) lives under the kmh cache instead of ``~/.vagrant.d``
so ``kmh box build`` never touches a user's own boxes, and so it can be deleted with the rest of
the cache. Every call goes through :func:`vagrant` so that the environment (no update checks, the
libvirt provider, our home) is the same for the box builder, the backend and the tests.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from plumbum import ProcessTimedOut, local

from harness.errors import HarnessError, ToolMissing
from harness.paths import cache_root
from harness.resources import guest_dir, project_vagrantfile

#: The shipped project Vagrantfile: used as is for every disposable VM, so it is what the tests test.
PROJECT_VAGRANTFILE = project_vagrantfile()
#: The box recipe: mmdebstrap hook and the Vagrantfile that goes inside the box.
BOX_RECIPE_DIR = guest_dir() / "box"
LIBVIRT_URI = "qemu:///system"


def vagrant_home() -> Path:
    """``$KMH_VAGRANT_HOME`` or ``<cache>/vagrant/home``: Vagrant's state for kmh's boxes."""
    explicit = os.environ.get("KMH_VAGRANT_HOME")
    home = Path(explicit) if explicit else cache_root() / "vagrant" / "home"
    home.mkdir(parents=True, exist_ok=True)
    return home


def vagrant_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables every ``vagrant`` call gets."""
    env = {
        "VAGRANT_HOME": str(vagrant_home()),
        "VAGRANT_CHECKPOINT_DISABLE": "1",
        "VAGRANT_DEFAULT_PROVIDER": "libvirt",
        "VAGRANT_NO_COLOR": "1",
        "LIBVIRT_DEFAULT_URI": LIBVIRT_URI,
    }
    env.update(extra or {})
    return env


def require_tool(name: str, package: str) -> str:
    """The path of NAME, or a HarnessError saying which Debian package provides it."""
    path = shutil.which(name)
    if not path:
        raise ToolMissing(name, package, "the Vagrant backend needs it")
    return path


def vagrant(
    args: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 600.0,
    what: str = "",
) -> str:
    """Run ``vagrant ARGS`` and return its stdout; a failure or timeout is a HarnessError."""
    command = local[require_tool("vagrant", "vagrant (with vagrant-libvirt)")][list(args)]
    label = what or f"vagrant {' '.join(args)}"
    try:
        with local.env(**vagrant_environment(env)):
            code, out, err = command.run(cwd=str(cwd) if cwd else None, retcode=None, timeout=timeout)
    except ProcessTimedOut as error:
        raise HarnessError(f"{label} did not finish within {timeout:.0f} s") from error
    if code != 0:
        raise HarnessError(f"{label} failed (exit {code})", details=_tail(err or out))
    return out


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])

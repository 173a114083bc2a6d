"""Per-suite build environments: each kernel is built with its own suite's compiler and libraries.

:mod:`recipe` says which environment a kernel needs, :mod:`store` creates and keeps them,
:mod:`sandbox` enters one. :func:`command_for` is the one entry point kbuild uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from harness.buildenv.recipe import HOST, Recipe, recipe_for
from harness.buildenv.sandbox import wrap
from harness.buildenv.store import Environment, EnvironmentStore
from harness.kernels.target import KernelTarget

__all__ = ["HOST", "Environment", "EnvironmentStore", "Recipe", "command_for", "recipe_for"]


def command_for(
    kernel: KernelTarget, argv: Sequence[str], *, writable: Sequence[Path]
) -> tuple[list[str], str]:
    """ARGV as it must run to build for KERNEL, and the name of the environment it runs in.

    The kernel's tree is visible read-only and WRITABLE read-write, both at their host paths.
    Raises HarnessError when the environment cannot be created.
    """
    env = EnvironmentStore().for_kernel(kernel, progress=_say)
    if env is None:
        return list(argv), HOST
    return wrap(env.root, argv, readonly=[kernel.root], writable=writable), env.name


def _say(message: str) -> None:
    from harness.kernels.unpack import say

    say(message)

"""Build environments in the store: created once per recipe with mmdebstrap, atomically.

An environment is made in ``<cache>/buildenv/.<name>.partial-<pid>`` and renamed to
``<cache>/buildenv/<name>`` only when mmdebstrap has finished and its metadata is written, so a
directory under its final name is always whole; a creation that was killed leaves only a
``.partial`` directory, which the next creation removes. A lock file serialises creators
(parallel test sessions), and the second one finds the first one's result.
"""

from __future__ import annotations

import builtins
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from harness.buildenv.recipe import Recipe, recipe_for
from harness.errors import HarnessError
from harness.kernels.apt import ARCHITECTURE, sources_lines
from harness.kernels.target import KernelTarget
from harness.locking import exclusive
from harness.paths import cache_root

Progress = Callable[[str], None]
METADATA = "kmh-environment.json"
#: Documentation and translations are not needed to compile and cost ~30% of the size.
DPKG_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*")


@dataclass(frozen=True)
class Environment:
    """A complete build environment on disk."""

    name: str
    root: Path
    release: str
    suites: tuple[str, ...]
    packages: tuple[str, ...]
    seconds: float  # how long its creation took

    def size(self) -> int:
        """Bytes on disk (``du``; the tree has tens of thousands of files)."""
        output = subprocess.run(["du", "-sb", str(self.root)], capture_output=True, text=True).stdout
        return int(output.split()[0]) if output else 0


class EnvironmentStore:
    """Environments under ``<cache>/buildenv/<name>``."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or cache_root() / "buildenv"

    def get(self, recipe: Recipe) -> Environment | None:
        """The complete environment for RECIPE, if it exists."""
        return self._load(self.root / recipe.name)

    def list(self) -> list[Environment]:
        if not self.root.is_dir():
            return []
        found = [self._load(path) for path in sorted(self.root.iterdir()) if not path.name.startswith(".")]
        return [env for env in found if env is not None]

    def for_kernel(self, kernel: KernelTarget, *, progress: Progress | None = None) -> Environment | None:
        """KERNEL's environment, created first if missing; None when it builds with the host's toolchain."""
        recipe = recipe_for(kernel)
        if recipe.is_host:
            return None
        return self.ensure(recipe, progress=progress, purpose=kernel.release)

    def ensure(self, recipe: Recipe, *, progress: Progress | None = None, purpose: str = "") -> Environment:
        found = self.get(recipe)
        if found:
            return found
        with self._locked():
            found = self.get(recipe)
            if found:
                return found
            return self._create(recipe, progress=progress, purpose=purpose)

    def remove_unused(self, kernels: Iterable[KernelTarget]) -> builtins.list[Environment]:
        """Delete the environments no kernel in KERNELS needs (and leftovers of killed creations)."""
        used = set()
        for kernel in kernels:
            try:
                used.add(recipe_for(kernel).name)
            except HarnessError:
                continue
        removed = []
        with self._locked():
            for env in self.list():
                if env.name not in used:
                    shutil.rmtree(env.root)
                    removed.append(env)
            for leftover in self.root.glob(".*.partial-*"):
                shutil.rmtree(leftover, ignore_errors=True)
        return removed

    # -- creation ------------------------------------------------------------------------------

    def _create(self, recipe: Recipe, *, progress: Progress | None, purpose: str) -> Environment:
        for leftover in self.root.glob(f".{recipe.name}.partial-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        partial = self.root / f".{recipe.name}.partial-{os.getpid()}"
        mmdebstrap = shutil.which("mmdebstrap")
        if not mmdebstrap:
            raise HarnessError(
                f"cannot create the {recipe.release} build environment: mmdebstrap is not installed",
                details="On Debian: apt-get install mmdebstrap",
            )
        argv = [
            mmdebstrap,
            "--variant=apt",
            f"--architectures={ARCHITECTURE}",
            f"--include={','.join(recipe.packages)}",
            '--aptopt=Acquire::Check-Valid-Until "false"',
            *(f"--dpkgopt=path-exclude={pattern}" for pattern in DPKG_EXCLUDES),
            recipe.suites[0],
            str(partial),
            *sources_lines(recipe.suites).splitlines(),
        ]
        if progress:
            why = f" for {purpose}" if purpose else ""
            progress(
                f"creating the {recipe.release} build environment {recipe.name}{why} "
                f"({', '.join(recipe.packages)}); once, about a minute"
            )
        started = time.monotonic()
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            errors = [line for line in lines if line.startswith(("E:", "W: Failed"))]
            reason = (errors or lines or [f"exit code {result.returncode}"])[0]
            raise HarnessError(
                f"cannot create the {recipe.release} build environment "
                f"({', '.join(recipe.suites)}): {reason}",
                details=result.stderr[-4000:],
            )
        seconds = time.monotonic() - started
        metadata = {
            "name": recipe.name,
            "release": recipe.release,
            "suites": list(recipe.suites),
            "packages": list(recipe.packages),
            "seconds": round(seconds, 1),
        }
        (partial / METADATA).write_text(json.dumps(metadata, indent=2) + "\n")
        partial.rename(self.root / recipe.name)
        env = self._load(self.root / recipe.name)
        assert env is not None
        if progress:
            progress(f"build environment {recipe.name} ready in {seconds:.0f} s")
        return env

    @staticmethod
    def _load(path: Path) -> Environment | None:
        try:
            data = json.loads((path / METADATA).read_text())
        except (OSError, ValueError):
            return None
        return Environment(
            name=data["name"],
            root=path,
            release=data["release"],
            suites=tuple(data["suites"]),
            packages=tuple(data["packages"]),
            seconds=float(data.get("seconds", 0)),
        )

    def _locked(self) -> AbstractContextManager[None]:
        return exclusive(self.root)

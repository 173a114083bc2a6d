"""The kernel store: Debian kernel targets unpacked side by side in the user's cache.

``add`` resolves a SPEC, downloads the packages, unpacks them into a staging directory, fixes
paths, extracts vmlinux and only then renames the tree into place, so a target either exists
whole or not at all. A lock file serialises concurrent adds (parallel test sessions).
"""

from __future__ import annotations

import fcntl
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.errors import HarnessError
from harness.kernels.apt import SUITE_GROUPS, AptArchive
from harness.kernels.debian import parse_spec, resolve
from harness.kernels.target import KernelTarget
from harness.kernels.unpack import extract_vmlinux, fix_header_paths, say, unpack_debs
from harness.paths import cache_root

Progress = Callable[[str], None]


class KernelStore:
    """Kernel targets under ``<cache>/kernels/<release>``."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or cache_root() / "kernels"
        self.archive = AptArchive(self.root.parent / "apt")

    def list(self) -> list[KernelTarget]:
        """Installed targets, oldest kernel first."""
        if not self.root.is_dir():
            return []
        targets = [
            KernelTarget.load(path)
            for path in self.root.iterdir()
            if (path / KernelTarget.METADATA).is_file()
        ]
        return sorted(targets, key=lambda target: (target.major_minor, target.release))

    def get(self, name: str) -> KernelTarget:
        """The installed target NAME: an exact release or a suite shorthand (newest of that suite)."""
        targets = self.list()
        for target in targets:
            if target.release == name:
                return target
        suite, flavour = name.partition(":")[0], name.partition(":")[2] or "amd64"
        if suite in SUITE_GROUPS:
            matching = [t for t in targets if t.suite == suite and t.flavour == flavour]
            if matching:
                return matching[-1]
        installed = ", ".join(t.release for t in targets) or "none (add one with 'kmh kernel add bookworm')"
        raise HarnessError(f"no kernel target {name!r}; installed: {installed}")

    def ensure(self, spec: str, *, progress: Progress | None = say) -> KernelTarget:
        """The target for SPEC, added first if it is not installed yet."""
        try:
            return self.get(spec)
        except HarnessError:
            return self.add(spec, progress=progress)

    def add(self, spec: str, *, refresh: bool = False, progress: Progress | None = say) -> KernelTarget:
        """Download and unpack the kernel SPEC names; returns the existing target if already there."""
        suite, flavour = parse_spec(spec)  # reject nonsense before touching the network
        self.root.mkdir(parents=True, exist_ok=True)
        if suite and flavour == "debug":  # SUITE:debug is built from the suite's source
            from harness.debugkernel.build import build_debug_target

            with self._locked():
                self.archive.update(force=refresh)
            return build_debug_target(self.root, self.archive, suite, progress=progress)
        with self._locked():
            if progress:
                progress("reading the Debian archive's package lists")
            self.archive.update(force=refresh)
            packages = resolve(self.archive, spec)
            destination = self.root / packages.release
            if (destination / KernelTarget.METADATA).is_file():
                return KernelTarget.load(destination)
            if progress:
                names = ", ".join(f"{name} {version}" for name, version in packages.packages)
                progress(f"downloading {names}")
            debs = self.archive.download(list(packages.packages))
            staging = self.root / f".{packages.release}.partial"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
            try:
                unpack_debs(debs, staging, progress=progress)
                fix_header_paths(staging, packages.release)
                target = KernelTarget(
                    release=packages.release,
                    root=staging,
                    version=packages.version,
                    suite=packages.suite,
                    flavour=packages.flavour,
                    packages=tuple(name for name, _ in packages.packages),
                )
                if progress:
                    progress(f"extracting the uncompressed kernel from {target.vmlinuz.name}")
                extract_vmlinux(target.vmlinuz, target.vmlinux)
                target.save()
                staging.rename(destination)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            if progress:
                progress(f"kernel {packages.release} ({packages.version}, {packages.suite}) ready")
            return KernelTarget.load(destination)

    def add_tree(self, tree: Path, *, progress: Progress | None = say) -> KernelTarget:
        """A kernel tree the user built, as a target (see :mod:`harness.debugkernel.tree`)."""
        from harness.debugkernel.tree import add_tree

        with self._locked():
            return add_tree(self.root, tree, progress=progress)

    def remove(self, name: str) -> KernelTarget:
        """Delete one target's tree (its downloaded .debs stay cached)."""
        target = self.get(name)
        with self._locked():
            shutil.rmtree(target.root)
        return target

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

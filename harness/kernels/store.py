"""The kernel store: Debian kernel targets unpacked side by side in the user's cache.

``add`` resolves a SPEC, downloads the packages, unpacks them into a staging directory, fixes
paths, extracts vmlinux and only then renames the tree into place, so a target either exists
whole or not at all. A lock file serialises concurrent adds (parallel test sessions).

Before downloading, the archive's own sizes (download and installed size of each package, plus
room for the extracted vmlinux) are compared with the free space, so a disk that cannot hold
the target is one line before apt starts, not a full disk and a screen of errors after.

A target in use cannot be removed under its user's feet: every process that looks a target up
(``get``/``ensure``: runs, builds, checks, VMs) holds a shared ``flock`` on
``kernels/.locks/<release>.lock`` until it exits, and ``remove`` needs it exclusively, so it
refuses while any user lives. The lock files sit beside the targets, not inside them, so they
outlive a removal. Removing a target also removes what the cache derived from it (guest image
layers and snapshots, build copies).
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO

from harness.errors import HarnessError
from harness.kernels.apt import SUITE_GROUPS, AptArchive, DebianArchive
from harness.kernels.debian import KernelPackages, parse_spec, resolve, suites_for_release
from harness.kernels.target import KernelTarget
from harness.kernels.unpack import extract_vmlinux, fix_header_paths, normalize_layout, say, unpack_debs
from harness.locking import exclusive
from harness.paths import cache_root

Progress = Callable[[str], None]
MIB = 1024 * 1024
#: Room for the uncompressed vmlinux extracted after unpacking (66 MB for 6.1) and slack.
EXTRA_SPACE = 128 * MIB
#: Cache folders holding things made for one kernel release, as ``<cache>/<folder>/<release>``.
DERIVED = ("images", "build", "guest-build")

#: Lock files this process holds shared, one per target it has used (released at exit).
_IN_USE: dict[Path, IO[str]] = {}


class KernelStore:
    """Kernel targets under ``<cache>/kernels/<release>``."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or cache_root() / "kernels"
        self.archive = DebianArchive(self.root.parent / "apt")

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
        """The installed target NAME (an exact release or a suite shorthand, newest of that
        suite), marked in use by this process so that it cannot be removed while it lives."""
        target = self._find(name)
        self._hold(target)
        return target

    def _find(self, name: str) -> KernelTarget:
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
            target = self.add(spec, progress=progress)
        self._hold(target)
        return target

    def add(self, spec: str, *, refresh: bool = False, progress: Progress | None = say) -> KernelTarget:
        """Download and unpack the kernel SPEC names; returns the existing target if already there."""
        self.root.mkdir(parents=True, exist_ok=True)
        if spec.endswith(":debug"):  # SUITE:debug is built from the suite's own kernel source
            from harness.debugkernel.build import build_debug_target

            suite, _ = parse_spec(spec.removesuffix(":debug"))
            if not suite:
                raise HarnessError(f"{spec!r}: a debug target is named SUITE:debug (bookworm:debug)")
            if refresh:
                self.archive.update((suite,), force=True)
            return build_debug_target(self.root, self.archive, suite, progress=progress)
        suite, _ = parse_spec(spec)  # reject nonsense before touching the network
        with self._locked():
            if progress:
                progress(f"reading the Debian archive's {suite or 'kernel'} package lists")
            if refresh:
                self.archive.update((suite,) if suite else tuple(suites_for_release(spec)[:1]), force=True)
            packages = resolve(self.archive, spec)
            destination = self.root / packages.release
            if (destination / KernelTarget.METADATA).is_file():
                return KernelTarget.load(destination)
            if progress:
                names = ", ".join(f"{name} {version}" for name, version in packages.packages)
                progress(f"downloading {names}")
            view = self.archive.view(packages.suite)
            self._check_space(packages, view)
            debs = view.download(list(packages.packages))
            staging = self.root / f".{packages.release}.partial"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
            try:
                unpack_debs(debs, staging, progress=progress)
                normalize_layout(staging, packages.release)
                fix_header_paths(staging, packages.release)
                target = KernelTarget(
                    release=packages.release,
                    root=staging,
                    version=packages.version,
                    suite=packages.suite,
                    flavour=packages.flavour,
                    packages=tuple(name for name, _ in packages.packages),
                    toolchain=packages.toolchain,
                )
                if progress:
                    progress(f"extracting the uncompressed kernel from {target.vmlinuz.name}")
                extract_vmlinux(target.vmlinuz, target.vmlinux)
                target.save()
                staging.rename(destination)
            except BaseException as error:
                shutil.rmtree(staging, ignore_errors=True)
                if isinstance(error, OSError) and error.errno == errno.ENOSPC:
                    raise HarnessError(
                        f"out of disk space in {self.root} while adding kernel {packages.release}"
                    ) from None
                raise
            if progress:
                progress(f"kernel {packages.release} ({packages.version}, {packages.suite}) ready")
            return KernelTarget.load(destination)

    def _check_space(self, packages: KernelPackages, view: AptArchive) -> None:
        """HarnessError when the packages cannot be downloaded and unpacked in the free space."""
        download = unpacked = 0
        sizes = view.sizes(list(packages.packages))
        for name, version in packages.packages:
            size, installed = sizes.get((name, version), (0, 0))
            if not view.downloaded(name, version):
                download += size
            unpacked += installed
        view.archives_dir.mkdir(parents=True, exist_ok=True)
        needs: dict[int, tuple[Path, int]] = {}
        for path, amount in ((view.archives_dir, download), (self.root, unpacked + EXTRA_SPACE)):
            device = os.stat(path).st_dev
            previous = needs.get(device, (path, 0))
            needs[device] = (previous[0], previous[1] + amount)
        for path, amount in needs.values():
            free = shutil.disk_usage(path).free
            if free < amount:
                raise HarnessError(
                    f"out of disk space: kernel {packages.release} needs about {amount // MIB} MiB "
                    f"in {path}, {free // MIB} MiB free"
                )

    def add_tree(self, tree: Path, *, progress: Progress | None = say) -> KernelTarget:
        """A kernel tree the user built, as a target (see :mod:`harness.debugkernel.tree`)."""
        from harness.debugkernel.tree import add_tree

        with self._locked():
            return add_tree(self.root, tree, progress=progress)

    def remove(self, name: str) -> KernelTarget:
        """Delete one target's tree and what the cache made from it (its downloaded .debs stay).

        Refuses while another process uses the target (see the module docstring).
        """
        target = self._find(name)
        lock = self._lock_path(target.release)
        if lock in _IN_USE:
            raise HarnessError(f"kernel {target.release} is in use by this process; it cannot remove it")
        busy = f"kernel {target.release} is in use by another kmh process (a run, build, check or VM)"
        with self._locked(), lock.open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise HarnessError(f"{busy}; remove it when that has finished") from None
            shutil.rmtree(target.root)
            for folder in DERIVED:
                shutil.rmtree(self.root.parent / folder / target.release, ignore_errors=True)
        return target

    def _lock_path(self, release: str) -> Path:
        folder = self.root / ".locks"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{release}.lock"

    def _hold(self, target: KernelTarget) -> None:
        """Take TARGET's shared in-use lock for the rest of this process (once per target)."""
        try:
            lock = self._lock_path(target.release)
            if lock in _IN_USE:
                return
            handle = lock.open("a")
        except OSError:
            return  # a store this user cannot write to is not one they can remove from either
        fcntl.flock(handle, fcntl.LOCK_SH)  # waits while a remove is deleting it
        if not (target.root / KernelTarget.METADATA).is_file():
            handle.close()
            raise HarnessError(f"kernel target {target.release} was removed just now")
        _IN_USE[lock] = handle

    def _locked(self) -> AbstractContextManager[None]:
        return exclusive(self.root)

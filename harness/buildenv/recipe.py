"""Which build environment a kernel target needs: the suite's archive and toolchain packages.

A kernel's headers name their compiler (gcc-10 for bullseye, 12 for bookworm, 14 for trixie,
16 for sid) and its ``linux-kbuild`` programs link against the suite's glibc (trixie's needs
glibc >= 2.38, so it cannot run on a bookworm host). The honest build environment is therefore a
minimal system of the kernel's own suite with exactly those packages. Where that suite is the
host's own release, the host toolchain *is* the kernel's toolchain and no environment is made.

The recipe is a plain value whose name carries a hash of its inputs, so kernels of one suite
with the same toolchain share one environment, and a changed toolchain makes a new one.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.kernels.target import KernelTarget

#: Bump when the way environments are made changes, so old ones are not reused.
RECIPE_VERSION = "1"
#: Always in an environment: make for kbuild, kmod for depmod/modinfo, libc headers for host tools.
BASE_PACKAGES = ("make", "kmod", "libc6-dev")
#: The archive suites an environment of a kernel's suite is made from. Backports share their
#: stable release's environment (their toolchain comes from that release).
ENV_SUITES: dict[str, tuple[str, ...]] = {
    "bullseye": ("bullseye", "bullseye-security"),
    "bookworm": ("bookworm", "bookworm-updates", "bookworm-security", "bookworm-backports"),
    "trixie": ("trixie", "trixie-updates", "trixie-security", "trixie-backports"),
    "forky": ("forky",),
    "sid": ("sid",),
    "experimental": ("sid", "experimental"),
}
HOST = "host"
#: With ``KMH_BUILDENV=always`` kernels of the host's own release are built in an environment
#: too (for comparisons, or a host whose toolchain was changed).


@dataclass(frozen=True)
class Recipe:
    """A build environment: a minimal system of SUITES with PACKAGES installed, or the host."""

    release: str  # the Debian release it is a system of (bullseye, trixie, sid, ...)
    suites: tuple[str, ...]
    packages: tuple[str, ...]

    @property
    def is_host(self) -> bool:
        return not self.suites

    @property
    def name(self) -> str:
        """``host`` or ``<release>-<hash of suites and packages>``: the environment's directory."""
        if self.is_host:
            return HOST
        digest = hashlib.sha256(f"{RECIPE_VERSION}|{self.suites}|{self.packages}".encode()).hexdigest()
        return f"{self.release}-{digest[:8]}"


def host_release() -> str:
    """The host's Debian release codename (``bookworm``), empty when not Debian."""
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return ""
    match = re.search(r"^VERSION_CODENAME=\"?([a-z]+)", text, re.M)
    return match.group(1) if match else ""


def release_of(suite: str) -> str:
    """The Debian release a suite belongs to: ``trixie-backports`` -> ``trixie``."""
    return suite.split("-")[0]


def recipe_for(kernel: KernelTarget) -> Recipe:
    """The environment KERNEL's kbuild runs in (the host's toolchain only for the host's release)."""
    release = release_of(kernel.suite)
    isolated = os.environ.get("KMH_BUILDENV") == "always"  # even the host's release in its own
    if not kernel.suite or (release == host_release() and not isolated):
        return Recipe(release or HOST, (), ())
    if release not in ENV_SUITES:
        raise HarnessError(
            f"no build environment recipe for suite {kernel.suite!r} of {kernel.release}; "
            f"known: {', '.join(ENV_SUITES)}"
        )
    if not kernel.toolchain:
        raise HarnessError(
            f"kernel target {kernel.release} records no toolchain (added by an older kmh); "
            f"re-add it: kmh kernel rm {kernel.release} && kmh kernel add {kernel.release}"
        )
    packages = sorted({_normalise(name) for name in kernel.toolchain} | set(BASE_PACKAGES))
    return Recipe(release, ENV_SUITES[release], tuple(packages))


def _normalise(package: str) -> str:
    """``gcc-N-for-host`` -> ``gcc-N``: both install ``x86_64-linux-gnu-gcc-N``, the compiler the
    headers' Makefile calls, so trixie's 6.12 and its 7.x backport share one environment."""
    match = re.fullmatch(r"(gcc-\d+)-for-host", package)
    return match.group(1) if match else package

"""What a kernel SPEC means in Debian's archive: which packages, which versions.

A SPEC is either a suite shorthand (``bookworm``, ``bookworm-backports``, optionally with a
flavour: ``bookworm:cloud-amd64``) resolved through the ``linux-image-<flavour>`` meta package,
or an exact release (``6.1.0-56-amd64``, ``6.12.95+deb12-amd64``). Either way the result is the
image, its headers, the matching ``-common`` headers and ``linux-kbuild`` package, as exact
versions, so what is downloaded is exactly what a Debian user installing that kernel would get.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.errors import HarnessError
from harness.kernels.apt import SUITE_GROUPS, AptArchive

DEFAULT_FLAVOUR = "amd64"
RELEASE_PATTERN = re.compile(
    r"^(?P<abi>\d+\.\d+(?:\.\d+)?(?:-\d+|\+deb\d+|\+bpo))-(?P<flavour>[a-z][a-z0-9-]*)$"
)
#: How many releases an error message lists (the newest ones).
SHOWN_RELEASES = 12


@dataclass(frozen=True)
class KernelPackages:
    """The exact Debian packages that make one kernel target."""

    release: str
    version: str
    suite: str
    flavour: str
    packages: tuple[tuple[str, str], ...]

    @property
    def image(self) -> str:
        return f"linux-image-{self.release}"


def parse_spec(spec: str) -> tuple[str, str]:
    """Split a SPEC into (suite, flavour) for shorthands or ("", release) for exact releases."""
    suite, _, flavour = spec.partition(":")
    if suite in SUITE_GROUPS:
        return suite, flavour or DEFAULT_FLAVOUR
    if RELEASE_PATTERN.match(spec):
        return "", spec
    raise HarnessError(
        f"unknown kernel spec {spec!r}: use a suite ({', '.join(SUITE_GROUPS)}), optionally with a "
        "flavour (bookworm:cloud-amd64), or an exact release such as 6.1.0-56-amd64"
    )


def resolve(archive: AptArchive, spec: str) -> KernelPackages:
    """Resolve SPEC to exact package versions, with the archive's lists already up to date."""
    suite, rest = parse_spec(spec)
    if suite:
        release, version = _resolve_suite(archive, suite, flavour=rest)
    else:
        release = rest
        version, suite = _newest_image(archive, release)
    flavour_match = RELEASE_PATTERN.match(release)
    flavour = flavour_match.group("flavour") if flavour_match else DEFAULT_FLAVOUR
    headers = f"linux-headers-{release}"
    header_versions = [v for v in archive.versions(headers) if v.version == version]
    if not header_versions:
        raise HarnessError(f"the archive has {release} {version} but no {headers} of that version")
    packages = [(f"linux-image-{release}", version), (headers, version)]
    for dependency in archive.depends(headers, version):
        if dependency.startswith(("linux-headers-", "linux-kbuild-")):
            packages.append((dependency, _best_version(archive, dependency, version)))
    return KernelPackages(release, version, suite, flavour, tuple(packages))


def _resolve_suite(archive: AptArchive, suite: str, flavour: str) -> tuple[str, str]:
    meta = f"linux-image-{flavour}"
    candidates = [v for v in archive.versions(meta) if v.suite in SUITE_GROUPS[suite]]
    if not candidates:
        flavours = sorted(
            name.removeprefix("linux-image-")
            for name in archive.package_names("linux-image-")
            if not name.removeprefix("linux-image-")[:1].isdigit()
            and not name.endswith(("-dbg", "-unsigned", "-template"))
        )
        raise HarnessError(
            f"suite {suite} has no {meta}; flavours available: {', '.join(flavours) or 'none'}"
        )
    newest = candidates[0]
    for dependency in archive.depends(meta, newest.version):
        if dependency.startswith("linux-image-"):
            return dependency.removeprefix("linux-image-").removesuffix("-unsigned"), newest.version
    raise HarnessError(f"{meta} {newest.version} does not name a kernel image package")


def _newest_image(archive: AptArchive, release: str) -> tuple[str, str]:
    versions = archive.versions(f"linux-image-{release}")
    if not versions:
        match = RELEASE_PATTERN.match(release)
        offered = available_releases(archive, match.group("flavour") if match else DEFAULT_FLAVOUR)
        raise HarnessError(
            f"no Debian kernel {release}; newest releases available: {', '.join(offered[-SHOWN_RELEASES:])}"
        )
    suite = next((name for name, group in SUITE_GROUPS.items() if versions[0].suite in group), "")
    return versions[0].version, suite


def _best_version(archive: AptArchive, package: str, preferred: str) -> str:
    versions = archive.versions(package)
    if not versions:
        raise HarnessError(f"the archive has no {package}")
    for candidate in versions:
        if candidate.version == preferred:
            return candidate.version
    return versions[0].version


def available_releases(archive: AptArchive, flavour: str = "") -> list[str]:
    """Kernel releases the archive offers (optionally of one flavour), for error messages."""
    releases = []
    for name in archive.package_names("linux-image-"):
        release = name.removeprefix("linux-image-")
        match = RELEASE_PATTERN.match(release)
        if not match or release.endswith(("-dbg", "-unsigned")):
            continue
        if flavour and match.group("flavour") != flavour:
            continue
        releases.append(release)
    return sorted(releases, key=_natural_key)


def _natural_key(text: str) -> list[int | str]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]

"""What a kernel SPEC means in Debian's archive: which packages, which versions.

A SPEC is either a suite shorthand (``bullseye`` ... ``experimental``, optionally with a flavour:
``trixie:cloud-amd64``) resolved through the ``linux-image-<flavour>`` meta package, or an exact
release (``6.1.0-56-amd64``, ``7.2.13+deb14-amd64``). Either way the result is the image, its
headers, the matching ``-common`` headers and ``linux-kbuild`` package, as exact versions, so what
is downloaded is exactly what a Debian user installing that kernel would get. From 7.x the image
package is a small meta package and the kernel, modules and config/System.map come in
``linux-binary-``, ``linux-modules-`` and ``linux-base-<release>``; those are fetched too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.errors import HarnessError
from harness.kernels.apt import NEWEST_IMAGE_SUITES, SUITE_GROUPS, AptArchive, DebianArchive

DEFAULT_FLAVOUR = "amd64"
FLAVOURS = ("amd64", "cloud-amd64", "rt-amd64")
#: 5.10.0-46, 6.1.0-0.deb11.52, 6.12.118+deb13, 6.12.90+deb13.1, 7.3 (experimental's rc).
RELEASE_PATTERN = re.compile(
    r"^(?P<abi>\d+\.\d+(?:\.\d+)?(?:-\d+(?:\.deb\d+\.\d+)?|\+deb\d+(?:\.\d+)?|\+bpo)?)"
    r"-(?P<flavour>[a-z][a-z0-9-]*)$"
)
#: Packages of the 7.x split that a kernel target is made from (besides image and headers).
SPLIT_PREFIXES = ("linux-binary-", "linux-modules-", "linux-base-")
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
    #: What building against these headers needs besides them, by Debian package name: the
    #: compiler the headers name and the libraries their ``linux-kbuild`` programs link to.
    toolchain: tuple[str, ...] = ()

    @property
    def image(self) -> str:
        return f"linux-image-{self.release}"


def parse_spec(spec: str) -> tuple[str, str]:
    """Split a SPEC into (suite, flavour) for shorthands or ("", release) for exact releases."""
    suite, colon, flavour = spec.partition(":")
    if suite in SUITE_GROUPS:
        if colon and flavour not in FLAVOURS:
            raise HarnessError(f"unknown flavour {flavour!r} for {suite}: flavours are {', '.join(FLAVOURS)}")
        return suite, flavour or DEFAULT_FLAVOUR
    if RELEASE_PATTERN.match(spec):
        return "", spec
    raise HarnessError(
        f"unknown kernel spec {spec!r}: use a suite ({', '.join(SUITE_GROUPS)}), optionally with a "
        f"flavour ({', '.join(FLAVOURS)}: trixie:cloud-amd64), or an exact release such as 6.1.0-56-amd64"
    )


def resolve(archives: DebianArchive, spec: str) -> KernelPackages:
    """Resolve SPEC to exact package versions, refreshing the package lists it reads if stale."""
    suite, rest = parse_spec(spec)
    if suite:
        archive = archives.view(suite)
        archive.update()
        release, version = _resolve_suite(archive, suite, flavour=rest)
    else:
        release = rest
        archive, version, suite = _find_release(archives, release)
    flavour_match = RELEASE_PATTERN.match(release)
    flavour = flavour_match.group("flavour") if flavour_match else DEFAULT_FLAVOUR
    headers = f"linux-headers-{release}"
    header_versions = [v for v in archive.versions(headers) if v.version == version]
    if not header_versions:
        raise HarnessError(f"the archive has {release} {version} but no {headers} of that version")
    packages = [(f"linux-image-{release}", version), (headers, version)]
    wanted = [d for d in archive.depends(f"linux-image-{release}", version) if d.startswith(SPLIT_PREFIXES)]
    wanted += [
        d
        for d in archive.depends(headers, version)
        if d.startswith(("linux-headers-", "linux-kbuild-")) or d.startswith(SPLIT_PREFIXES)
    ]
    for dependency in dict.fromkeys(wanted):
        if dependency.startswith(SPLIT_PREFIXES) and release not in dependency:
            continue
        packages.append((dependency, _best_version(archive, dependency, version)))
    toolchain = _toolchain(archive, headers, version, dict(packages))
    return KernelPackages(release, version, suite, flavour, tuple(packages), toolchain)


def _toolchain(archive: AptArchive, headers: str, version: str, packages: dict[str, str]) -> tuple[str, ...]:
    """The non-kernel packages a build against HEADERS needs (see KernelPackages.toolchain).

    ``linux-kbuild-*`` itself is part of the target; its dependencies (glibc, libelf, libssl of
    the suite) are what an environment must provide, so kernels of one suite share one.
    """
    needed: list[str] = []
    for dependency in archive.depends(headers, version):
        if dependency.startswith("linux-kbuild-"):
            kbuild_deps = archive.depends(dependency, packages.get(dependency, version))
            needed += [d for d in kbuild_deps if not d.startswith("linux-")]
        elif not dependency.startswith(("linux-headers-", "linux-image-", "linux-base")):
            needed.append(dependency)
    return tuple(sorted(set(needed)))


def _resolve_suite(archive: AptArchive, suite: str, flavour: str) -> tuple[str, str]:
    if suite in NEWEST_IMAGE_SUITES:
        releases = available_releases(archive, flavour)
        if releases:
            release = releases[-1]
            return release, archive.versions(f"linux-image-{release}")[0].version
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


def _find_release(archives: DebianArchive, release: str) -> tuple[AptArchive, str, str]:
    """The view (suite) that offers RELEASE, the suites its name hints at searched first."""
    for suite in suites_for_release(release):
        archive = archives.view(suite)
        archive.update()
        versions = archive.versions(f"linux-image-{release}")
        if versions:
            return archive, versions[0].version, suite
    match = RELEASE_PATTERN.match(release)
    flavour = match.group("flavour") if match else DEFAULT_FLAVOUR
    hinted = archives.view(suites_for_release(release)[0])
    offered = available_releases(hinted, flavour)
    raise HarnessError(
        f"no Debian kernel {release}; newest releases available: {', '.join(offered[-SHOWN_RELEASES:])}"
    )


#: Which suites an exact release's name points at (Debian's ABI naming), searched first.
RELEASE_HINTS = (
    (re.compile(r"^5\.10\.|\.deb11\.|\+deb11"), ("bullseye",)),
    (re.compile(r"^6\.1\.0-\d+-|\+deb12"), ("bookworm", "bookworm-backports", "bookworm-security")),
    (re.compile(r"\+deb13"), ("trixie", "trixie-backports")),
    (re.compile(r"\+deb14"), ("sid", "forky", "experimental")),
    (re.compile(r"^\d+\.\d+-"), ("experimental",)),
)


def suites_for_release(release: str) -> list[str]:
    """Every suite, the ones RELEASE's name hints at first."""
    first = [suite for pattern, suites in RELEASE_HINTS if pattern.search(release) for suite in suites]
    return list(dict.fromkeys([*first, *SUITE_GROUPS]))


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


@dataclass(frozen=True)
class Offer:
    """What one suite offers: its kernel (``kmh kernel add SUITE``) and the flavours it has."""

    suite: str
    release: str  # of the default flavour, e.g. 6.12.118+deb13-amd64
    version: str
    flavours: tuple[str, ...]


def search(archives: DebianArchive, suites: tuple[str, ...] = ()) -> list[Offer]:
    """The kernel each suite's shorthand resolves to, read from package lists only (no kernels)."""
    offers = []
    for suite in suites or tuple(SUITE_GROUPS):
        archive = archives.view(suite)
        archive.update()
        found: dict[str, tuple[str, str]] = {}
        for flavour in FLAVOURS:
            try:
                found[flavour] = _resolve_suite(archive, suite, flavour)
            except HarnessError:
                continue
        if not found:
            continue
        release, version = found.get(DEFAULT_FLAVOUR) or next(iter(found.values()))
        offers.append(Offer(suite, release, version, tuple(found)))
    return offers

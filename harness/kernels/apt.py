"""Private views of the Debian archive, through apt's own tools.

The harness never touches the host's apt configuration: it keeps its own sources lists, package
lists and download directory under the cache, and passes them to ``apt-get``/``apt-cache`` as
``-o Dir::...`` options. So no suite need be enabled system-wide, and nothing is installed:
packages are only downloaded (``apt-get download``) to be unpacked elsewhere.

There is one view per suite shorthand (``<cache>/apt/views/<suite>``), each reading only that
suite's lists, so ``kmh kernel add trixie`` never downloads the package lists of nine suites and
a suite name in a madison line is unambiguous. Downloaded .debs share one directory.

Every apt command has a wall-clock limit (a silent mirror or a disk that fills up must not leave
``kmh kernel add`` waiting forever), and a stalled connection is given up after a minute. A full
disk is reported as such, in one line (the store checks the space before downloading).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from plumbum import FG, CommandNotFound, ProcessExecutionError, ProcessTimedOut, local
from plumbum.machines import LocalCommand

from harness.errors import HarnessError, ToolMissing

#: What a shorthand SPEC means: the archive suites its view reads, the first one naming it.
#: bullseye-backports and buster are gone from the archive.
SUITE_GROUPS: dict[str, tuple[str, ...]] = {
    "bullseye": ("bullseye", "bullseye-security"),
    "bookworm": ("bookworm", "bookworm-updates", "bookworm-security"),
    "bookworm-backports": ("bookworm-backports",),
    "bookworm-security": ("bookworm-security",),
    "trixie": ("trixie", "trixie-updates", "trixie-security"),
    "trixie-backports": ("trixie-backports",),
    "forky": ("forky",),
    "sid": ("sid",),
    "experimental": ("experimental",),
}
#: Suites whose shorthand means the newest kernel image they carry rather than the one the
#: ``linux-image-<flavour>`` meta package points at (bookworm-security carries a 6.12 beside
#: bookworm's 6.1, without a meta package of its own for it).
NEWEST_IMAGE_SUITES = ("bookworm-security",)
ARCHITECTURE = "amd64"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
#: Package lists older than this are refreshed before resolving a suite shorthand.
LISTS_MAX_AGE = 6 * 3600
#: Wall-clock limits in seconds: reading lists, refreshing them, downloading a kernel's packages
#: (~100 MB: generous for a slow mirror, but finite).
QUERY_TIMEOUT = 120.0
UPDATE_TIMEOUT = 600.0
DOWNLOAD_TIMEOUT = 1800.0
NO_SPACE = "No space left on device"
#: Free space below which a failed download is put down to the disk.
LOW_SPACE = 64 * 1024 * 1024


def host_mirrors() -> tuple[str, str]:
    """The Debian mirror the host already uses (so CI mirrors work), else deb.debian.org.

    ``$KMH_DEBIAN_MIRROR`` / ``$KMH_DEBIAN_SECURITY_MIRROR`` override both.
    """
    mirror = os.environ.get("KMH_DEBIAN_MIRROR", "")
    security = os.environ.get("KMH_DEBIAN_SECURITY_MIRROR", "")
    found: list[str] = []
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        if path.suffix not in (".list", ".sources", "") or not path.is_file():
            continue
        found += re.findall(r"(?:URIs:\s*|^deb\s+(?:\[[^\]]*\]\s+)?)(\S+)", path.read_text(), re.M)
    for uri in found:
        uri = uri.rstrip("/")
        if uri.endswith("/debian") and not mirror:
            mirror = uri
        elif uri.endswith("/debian-security") and not security:
            security = uri
    return mirror or DEFAULT_MIRROR, security or DEFAULT_SECURITY_MIRROR


def apt_tool(name: str) -> LocalCommand:
    """The host program NAME (apt-get, apt-cache, dpkg-deb), or ToolMissing naming its package."""
    try:
        return local[name]
    except CommandNotFound:
        package = "dpkg" if name.startswith("dpkg") else "apt"
        raise ToolMissing(name, package, "kernel targets are downloaded and unpacked with it") from None


@dataclass(frozen=True)
class PackageVersion:
    """One version of a package as apt-cache madison reports it."""

    package: str
    version: str
    suite: str


class AptArchive:
    """apt-get/apt-cache bound to a private configuration directory."""

    def __init__(self, state_dir: Path, suites: tuple[str, ...], *, archives_dir: Path | None = None) -> None:
        self.state_dir = state_dir
        self.suites = suites
        self.lists_dir = state_dir / "lists"
        self.archives_dir = archives_dir or state_dir / "archives"
        self.sources_list = state_dir / "sources.list"

    @property
    def name(self) -> str:
        """The suite shorthand this view serves (its first archive suite)."""
        return self.suites[0]

    # -- configuration -----------------------------------------------------------------------

    def _options(self) -> list[str]:
        settings = {
            "Dir::Etc::SourceList": str(self.sources_list),
            "Dir::Etc::SourceParts": str(self.state_dir / "sources.list.d"),
            "Dir::Etc::Preferences": str(self.state_dir / "preferences"),
            "Dir::Etc::PreferencesParts": str(self.state_dir / "preferences.d"),
            "Dir::State::Lists": str(self.lists_dir),
            "Dir::State::status": str(self.state_dir / "status"),
            "Dir::Cache": str(self.state_dir / "cache"),
            "Dir::Cache::Archives": str(self.archives_dir),
            "Dir::Cache::pkgcache": "",
            "Dir::Cache::srcpkgcache": "",
            "Acquire::Languages": "none",
            # sid's, forky's and experimental's Release files as some mirrors serve them are past
            # their Valid-Until date; their signatures still verify.
            "Acquire::Check-Valid-Until": "false",
            "APT::Architecture": ARCHITECTURE,
            "APT::Architectures": ARCHITECTURE,
            "APT::Sandbox::User": "root" if os.geteuid() == 0 else "",
            "Debug::NoLocking": "1",
            # A stalled connection gives up after 60 s (the wall-clock limits bound the rest).
            "Acquire::http::Timeout": "60",
        }
        options: list[str] = []
        for key, value in settings.items():
            if key == "APT::Sandbox::User" and not value:
                continue
            options += ["-o", f"{key}={value}"]
        return options

    def _write_config(self) -> None:
        for folder in (
            self.lists_dir / "partial",
            self.archives_dir / "partial",
            self.state_dir / "sources.list.d",
            self.state_dir / "preferences.d",
            self.state_dir / "cache",
        ):
            folder.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "status").touch()
        text = sources_lines(self.suites)
        if not self.sources_list.exists() or self.sources_list.read_text() != text:
            self.sources_list.write_text(text)

    # -- commands ------------------------------------------------------------------------------

    def _run(self, tool: str, *args: str, cwd: Path | None = None, timeout: float | None = None) -> str:
        command = apt_tool(tool)[(*self._options(), *args)]
        limit = QUERY_TIMEOUT if timeout is None else timeout
        try:
            if cwd is not None:
                with local.cwd(cwd):
                    return command(timeout=limit)
            return command(timeout=limit)
        except ProcessTimedOut:
            raise HarnessError(
                f"{tool} {' '.join(args[:2])} did not finish within {limit:g} s (mirror unreachable?)"
            ) from None
        except ProcessExecutionError as error:
            output = f"{error.stderr or ''}\n{error.stdout or ''}"
            if NO_SPACE in output:
                raise HarnessError(
                    f"{tool} {' '.join(args[:2])}: out of disk space in {self.state_dir}", details=output
                ) from None
            message = (error.stderr or error.stdout or "").strip().splitlines()
            reason = message[-1] if message else f"exit code {error.retcode}"
            raise HarnessError(
                f"{tool} {' '.join(args[:2])} failed: {reason}", details=error.stderr or ""
            ) from None

    def update(self, *, force: bool = False) -> None:
        """Refresh the private package lists (skipped while they are fresh)."""
        self._write_config()
        stamp = self.state_dir / "updated"
        if not force and stamp.exists() and time.time() - stamp.stat().st_mtime < LISTS_MAX_AGE:
            return
        try:
            code, stdout, stderr = apt_tool("apt-get")[(*self._options(), "update", "-q")].run(
                retcode=None, timeout=UPDATE_TIMEOUT
            )
        except ProcessTimedOut:
            raise HarnessError(
                f"apt-get update for {self.name} did not finish within {UPDATE_TIMEOUT:g} s "
                "(mirror unreachable?)"
            ) from None
        if NO_SPACE in stdout + stderr:
            raise HarnessError(f"apt-get update: out of disk space in {self.state_dir}", details=stderr)
        # apt-get update exits 0 when an index cannot be fetched and says so only as a warning.
        problems = [
            line
            for line in (stderr + stdout).splitlines()
            if line.startswith(("E:", "W:")) and ("fail" in line.lower() or code != 0)
        ]
        if code != 0 or problems:
            reason = problems[0] if problems else f"apt-get update exit code {code}"
            raise HarnessError(
                f"cannot read the Debian archive's {self.name} package lists "
                f"({' '.join(sources_lines(self.suites).split()[2:3])}): {reason}",
                details=stderr,
            )
        stamp.touch()

    def versions(self, package: str) -> list[PackageVersion]:
        """Every version of ``package`` the archive offers, newest first."""
        output = self._run("apt-cache", "madison", package)
        found = []
        for line in output.splitlines():
            parts = [part.strip() for part in line.split("|")]
            if len(parts) < 3 or parts[0] != package:
                continue
            suite = parts[2].split()[1].split("/")[0] if len(parts[2].split()) > 1 else ""
            found.append(PackageVersion(package, parts[1], suite))
        return found

    def depends(self, package: str, version: str) -> list[str]:
        """The first alternative of each dependency of one package version."""
        output = self._run("apt-cache", "show", f"{package}={version}")
        match = re.search(r"^Depends: (.*)$", output, re.M)
        if not match:
            return []
        return [clause.split("|")[0].split("(")[0].strip() for clause in match.group(1).split(",")]

    def sizes(self, packages: list[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, int]]:
        """(download size, unpacked size) in bytes of each (package, version), from the lists.

        One apt-cache run for all of them: each run re-reads every package list (~2 s).
        """
        output = self._run("apt-cache", "show", *(f"{name}={version}" for name, version in packages))
        found: dict[tuple[str, str], tuple[int, int]] = {}
        for record in output.split("\n\n"):
            fields = dict(re.findall(r"^([\w-]+): (.*)$", record, re.M))
            key = (fields.get("Package", ""), fields.get("Version", ""))
            if key in packages and key not in found:
                size, installed = fields.get("Size", "0"), fields.get("Installed-Size", "0")
                found[key] = (
                    int(size) if size.isdigit() else 0,
                    int(installed) * 1024 if installed.isdigit() else 0,
                )
        return found

    def show_field(self, package: str, version: str, name: str) -> str:
        """One field of one package version's record (``Installed-Size``, ``Source``, ...)."""
        output = self._run("apt-cache", "show", f"{package}={version}")
        match = re.search(rf"^{re.escape(name)}: (.*)$", output, re.M)
        return match.group(1).strip() if match else ""

    def package_names(self, prefix: str) -> list[str]:
        return sorted(self._run("apt-cache", "pkgnames", prefix).split())

    def download(self, packages: list[tuple[str, str]]) -> list[Path]:
        """Download exact package versions into the private archive directory; returns the .deb paths."""
        self.archives_dir.mkdir(parents=True, exist_ok=True)
        wanted = [f"{name}={version}" for name, version in packages]
        missing = [
            spec
            for spec, (name, version) in zip(wanted, packages, strict=True)
            if not self._deb_path(name, version)
        ]
        if missing:
            command = apt_tool("apt-get")[(*self._options(), "download", *missing)]
            with local.cwd(self.archives_dir):
                # apt's own progress goes straight to the terminal.
                try:
                    command & FG(timeout=DOWNLOAD_TIMEOUT)
                except ProcessTimedOut:
                    raise HarnessError(
                        f"downloading {' '.join(missing)} did not finish within {DOWNLOAD_TIMEOUT:g} s"
                    ) from None
                except ProcessExecutionError as error:
                    # A failed fetch leaves its partial file; on a full disk that is the space.
                    shutil.rmtree(self.archives_dir / "partial", ignore_errors=True)
                    if shutil.disk_usage(self.archives_dir).free < LOW_SPACE:
                        raise HarnessError(
                            f"downloading {' '.join(missing)}: out of disk space in {self.archives_dir}"
                        ) from None
                    raise HarnessError(
                        f"downloading {' '.join(missing)} failed (apt-get exit {error.retcode})"
                    ) from None
        paths = []
        for name, version in packages:
            path = self._deb_path(name, version)
            if path is None:
                raise HarnessError(f"apt-get download did not produce {name} {version}")
            paths.append(path)
        return paths

    def downloaded(self, name: str, version: str) -> bool:
        """Whether that package version is already in the private archive directory."""
        return self._deb_path(name, version) is not None

    def _deb_path(self, name: str, version: str) -> Path | None:
        quoted = version.replace(":", "%3a")
        matches = sorted(self.archives_dir.glob(f"{name}_{quoted}_*.deb"))
        return matches[0] if matches else None


def sources_lines(suites: tuple[str, ...]) -> str:
    """A sources.list for SUITES on the host's mirrors (security suites on the security mirror)."""
    mirror, security = host_mirrors()
    signed = f"[signed-by={KEYRING}]" if Path(KEYRING).exists() else "[trusted=yes]"
    lines = [
        f"deb {signed} {security if suite.endswith('-security') else mirror} {suite} main" for suite in suites
    ]
    return "\n".join(lines) + "\n"


class DebianArchive:
    """The per-suite views under one directory, sharing one download directory."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.archives_dir = state_dir / "archives"

    def view(self, suite: str) -> AptArchive:
        if suite not in SUITE_GROUPS:
            raise HarnessError(f"unknown suite {suite!r}; suites: {', '.join(SUITE_GROUPS)}")
        return AptArchive(
            self.state_dir / "views" / suite, SUITE_GROUPS[suite], archives_dir=self.archives_dir
        )

    def update(self, suites: tuple[str, ...] = (), *, force: bool = False) -> None:
        """Refresh the lists of SUITES (default: none; views refresh themselves when used)."""
        for suite in suites:
            self.view(suite).update(force=force)

"""What this host has and lacks for each of kmh's features, checked without running anything big.

Every feature fails in its own place when a tool is missing (make inside kbuild, busybox while
the guest image is assembled, qemu at boot); :func:`diagnose` checks all of them at once so a new
user gets one list and one ``apt-get install`` line instead of a failure per attempt. The checks
look for programs on ``PATH`` (as the code that runs them does), files that ``-dev`` packages
install, and facts of the host (KVM, free space in the store). Nothing is installed or started.

``kmh doctor`` prints the findings; :class:`~harness.errors.ToolMissing`, raised where a tool is
first needed, points to it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from harness.paths import cache_root
from harness.vm import accel

#: Features whose checks only warn by default (kmh runs without them; ``--require`` changes that
#: for vagrant and cluster). Every other feature is needed by every ``kmh run``.
OPTIONAL = ("kvm", "vagrant", "cluster")

#: Below this much free space in the store, adding a kernel target fails (~0.6 GB unpacked each,
#: plus its packages and guest image layers).
MIN_FREE_BYTES = 2 * 1024**3

#: Where sbin programs live when PATH (e.g. a non-root user's) does not name them.
SBIN = "/usr/local/sbin:/usr/sbin:/sbin"


@dataclass(frozen=True)
class Finding:
    """One check's outcome: ``problem`` is empty when it passed."""

    feature: str
    name: str
    #: What to install when it failed: a Debian package, or a pip requirement when ``pip`` is set.
    package: str
    problem: str = ""
    detail: str = ""
    #: Only a warning: kmh works without it, slower or without one feature.
    advisory: bool = False
    pip: bool = False

    @property
    def ok(self) -> bool:
        return not self.problem


@dataclass(frozen=True)
class Check:
    feature: str
    name: str
    package: str
    #: Returns (problem, detail): problem is "" when the check passes.
    run: Callable[[], tuple[str, str]]
    advisory: bool = False
    pip: bool = False

    def __call__(self) -> Finding:
        problem, detail = self.run()
        return Finding(self.feature, self.name, self.package, problem, detail, self.advisory, self.pip)


def _program(name: str, *, sbin: bool = False) -> Callable[[], tuple[str, str]]:
    def check() -> tuple[str, str]:
        path = shutil.which(name) or (shutil.which(name, path=SBIN) if sbin else None)
        return ("", path) if path else (f"{name} not found on PATH", "")

    return check


def _file(path: str) -> Callable[[], tuple[str, str]]:
    return lambda: ("", path) if Path(path).exists() else (f"{path} is missing", "")


def _static_libc() -> tuple[str, str]:
    """The guest agent is linked statically: gcc must find libc.a (libc6-dev)."""
    gcc = shutil.which("gcc")
    if not gcc:
        return "gcc not found on PATH (needed to find libc.a)", ""
    found = subprocess.run([gcc, "-print-file-name=libc.a"], capture_output=True, text=True).stdout.strip()
    return ("", os.path.normpath(found)) if os.path.isabs(found) else ("libc.a not found by gcc", "")


def _static_busybox() -> tuple[str, str]:
    """The guest has no shared libraries of its own for busybox: it must be the static build."""
    path = shutil.which("busybox") or shutil.which("busybox", path=SBIN)
    if not path:
        return "busybox not found on PATH", ""
    try:
        with open(path, "rb") as handle:
            dynamic = any(segment["p_type"] == "PT_INTERP" for segment in ELFFile(handle).iter_segments())
    except (OSError, ELFError) as error:
        return f"cannot read {path}: {error}", ""
    return (
        (f"{path} is dynamically linked (Debian's busybox, not busybox-static)", "")
        if dynamic
        else ("", path)
    )


def _kvm() -> tuple[str, str]:
    slower = "VMs use TCG (software emulation), several times slower"
    problem = accel.static_kvm_check()
    if problem:
        return f"{problem}: {slower}", ""
    qemu = shutil.which("qemu-system-x86_64")
    decided = accel.recorded(qemu) if qemu else None
    if decided is not None and decided.name != "kvm":
        return f"KVM failed its trial boot ({decided.reason}): {slower}", ""
    if decided is not None:
        return "", f"KVM works ({decided.reason})"
    return "", "hardware virtualisation present (the first boot confirms it)"


def _free_space() -> tuple[str, str]:
    root = cache_root()
    free = shutil.disk_usage(root).free
    detail = f"{free / 1024**3:.1f} GiB free in {root}"
    if free < MIN_FREE_BYTES:
        return f"only {detail}; a kernel target needs ~1 GiB", ""
    return "", detail


def _vagrant_libvirt() -> tuple[str, str]:
    """Debian's vagrant-libvirt is a system gem: its spec file says it is there, no Ruby started."""
    specs = Path("/usr/share/rubygems-integration/all/specifications")
    found = sorted(specs.glob("vagrant-libvirt-*.gemspec")) if specs.is_dir() else []
    return ("", str(found[-1])) if found else ("the vagrant-libvirt plugin is not installed", "")


def _importable(module: str) -> Callable[[], tuple[str, str]]:
    def check() -> tuple[str, str]:
        spec = importlib.util.find_spec(module)
        return ("", spec.origin or module) if spec else (f"Python module {module!r} is not importable", "")

    return check


def _cluster_requirement() -> str:
    """What to pip-install for cluster mode: the package's own extra when it declares one."""
    try:
        extras = importlib.metadata.metadata("kmod-harness").get_all("Provides-Extra") or []
    except importlib.metadata.PackageNotFoundError:
        extras = []
    return "kmod-harness[cluster]" if "cluster" in extras else "distributed"


def checks() -> list[Check]:
    """Every check, grouped by feature (the order of the printed table)."""
    program = _program
    return [
        Check("kernels", "apt-get", "apt", program("apt-get")),
        Check("kernels", "dpkg-deb", "dpkg", program("dpkg-deb")),
        Check("kernels", "zstandard", "zstandard", _importable("zstandard"), pip=True),
        Check("kbuild", "make", "make", program("make")),
        Check("kbuild", "gcc", "gcc", program("gcc")),
        Check("kbuild", "gcc-12", "gcc-12", program("gcc-12")),
        Check("kbuild", "bc", "bc", program("bc")),
        Check("kbuild", "bison", "bison", program("bison")),
        Check("kbuild", "flex", "flex", program("flex")),
        Check("kbuild", "libelf-dev", "libelf-dev", _file("/usr/include/gelf.h")),
        Check("kbuild", "libssl-dev", "libssl-dev", _file("/usr/include/openssl/opensslv.h")),
        Check("kbuild", "pahole", "dwarves", program("pahole")),
        Check("vm", "qemu-system-x86_64", "qemu-system-x86", program("qemu-system-x86_64")),
        Check("vm", "busybox (static)", "busybox-static", _static_busybox),
        Check("vm", "kmod", "kmod", program("kmod")),
        Check("vm", "depmod", "kmod", program("depmod", sbin=True)),
        Check("vm", "cpio", "cpio", program("cpio")),
        Check("vm", "dash", "dash", program("dash")),
        Check("vm", "libc.a (static agent)", "libc6-dev", _static_libc),
        Check("store", "free space", "", _free_space),
        Check("kvm", "KVM", "", _kvm, advisory=True),
        Check("vagrant", "vagrant", "vagrant", program("vagrant"), advisory=True),
        Check("vagrant", "vagrant-libvirt", "vagrant-libvirt", _vagrant_libvirt, advisory=True),
        Check("vagrant", "libvirtd", "libvirt-daemon-system", program("libvirtd", sbin=True), advisory=True),
        Check("vagrant", "virsh", "libvirt-clients", program("virsh"), advisory=True),
        Check("vagrant", "mmdebstrap", "mmdebstrap", program("mmdebstrap"), advisory=True),
        Check("vagrant", "mkfs.ext4", "e2fsprogs", program("mkfs.ext4", sbin=True), advisory=True),
        Check("vagrant", "qemu-img", "qemu-utils", program("qemu-img"), advisory=True),
        Check("vagrant", "ssh-keygen", "openssh-client", program("ssh-keygen"), advisory=True),
        Check("vagrant", "ruby", "ruby", program("ruby"), advisory=True),
        Check("cluster", "distributed", _cluster_requirement(), _importable("distributed"), True, pip=True),
    ]


def diagnose(require: tuple[str, ...] = ()) -> list[Finding]:
    """Run every check. Features in REQUIRE (e.g. ``vagrant``, ``cluster``) count as required:
    their missing pieces fail the diagnosis instead of only warning."""
    findings = [check() for check in checks()]
    return [replace(f, advisory=False) if f.feature in require else f for f in findings]


def install_lines(findings: list[Finding]) -> list[str]:
    """The exact commands that install what failed: one apt-get line, one pip line."""
    failed = [f for f in findings if not f.ok and f.package]
    apt = sorted({f.package for f in failed if not f.pip})
    pip = sorted({f.package for f in failed if f.pip})
    sudo = "" if os.geteuid() == 0 else "sudo "
    lines = []
    if apt:
        lines.append(f"{sudo}apt-get install --no-install-recommends {' '.join(apt)}")
    if pip:
        lines.append(f"pip install {' '.join(repr(p) if '[' in p else p for p in pip)}")
    return lines

"""Choose the QEMU accelerator: KVM only where it really works, else TCG.

``/dev/kvm`` alone proves nothing: some hosts expose a KVM API without hardware virtualisation
(e.g. a paravirtual ``kvm_pvm`` that needs a special guest kernel), where ``-enable-kvm`` either
dies or crawls. So KVM must pass three checks: the CPU flags (vmx/svm), a hardware KVM module
(kvm_intel/kvm_amd), and an accessible /dev/kvm. The first VM booted with a KVM candidate is the
trial boot; if it does not get ready quickly the decision flips to TCG. Decisions are cached per
host kernel and QEMU binary so the probe runs once.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.paths import cache_root

ACCELERATORS = ("kvm", "tcg")


@dataclass(frozen=True)
class AccelChoice:
    name: str  # "kvm" or "tcg"
    reason: str
    #: True when KVM still has to prove itself in a trial boot.
    trial: bool = False

    def __str__(self) -> str:
        return f"{self.name} ({self.reason})"


def _cache_file() -> Path:
    return cache_root() / "accel.json"


def _host_key(qemu: str) -> str:
    try:
        st = os.stat(qemu)
        ident = f"{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        ident = "?"
    return f"{platform.release()}|{qemu}|{ident}"


def _load() -> dict[str, dict[str, str]]:
    try:
        return json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        return {}


def record(qemu: str, name: str, reason: str) -> None:
    """Remember the verdict (after a trial boot, or a static rejection)."""
    data = _load()
    data[_host_key(qemu)] = {"accel": name, "reason": reason}
    tmp = _cache_file().with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(_cache_file())


def recorded(qemu: str) -> AccelChoice | None:
    """The decision cached for this host kernel and QEMU binary, if a boot already made one."""
    cached = _load().get(_host_key(qemu))
    return AccelChoice(cached["accel"], cached["reason"]) if cached else None


def static_kvm_check() -> str | None:
    """Why KVM cannot work here, or None when it may (a trial boot must still confirm)."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "cannot read /proc/cpuinfo"
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    if not flags & {"vmx", "svm"}:
        return "CPU has no vmx/svm"
    try:
        modules = Path("/proc/modules").read_text()
    except OSError:
        modules = ""
    if not any(line.startswith(("kvm_intel ", "kvm_amd ")) for line in modules.splitlines()):
        return "neither kvm_intel nor kvm_amd is loaded"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "/dev/kvm is not accessible"
    return None


def choose(qemu: str, forced: str | None = None) -> AccelChoice:
    """The accelerator to use: FORCED if given, else the cached or freshly probed decision."""
    if forced:
        if forced not in ACCELERATORS:
            raise HarnessError(f"unknown accelerator {forced!r}; choose one of {', '.join(ACCELERATORS)}")
        return AccelChoice(forced, "forced")
    cached = _load().get(_host_key(qemu))
    if cached:
        return AccelChoice(cached["accel"], f"cached: {cached['reason']}")
    problem = static_kvm_check()
    if problem:
        record(qemu, "tcg", problem)
        return AccelChoice("tcg", problem)
    return AccelChoice("kvm", "hardware virtualisation present; trial boot", trial=True)

"""``dkms.conf``, read by bash as dkms reads it.

dkms.conf is a shell fragment, not a key=value file: Debian's own packages source the kernel's
``.config`` in it, call ``sort -V`` and set BUILD_EXCLUSIVE_KERNEL in an ``if``. So it is sourced
by bash with the variables dkms provides before sourcing it (``$kernelver``,
``$kernel_source_dir``, ``$dkms_tree``, ``$source_tree``, ``$arch``...), and the resulting
variables are printed NUL-separated for Python to read. Nothing is re-implemented in Python but
the checks dkms makes on the result (BUILD_EXCLUSIVE_*), and those follow dkms's rules.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError
from harness.kernels.target import KernelTarget

#: Scalars and arrays dkms reads from dkms.conf (arrays are indexed like BUILT_MODULE_NAME[i]).
SCALARS = (
    "PACKAGE_NAME", "PACKAGE_VERSION", "CLEAN", "PRE_BUILD", "POST_BUILD", "BUILD_EXCLUSIVE_KERNEL",
    "BUILD_EXCLUSIVE_KERNEL_MIN", "BUILD_EXCLUSIVE_KERNEL_MAX", "BUILD_EXCLUSIVE_ARCH",
    "BUILD_EXCLUSIVE_CONFIG",
)  # fmt: skip
ARRAYS = (
    "BUILT_MODULE_NAME", "BUILT_MODULE_LOCATION", "DEST_MODULE_LOCATION", "DEST_MODULE_NAME", "MAKE",
    "MAKE_MATCH", "PATCH", "PATCH_MATCH",
)  # fmt: skip
#: Debian architecture → the ``uname -m`` spelling dkms's ``$arch`` has.
UNAME_ARCH = {"amd64": "x86_64", "arm64": "aarch64", "i386": "i686", "armhf": "armv7l"}

_DUMP = (
    "set +u\n"
    'cd "$source_tree_dir" && . ./dkms.conf >&2 || exit 3\n'
    + "".join(f'printf "%s\\0%s\\0%s\\0" {name} "" "${{{name}}}"\n' for name in SCALARS)
    + "".join(
        f'for i in "${{!{name}[@]}}"; do printf "%s\\0%s\\0%s\\0" {name} "$i" "${{{name}[$i]}}"; done\n'
        for name in ARRAYS
    )
)


@dataclass(frozen=True)
class DkmsModule:
    """One ``BUILT_MODULE_NAME[i]`` and where the build leaves it."""

    name: str
    location: str = ""
    dest: str = ""


@dataclass
class DkmsConf:
    """What a dkms.conf says for one kernel (it may say different things for different kernels)."""

    source: Path
    package: str
    version: str
    modules: list[DkmsModule]
    make: str
    clean: str = ""
    pre_build: str = ""
    patches: list[str] = field(default_factory=list)
    #: Why the package does not build for this kernel, or "" (BUILD_EXCLUSIVE_*).
    excluded: str = ""


def is_dkms_tree(directory: Path) -> bool:
    return (Path(directory) / "dkms.conf").is_file()


def declared_modules(source: Path) -> list[str]:
    """The BUILT_MODULE_NAME[] of SOURCE's dkms.conf, read with no kernel in view (dkms.conf's
    kernel-dependent parts see empty variables): enough to name a run's modules before any
    kernel is chosen."""
    arrays, _scalars = _source(source, {"source_tree": str(source.parent), "source_tree_dir": str(source)})
    names = arrays.get("BUILT_MODULE_NAME", {})
    if not names:
        raise HarnessError(f"{source}/dkms.conf declares no BUILT_MODULE_NAME")
    return [names[i] for i in sorted(names)]


def read_dkms_conf(source: Path, kernel: KernelTarget, dkms_tree: Path) -> DkmsConf:
    """Source SOURCE/dkms.conf in bash with the variables dkms sets for KERNEL; HarnessError for
    a dkms.conf that bash cannot source or that declares no module."""
    arch = UNAME_ARCH.get(kernel.flavour.split("-")[-1], kernel.flavour)
    variables = {
        "kernelver": kernel.release,
        "kernel_source_dir": str(kernel.kbuild_dir),
        "dkms_tree": str(dkms_tree),
        "source_tree": str(source.parent),
        "source_tree_dir": str(source),
        "arch": arch,
    }
    arrays, scalars = _source(source, variables)
    names = arrays.get("BUILT_MODULE_NAME", {})
    if not names:
        raise HarnessError(f"{source}/dkms.conf declares no BUILT_MODULE_NAME")
    package = scalars.get("PACKAGE_NAME") or source.name
    version = scalars.get("PACKAGE_VERSION", "")
    modules = [
        DkmsModule(
            name=names[i],
            location=arrays.get("BUILT_MODULE_LOCATION", {}).get(i, ""),
            dest=arrays.get("DEST_MODULE_LOCATION", {}).get(i, ""),
        )
        for i in sorted(names)
    ]
    build = dkms_tree / package / version / "build"
    # dkms's default when MAKE[0] is unset; MAKE_MATCH[i] picks MAKE[i] for matching kernels.
    make = arrays.get("MAKE", {}).get(0) or f"make -C {kernel.kbuild_dir} M={build}"
    for index, pattern in sorted(arrays.get("MAKE_MATCH", {}).items()):
        if index in arrays.get("MAKE", {}) and re.search(pattern, kernel.release):
            make = arrays["MAKE"][index]
    patches = [
        patch
        for index, patch in sorted(arrays.get("PATCH", {}).items())
        if not arrays.get("PATCH_MATCH", {}).get(index)
        or re.search(arrays["PATCH_MATCH"][index], kernel.release)
    ]
    return DkmsConf(
        source=source,
        package=package,
        version=version,
        modules=modules,
        make=make,
        clean=scalars.get("CLEAN", ""),
        pre_build=scalars.get("PRE_BUILD", ""),
        patches=patches,
        excluded=_excluded(scalars, kernel, arch),
    )


def _source(source: Path, variables: dict[str, str]) -> tuple[dict[str, dict[int, str]], dict[str, str]]:
    """Source dkms.conf in bash with VARIABLES; its arrays (index → value) and scalars."""
    environment = {"PATH": "/usr/local/bin:/usr/bin:/bin", **variables}
    try:
        done = subprocess.run(
            ["bash", "-c", _DUMP], env=environment, capture_output=True, timeout=60, check=False
        )
    except subprocess.TimeoutExpired:
        raise HarnessError(f"{source}/dkms.conf: sourcing it with bash did not finish in 60 s") from None
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip().splitlines()
        raise HarnessError(
            f"{source}/dkms.conf: bash cannot source it: {why[-1] if why else done.returncode}"
        )
    fields = done.stdout.decode(errors="replace").split("\0")
    scalars: dict[str, str] = {}
    arrays: dict[str, dict[int, str]] = {}
    for name, index, value in zip(fields[0::3], fields[1::3], fields[2::3], strict=False):
        if index:
            arrays.setdefault(name, {})[int(index)] = value
        else:
            scalars[name] = value
    return arrays, scalars


def _excluded(scalars: dict[str, str], kernel: KernelTarget, arch: str) -> str:
    """dkms's BUILD_EXCLUSIVE_* checks: a reason the package does not apply, or ""."""
    pattern = scalars.get("BUILD_EXCLUSIVE_KERNEL", "")
    if pattern and not _bash_regex(kernel.release, pattern):
        return f'BUILD_EXCLUSIVE_KERNEL="{pattern}" does not match {kernel.release}'
    low = scalars.get("BUILD_EXCLUSIVE_KERNEL_MIN", "")
    if low and _version(kernel.release) < _version(low):
        return f"BUILD_EXCLUSIVE_KERNEL_MIN={low} is above {kernel.release}"
    high = scalars.get("BUILD_EXCLUSIVE_KERNEL_MAX", "")
    if high and _version(kernel.release) > _version(high):
        return f"BUILD_EXCLUSIVE_KERNEL_MAX={high} is below {kernel.release}"
    arches = scalars.get("BUILD_EXCLUSIVE_ARCH", "")
    if arches and not _bash_regex(arch, arches):
        return f'BUILD_EXCLUSIVE_ARCH="{arches}" does not match {arch}'
    wanted = scalars.get("BUILD_EXCLUSIVE_CONFIG", "").split()
    if wanted:
        config = _kernel_config(kernel)
        for option in wanted:
            negated = option.startswith("!")
            present = config.get(option.lstrip("!"), "n") in ("y", "m")
            if present == negated:
                state = "set" if present else "not set"
                return (
                    f"BUILD_EXCLUSIVE_CONFIG={option} but {option.lstrip('!')} is {state} in {kernel.release}"
                )
    return ""


def _bash_regex(text: str, pattern: str) -> bool:
    """``[[ text =~ pattern ]]``, as dkms tests it: bash's own extended regular expressions."""
    done = subprocess.run(
        ["bash", "-c", '[[ "$1" =~ $2 ]]', "bash", text, pattern],
        capture_output=True,
        check=False,
        timeout=10,
    )
    return done.returncode == 0


def _version(text: str) -> tuple[int, ...]:
    """The leading dotted numbers of a kernel release, for BUILD_EXCLUSIVE_KERNEL_MIN/MAX."""
    match = re.match(r"\d+(?:\.\d+)*", text)
    return tuple(int(part) for part in match.group(0).split(".")) if match else ()


def _kernel_config(kernel: KernelTarget) -> dict[str, str]:
    path = kernel.kbuild_dir / ".config"
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return {}
    return dict(re.findall(r"^(CONFIG_\w+)=(.*)$", text, re.M))

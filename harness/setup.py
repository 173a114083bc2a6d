"""One-step set-up for a fresh Debian 12 machine, then the main job or the tests.

Run with the system Python from the repository root, before any virtualenv exists::

    python3 -m harness.setup demo    # install what is missing, then the hello-world run
    python3 -m harness.setup test    # install what is missing, then ruff, mypy and the whole test suite

Every step checks first and only does what is missing, so both commands are idempotent and a
second run goes straight to the job. This file deliberately uses only the standard library:
it is what installs the dependencies.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".venv"

#: Debian packages the harness needs on the host, with why.
APT_PACKAGES = [
    "build-essential",  # make and gcc for kbuild
    "gcc-12",  # the compiler Debian's 6.1 and 6.12 headers name
    "bc",
    "bison",
    "flex",
    "libelf-dev",
    "libssl-dev",  # kbuild's host tools
    "dwarves",  # pahole: 6.12 headers ship a vmlinux, so kbuild generates BTF
    "kmod",  # depmod/modinfo as the reference and inside the guest
    "cpio",  # guest initramfs
    "busybox-static",  # guest userland
    "qemu-system-x86",
    "qemu-utils",
    "xz-utils",
    "zstd",
    "ca-certificates",
    "python3-venv",
    "locales",  # localedef: output tests compile a strict en_US.UTF-8 locale privately (LOCPATH)
    "mmdebstrap",  # per-suite build environments (bullseye, trixie, sid toolchains)
    "bubblewrap",  # entering them: no network, host paths bound at their own paths
    "patch",  # a DKMS package's PATCH[] files, applied to its build copy
    "chromium",  # the HTML report's test loads it in a real headless browser
]
#: Kernel targets (and, through 'kmh kernel add', their suites' build environments) the test
#: suite uses: 5.10, 6.1, 6.12 (bookworm-backports and trixie), 7.3 and 7.2.
KERNELS = ["bookworm", "bookworm-backports", "bullseye", "trixie", "trixie-backports", "sid"]
#: Kernels built from source for the tests (KASAN, kmemleak, lockdep, KUnit): the first test run
#: on a fresh machine builds them (~10-15 min each on 2 cores), later runs find them in the store.
DEBUG_KERNELS = ["bookworm:debug", "trixie:debug"]


def say(message: str) -> None:
    print(f"setup: {message}", file=sys.stderr, flush=True)


def run(*command: str, **kwargs) -> None:
    subprocess.run(command, check=True, **kwargs)


def missing_packages(packages: list[str]) -> list[str]:
    missing = []
    for package in packages:
        status = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True
        ).stdout
        if "install ok installed" not in status:
            missing.append(package)
    return missing


def ensure_apt_packages(packages: list[str]) -> None:
    missing = missing_packages(packages)
    if not missing:
        return
    say(f"installing Debian packages: {' '.join(missing)}")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(*sudo, "apt-get", "update", "-q", env=env)
    run(*sudo, "apt-get", "install", "-y", "-q", "--no-install-recommends", *missing, env=env)


def ensure_venv() -> Path:
    """Create .venv and install the package (editable) when pyproject.toml changed."""
    python = VENV / "bin" / "python"
    if not python.exists():
        say("creating .venv")
        run(sys.executable, "-m", "venv", str(VENV))
    stamp = VENV / ".kmh-installed"
    digest = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text() != digest:
        say("installing the Python package and its dependencies into .venv")
        run(str(python), "-m", "pip", "install", "-q", "--upgrade", "pip")
        run(str(python), "-m", "pip", "install", "-q", "-e", f"{REPO}[dev]")
        stamp.write_text(digest)
    return VENV / "bin"


def ensure_kernels(bin_dir: Path) -> None:
    for spec in KERNELS:
        # 'kernel add' returns at once when the target is already in the store.
        listed = subprocess.run([str(bin_dir / "kmh"), "kernel", "list"], capture_output=True, text=True)
        if f" {spec} " in listed.stdout:
            continue
        run(str(bin_dir / "kmh"), "kernel", "add", spec)


def ensure_debug_kernels(bin_dir: Path) -> None:
    for spec in DEBUG_KERNELS:
        # Returns at once when the target is built; otherwise builds it, with progress lines.
        run(str(bin_dir / "kmh"), "kernel", "add", spec)


def extra_setup(bin_dir: Path) -> None:
    """Set-up steps of optional backends, registered by their packages."""
    vagrant_setup = REPO / "vm" / "box" / "setup.sh"
    if vagrant_setup.exists() and os.environ.get("KMH_SKIP_VAGRANT") != "1":
        run("bash", str(vagrant_setup))


def main(argv: list[str]) -> int:
    job = argv[0] if argv else "demo"
    if job not in ("demo", "test", "install"):
        print("usage: python3 -m harness.setup [demo|test|install] [ARGS...]", file=sys.stderr)
        return 2
    if shutil.which("apt-get") is None:
        print(
            "setup: this set-up needs Debian (apt-get); install the packages listed in README.md",
            file=sys.stderr,
        )
        return 2
    ensure_apt_packages(APT_PACKAGES)
    bin_dir = ensure_venv()
    ensure_kernels(bin_dir)
    if job == "test":
        ensure_debug_kernels(bin_dir)
        extra_setup(bin_dir)
    os.chdir(REPO)
    if job == "install":
        return 0
    if job == "demo":
        command = [str(bin_dir / "kmh"), "run", "modules/hello.toml", *argv[1:]]
        return subprocess.run(command).returncode
    ruff = subprocess.run([str(bin_dir / "ruff"), "check", "harness", "tests", "bench"])
    if ruff.returncode != 0:
        return ruff.returncode
    # The package ships py.typed, so its annotations are checked ([tool.mypy] in pyproject.toml).
    mypy = subprocess.run([str(bin_dir / "mypy")])
    if mypy.returncode != 0:
        return mypy.returncode
    return subprocess.run([str(bin_dir / "pytest"), *argv[1:]]).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

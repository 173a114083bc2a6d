"""``kmh box build``: a Vagrant libvirt box made from Debian packages only, cached by its inputs.

Recipe (measured in the project's Vagrant note): mmdebstrap a Debian rootfs with the kernel and
its *exact* matching headers, build-essential, kmod and openssh-server; customise it with
``vm/box/customize``; copy the kernel and initrd out (the box boots them directly, so the image
needs no boot loader); ``mkfs.ext4 -d`` the tree into a sparse disk, convert it to qcow2, and tar
it with ``metadata.json``, the box's own Vagrantfile and a freshly generated SSH key. Then
``vagrant box add`` it into kmh's private Vagrant home.

The box is rebuilt only when asked or when an input changes: the Debian kernel the suite resolves
to today, the package list and the recipe files are hashed into a stamp kept beside the box.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from plumbum import local

from harness.errors import HarnessError
from harness.kernels.apt import host_mirrors
from harness.kernels.debian import KernelPackages, resolve
from harness.kernels.store import KernelStore
from harness.kernels.unpack import say
from harness.paths import cache_root
from harness.vm.vagrant.daemons import check_daemons
from harness.vm.vagrant.env import BOX_RECIPE_DIR, require_tool, vagrant, vagrant_home
from harness.vm.vagrant.keys import check_key_usable, generate_key
from harness.vm.vagrant.pool import delete_box_volumes

Progress = Callable[[str], None]

#: Bumped when the recipe changes in a way the hashed files do not show.
RECIPE_VERSION = 1
#: A box is a bookworm system, so it runs bookworm's kernels (the suite's current one).
BOX_SUITES = ("bookworm", "bookworm-backports")
#: What a module developer expects in "a full distribution VM", besides the kernel and headers.
BOX_PACKAGES = (
    "systemd-sysv",
    "udev",
    "openssh-server",
    "sudo",
    "kmod",
    "iproute2",
    "procps",
    "build-essential",
    "initramfs-tools",
)
DISK_GIB = 8
#: The files of ``vm/box`` that shape the box (the set-up script there does not).
RECIPE_FILES = ("essential", "customize", "Vagrantfile")
BOX_FILES = ("metadata.json", "Vagrantfile", "info.json", "box.img", "vmlinuz", "initrd.img", "vagrant_key")


@dataclass(frozen=True)
class Box:
    """A kmh box added to Vagrant: what ``VagrantVM`` boots."""

    name: str
    suite: str
    #: ``uname -r`` inside the box: the kernel it boots and has headers for.
    release: str
    inputs: str
    built: str
    #: Seconds each build step took, for the README's cost table.
    timings: dict[str, float]

    @property
    def directory(self) -> Path:
        """The unpacked box in Vagrant's home (kernel, initrd, key, box Vagrantfile)."""
        return vagrant_home() / "boxes" / self.name.replace("/", "-VAGRANTSLASH-") / "0" / "libvirt"

    @property
    def kernel(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd.img"

    @property
    def key(self) -> Path:
        return self.directory / "vagrant_key"

    def present(self) -> bool:
        return all((self.directory / name).is_file() for name in ("metadata.json", "vmlinuz", "vagrant_key"))


def box_name(suite: str) -> str:
    return f"kmh/{suite}"


class BoxBuilder:
    """Builds (or finds) the box of one Debian suite."""

    def __init__(self, suite: str = "bookworm", *, progress: Progress | None = say) -> None:
        if suite not in BOX_SUITES:
            raise HarnessError(f"unknown suite {suite!r} for a box; use one of: {', '.join(BOX_SUITES)}")
        self.suite = suite
        self.name = box_name(suite)
        self.progress = progress or (lambda _message: None)
        self.state_dir = cache_root() / "vagrant" / "boxes"
        self.stamp = self.state_dir / f"{suite}.json"

    # -- cache ------------------------------------------------------------------------------

    def installed(self) -> Box | None:
        """The box as last built, if its stamp and its files are both there."""
        try:
            data = json.loads(self.stamp.read_text())
            box = Box(**data)
        except (OSError, ValueError, TypeError):
            return None
        return box if box.present() else None

    def ensure(self, *, rebuild: bool = False, check_inputs: bool = True) -> Box:
        """The box, built first if missing, asked for, or (with CHECK_INPUTS) out of date."""
        with self._locked():
            current = self.installed()
            if current and not rebuild and not check_inputs:
                return current
            packages = self._resolve_kernel()
            inputs = self._inputs(packages)
            if current and not rebuild and current.inputs == inputs:
                self.progress(f"box {self.name} is up to date (kernel {current.release})")
                return current
            if current and not rebuild:
                self.progress(f"box {self.name} is out of date (inputs changed): rebuilding")
            return self._build(packages, inputs)

    # -- build ------------------------------------------------------------------------------

    def _resolve_kernel(self) -> KernelPackages:
        store = KernelStore()
        self.progress(f"resolving the kernel of {self.suite}")
        store.archive.update()
        return resolve(store.archive, self.suite)

    def _inputs(self, packages: KernelPackages) -> str:
        recipe = {
            name: hashlib.sha256((BOX_RECIPE_DIR / name).read_bytes()).hexdigest() for name in RECIPE_FILES
        }
        description = {
            "version": RECIPE_VERSION,
            "suite": self.suite,
            "kernel": list(packages.packages),
            "packages": list(BOX_PACKAGES),
            "recipe": recipe,
            "disk": DISK_GIB,
        }
        return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:16]

    def _build(self, packages: KernelPackages, inputs: str) -> Box:
        if sys.platform != "linux" or _euid() != 0:
            raise HarnessError("'kmh box build' must run as root (mmdebstrap installs into a chroot)")
        check_daemons()
        for tool, package in (
            ("mmdebstrap", "mmdebstrap"),
            ("mkfs.ext4", "e2fsprogs"),
            ("qemu-img", "qemu-utils"),
        ):
            require_tool(tool, package)
        work = cache_root() / "vagrant" / "build" / self.suite
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        timings: dict[str, float] = {}
        try:
            staging = work / "box"
            staging.mkdir()
            key = generate_key(staging / "vagrant_key")
            check_key_usable(key)
            rootfs = work / "rootfs"
            with self._step("debootstrap", timings, f"installing Debian {self.suite} with {packages.image}"):
                self._mmdebstrap(rootfs, packages, key.with_name(key.name + ".pub"))
            with self._step("image", timings, f"making the {DISK_GIB} GiB disk image"):
                shutil.copy(rootfs / "boot" / f"vmlinuz-{packages.release}", staging / "vmlinuz")
                shutil.copy(rootfs / "boot" / f"initrd.img-{packages.release}", staging / "initrd.img")
                raw = work / "disk.raw"
                local["mkfs.ext4"][
                    "-q", "-F", "-L", "kmh-root", "-d", str(rootfs), str(raw), f"{DISK_GIB}G"
                ]()
                shutil.rmtree(rootfs)
                local["qemu-img"]["convert", "-O", "qcow2", str(raw), str(staging / "box.img")]()
                raw.unlink()
            self._write_metadata(staging, packages)
            box_file = work / f"kmh-{self.suite}.box"
            with self._step("package", timings, "packing the box"):
                local["tar"]["-cf", str(box_file), "-C", str(staging), *BOX_FILES]()
            with self._step("add", timings, f"adding it to Vagrant as {self.name}"):
                delete_box_volumes(self.name)
                vagrant(["box", "add", "--force", "--name", self.name, str(box_file)], timeout=900)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        box = Box(
            name=self.name,
            suite=self.suite,
            release=packages.release,
            inputs=inputs,
            built=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            timings=timings,
        )
        if not box.present():
            raise HarnessError(f"'vagrant box add' reported success but {box.directory} is incomplete")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.stamp.write_text(json.dumps(asdict(box), indent=2) + "\n")
        total = sum(timings.values())
        self.progress(f"box {self.name} ready (kernel {box.release}) in {total:.0f} s")
        return box

    def _mmdebstrap(self, rootfs: Path, packages: KernelPackages, public_key: Path) -> None:
        mirror, security = host_mirrors()
        sources = [
            f"deb {mirror} bookworm main",
            f"deb {mirror} bookworm-updates main",
            f"deb {security} bookworm-security main",
        ]
        if self.suite != "bookworm":
            sources.append(f"deb {mirror} {self.suite} main")
        include = [*BOX_PACKAGES, *(f"{name}={version}" for name, version in packages.packages)]
        command = local["mmdebstrap"][
            "--variant=apt",
            "--mode=root",
            f"--include={','.join(include)}",
            '--aptopt=Acquire::Languages "none"',
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-include=/usr/share/doc/*/copyright",
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
            f'--essential-hook={shlex.quote(str(BOX_RECIPE_DIR / "essential"))} "$1"',
            f'--customize-hook={shlex.quote(str(BOX_RECIPE_DIR / "customize"))} "$1"',
            "bookworm",
            str(rootfs),
            *sources,
        ]
        log: list[str] = []
        with local.env(KMH_BOX_PUBKEY=str(public_key)):
            process = command.popen(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert process.stdout is not None
        for line in process.stdout:
            log.append(line.rstrip())
            if line.startswith("I: "):  # mmdebstrap's own step lines: few, and they show progress
                self.progress(f"  {line[3:].rstrip()}")
        if process.wait() != 0:
            raise HarnessError(f"mmdebstrap failed (exit {process.returncode})", details="\n".join(log[-40:]))

    def _write_metadata(self, staging: Path, packages: KernelPackages) -> None:
        metadata = {"provider": "libvirt", "format": "qcow2", "virtual_size": DISK_GIB}
        (staging / "metadata.json").write_text(json.dumps(metadata) + "\n")
        info = {"kernel": packages.release, "suite": self.suite, "built_by": "kmh box build"}
        (staging / "info.json").write_text(json.dumps(info) + "\n")
        shutil.copy(BOX_RECIPE_DIR / "Vagrantfile", staging / "Vagrantfile")

    @contextmanager
    def _step(self, name: str, timings: dict[str, float], message: str) -> Iterator[None]:
        self.progress(f"{message} ...")
        start = time.monotonic()
        yield
        timings[name] = round(time.monotonic() - start, 1)
        self.progress(f"  done in {timings[name]:.0f} s")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One build per suite at a time (parallel test sessions share the cache)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / f"{self.suite}.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def box_for(spec: str, *, progress: Progress | None = say) -> Box:
    """The box that runs the kernel SPEC: a suite (built if needed) or the exact release of a built box.

    A box carries one kernel, its suite's current one, so an exact release is accepted only when
    a built box runs it (``kmh box build --kernel SUITE`` makes one).
    """
    suite = spec.partition(":")[0]
    if suite in BOX_SUITES:
        return BoxBuilder(suite, progress=progress).ensure(check_inputs=False)
    boxes = [box for name in BOX_SUITES if (box := BoxBuilder(name, progress=None).installed())]
    for box in boxes:
        if box.release == spec:
            return box
    have = ", ".join(f"{box.suite} ({box.release})" for box in boxes) or "none yet"
    raise HarnessError(
        f"no Vagrant box runs kernel {spec!r}; boxes run their suite's kernel: {have}. "
        f"Use a suite ({', '.join(BOX_SUITES)}) with the Vagrant backend"
    )


def remove_box(suite: str) -> bool:
    """Remove the suite's box from Vagrant, libvirt's pool and the stamp; False if there was none."""
    builder = BoxBuilder(suite, progress=None)
    box = builder.installed()
    builder.stamp.unlink(missing_ok=True)
    if box is None:
        return False
    vagrant(["box", "remove", "--force", "--all", box.name], timeout=120)
    delete_box_volumes(box.name)
    return True


def _euid() -> int:
    import os

    return os.geteuid()

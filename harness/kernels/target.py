"""KernelTarget: one unpacked Debian kernel the harness can build against and boot.

A target is a plain value: the paths inside its unpacked root. It is created by the store
(:mod:`harness.kernels.store`) and passed along the pipeline (build, elf checks, VM) rather than
re-derived, so every stage agrees on which kernel it is talking about.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class KernelTarget:
    """A Debian kernel unpacked under ``root`` (a private tree, never the host's /boot or /lib/modules)."""

    #: The kernel release string, as ``uname -r`` prints it (e.g. ``6.1.0-56-amd64``).
    release: str
    #: The directory the Debian packages were unpacked into.
    root: Path
    #: The Debian version of the image package (e.g. ``6.1.192-2``).
    version: str = ""
    #: The suite it came from (``bookworm``, ``bookworm-backports``, ...).
    suite: str = ""
    #: The flavour (``amd64``, ``cloud-amd64``, ``rt-amd64``).
    flavour: str = "amd64"
    #: The names of the .deb packages it was made from.
    packages: tuple[str, ...] = field(default=())
    #: Debian packages a kbuild for this kernel needs besides the target itself (its compiler,
    #: the libraries of its kbuild programs); a build environment of its suite provides them.
    toolchain: tuple[str, ...] = field(default=())
    #: Boot the compressed image (bzImage) rather than vmlinux: for kernels whose PVH entry does
    #: not come up under QEMU (the small debug config resets before its console is up).
    boot_compressed: bool = False

    @property
    def name(self) -> str:
        """The name users pass to ``--kernel``: the release string."""
        return self.release

    @property
    def vmlinuz(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.release}"

    @property
    def vmlinux(self) -> Path:
        """The uncompressed ELF kernel (PVH entry), extracted once at ``kernel add`` time.

        QEMU boots it directly with ``-kernel``, which saves the in-guest decompression (~3 s
        under TCG).
        """
        return self.root / "vmlinux"

    @property
    def boot_image(self) -> Path:
        """What QEMU's ``-kernel`` gets: vmlinux (PVH entry, no decompression), or the bzImage."""
        return self.vmlinuz if self.boot_compressed else self.vmlinux

    @property
    def config(self) -> Path:
        return self.root / "boot" / f"config-{self.release}"

    @property
    def system_map(self) -> Path:
        return self.root / "boot" / f"System.map-{self.release}"

    @property
    def kbuild_dir(self) -> Path:
        """The directory to pass as ``make -C`` for out-of-tree builds."""
        return self.root / "usr" / "src" / f"linux-headers-{self.release}"

    @property
    def symvers(self) -> Path:
        """Module.symvers of vmlinux and the in-tree modules: names, CRCs, GPL flags, namespaces."""
        return self.kbuild_dir / "Module.symvers"

    @property
    def modules_dir(self) -> Path:
        """``lib/modules/<release>`` inside the unpacked root: the target's own module tree."""
        return self.root / "lib" / "modules" / self.release

    @property
    def major_minor(self) -> tuple[int, int]:
        """The kernel version as (major, minor), e.g. (6, 1); templates use it for API differences."""
        major, minor = self.release.split(".")[:2]
        return int(major), int("".join(ch for ch in minor if ch.isdigit()))

    # -- persistence ---------------------------------------------------------------------------

    METADATA = "target.json"

    def save(self) -> None:
        """Record what the target is, so the store can list it without re-reading packages."""
        data: dict[str, object] = {
            "release": self.release,
            "version": self.version,
            "suite": self.suite,
            "flavour": self.flavour,
            "packages": list(self.packages),
            "toolchain": list(self.toolchain),
        }
        if self.boot_compressed:
            data["boot_compressed"] = True
        (self.root / self.METADATA).write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, root: Path) -> KernelTarget:
        data = json.loads((root / cls.METADATA).read_text())
        return cls(
            release=data["release"],
            root=root,
            version=data.get("version", ""),
            suite=data.get("suite", ""),
            flavour=data.get("flavour", "amd64"),
            packages=tuple(data.get("packages", ())),
            toolchain=tuple(data.get("toolchain", ())),
            boot_compressed=bool(data.get("boot_compressed", False)),
        )

"""Real DKMS source trees: Debian's ``*-dkms`` packages, fetched with ``apt-get download`` through
the store's own apt view and unpacked once into the cache (``dpkg-deb -x``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness.kernels.store import KernelStore
from harness.paths import cache_root

#: Packages that build in seconds, from the suite whose versions still build on 6.1 and 6.12.
#: openrazer-driver is kept as one plain make cannot build for 6.1 either (an API change):
#: kmh must fail where make fails, too.
PACKAGES = (
    "acpi-call-dkms", "bbswitch-dkms", "ddcci-dkms", "digimend-dkms", "dm-writeboost-dkms",
    "tp-smapi-dkms", "v4l2loopback-dkms", "openrazer-driver-dkms",
)  # fmt: skip
SUITE = "trixie"


def unpacked(store: KernelStore, package: str) -> Path:
    """The package's /usr/src/<name>-<version> tree, downloaded and unpacked on first use."""
    view = store.archive.view(SUITE)
    version = view.versions(package)[0].version
    root = cache_root() / "dkms-sources" / f"{package}_{version.replace(':', '%3a')}"
    if not (root / "usr" / "src").is_dir():
        (deb,) = view.download([(package, version)])
        partial = root.with_name(root.name + ".partial")
        subprocess.run(["rm", "-rf", str(partial)], check=True)
        partial.mkdir(parents=True)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(partial)], check=True)
        partial.rename(root)
    (tree,) = [entry for entry in (root / "usr" / "src").iterdir() if (entry / "dkms.conf").is_file()]
    return tree


@pytest.fixture(scope="session")
def dkms_trees(kernel_store: KernelStore) -> dict[str, Path]:
    return {package: unpacked(kernel_store, package) for package in PACKAGES}

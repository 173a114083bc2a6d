"""Every Debian suite from bullseye to experimental, read from the real archive (package lists
only: nothing here downloads a kernel)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from harness.errors import HarnessError
from harness.kernels.apt import SUITE_GROUPS
from harness.kernels.debian import FLAVOURS, parse_spec, resolve, search
from harness.kernels.store import KernelStore
from harness.paths import REPO_ROOT


@pytest.fixture(scope="module")
def archive():  # type: ignore[no-untyped-def]
    return KernelStore().archive


def test_search_offers_every_suite_with_every_flavour(archive):
    offers = {offer.suite: offer for offer in search(archive)}
    assert list(offers) == list(SUITE_GROUPS)
    for offer in offers.values():
        assert offer.flavours == FLAVOURS, offer
        assert offer.release.endswith("-amd64") and offer.version
    assert offers["bullseye"].release.startswith("5.10.")
    assert offers["bookworm"].release.startswith("6.1.")
    assert offers["trixie"].release.startswith("6.12.") and "+deb13" in offers["trixie"].release
    assert offers["sid"].release.startswith("7.")
    # bookworm-security carries a newer 6.12 beside bookworm's 6.1.
    assert offers["bookworm-security"].release.startswith("6.12.")


def test_7x_kernels_resolve_to_their_split_packages(archive):
    sid = resolve(archive, "sid")
    names = [name for name, _ in sid.packages]
    for prefix in ("linux-image-", "linux-headers-", "linux-binary-", "linux-modules-", "linux-base-"):
        assert f"{prefix}{sid.release}" in names
    assert any(name.startswith("linux-kbuild-") for name in names)
    assert any(name.startswith("gcc-16") for name in sid.toolchain)
    trixie = resolve(archive, "trixie:cloud-amd64")
    assert trixie.release.endswith("+deb13-cloud-amd64") and trixie.flavour == "cloud-amd64"
    assert not any(name.startswith("linux-binary-") for name, _ in trixie.packages)
    assert "gcc-14" in trixie.toolchain


def test_exact_releases_find_their_suite(archive):
    experimental = search(archive, ("experimental",))[0]
    assert parse_spec(experimental.release) == ("", experimental.release)
    assert resolve(archive, experimental.release).suite == "experimental"
    bullseye = resolve(archive, "bullseye")
    assert resolve(archive, bullseye.release).suite == "bullseye"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("trixie:arm64", "unknown flavour 'arm64' for trixie: flavours are amd64, cloud-amd64, rt-amd64"),
        ("buster", "unknown kernel spec 'buster': use a suite (bullseye, bookworm,"),
    ],
)
def test_unknown_suite_or_flavour_is_one_line_listing_what_exists(spec, message):
    with pytest.raises(HarnessError, match="^" + message.replace("(", r"\(")):
        parse_spec(spec)
    result = subprocess.run(
        [sys.executable, "-m", "harness.cli", "kernel", "add", spec],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"kmh: error: {message}")
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_unreachable_archive_is_a_clear_error_naming_the_suite(tmp_path):
    env = dict(
        os.environ,
        KMH_CACHE=str(tmp_path),
        KMH_DEBIAN_MIRROR="http://127.0.0.1:9/debian",
        KMH_DEBIAN_SECURITY_MIRROR="http://127.0.0.1:9/debian-security",
    )
    result = subprocess.run(
        [sys.executable, "-m", "harness.cli", "kernel", "search", "trixie"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=300,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("kmh: error: cannot read the Debian archive's trixie package lists")
    assert "Traceback" not in result.stderr

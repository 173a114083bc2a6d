"""Each pitfall of the Vagrant note ends in a clear HarnessError, fast, instead of a hang.

All but the last fail before ``vagrant up``; the last lets ``vagrant up`` fail for real and checks
that nothing is left behind.
"""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.vm.vagrant import daemons
from harness.vm.vagrant.access import check_qemu_can_reach
from harness.vm.vagrant.box import Box
from harness.vm.vagrant.keys import check_key_usable
from harness.vm.vagrant.machine import VagrantVM

pytestmark = pytest.mark.vagrant


def _fails_fast(vm: VagrantVM, match: str, within: float = 20.0) -> None:
    start = time.monotonic()
    with pytest.raises(HarnessError, match=match):
        vm.start()
    assert time.monotonic() - start < within
    assert vm.project is None  # nothing of the half-made VM remains


def test_daemons_not_running(
    vagrant_box: Box, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_leftovers: Callable[[], None]
) -> None:
    # Point the check at sockets nobody serves: what a machine without the daemons looks like.
    monkeypatch.setattr(daemons, "SOCKETS", {"libvirtd": tmp_path / "a", "virtlogd": tmp_path / "b"})
    _fails_fast(VagrantVM(box=vagrant_box, progress=None), r"libvirtd and virtlogd not running.*start them")
    no_leftovers()


def test_box_files_unreadable_by_qemu(
    vagrant_box: Box, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_leftovers: Callable[[], None]
) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    _fails_fast(
        VagrantVM(box=vagrant_box, progress=None), r"QEMU runs as '[\w-]+' and cannot read .*chmod o\+x"
    )
    no_leftovers()


def test_qemu_reachability_check_passes_for_public_dirs(tmp_path: Path) -> None:
    public = Path(tempfile.mkdtemp(dir="/var/tmp"))
    try:
        public.chmod(0o755)
        (public / "f").write_text("x")
        check_qemu_can_reach(public / "f")
    finally:
        subprocess.run(["rm", "-rf", str(public)], check=True)


def test_unusable_key_is_refused(tmp_path: Path) -> None:
    # An OpenSSH-format RSA key: net-ssh on OpenSSL 3 cannot load it, and Vagrant would just retry.
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-N", "", "-f", str(tmp_path / "rsa")], check=True)
    with pytest.raises(HarnessError, match="Vagrant cannot use the SSH key .*ed25519"):
        check_key_usable(tmp_path / "rsa")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "ed")], check=True)
    check_key_usable(tmp_path / "ed")


def test_box_key_is_usable(vagrant_box: Box) -> None:
    check_key_usable(vagrant_box.key)


def test_forward_port_taken(vagrant_box: Box, no_leftovers: Callable[[], None]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        _fails_fast(
            VagrantVM(box=vagrant_box, ssh_port=port, progress=None), f"127.0.0.1:{port} is already taken"
        )
    no_leftovers()


def test_failed_up_leaves_nothing_behind(vagrant_box: Box, no_leftovers: Callable[[], None]) -> None:
    """A guest that cannot answer in time: vagrant up fails, and the domain and its disk go away."""
    vm = VagrantVM(box=vagrant_box, boot_timeout=1, progress=None)
    with pytest.raises(HarnessError, match="did not answer SSH within 1 s|vagrant up"):
        vm.start()
    assert vm.project is None
    no_leftovers()

"""Fast tests of the VM stage's small parts: cpio writer, kmsg records, channel framing, accel choice."""

from __future__ import annotations

import socket
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.vm import accel, cpio
from harness.vm.channel import Channel, ChannelClosed, ChannelTimeout
from harness.vm.kmsg import parse_record


def test_cpio_extracts_with_real_cpio(tmp_path: Path) -> None:
    archive = tmp_path / "layer.cpio"
    with archive.open("wb") as out:
        cpio.write_archive(
            out,
            [
                cpio.regular("kmh/agent", b"\x7fELF binary\0data", 0o755),
                cpio.regular("etc/odd", b"abc"),  # sizes not multiple of 4 exercise padding
                cpio.symlink("sbin/insmod", "/bin/kmod"),
                cpio.directory("tmp", 0o1777),
            ],
        )
    dest = tmp_path / "x"
    dest.mkdir()
    subprocess.run(["cpio", "-idm", "--quiet", "-F", str(archive)], cwd=dest, check=True)
    assert (dest / "kmh/agent").read_bytes() == b"\x7fELF binary\0data"
    assert stat.S_IMODE((dest / "kmh/agent").stat().st_mode) == 0o755
    assert (dest / "etc/odd").read_bytes() == b"abc"
    assert (dest / "sbin/insmod").readlink() == Path("/bin/kmod")
    assert (dest / "kmh").is_dir(), "parents are added"


def test_cpio_is_deterministic() -> None:
    import io

    entries = [cpio.regular("b", b"1"), cpio.regular("a/c", b"22")]
    first, second = io.BytesIO(), io.BytesIO()
    cpio.write_archive(first, entries)
    cpio.write_archive(second, list(reversed(entries)))
    assert first.getvalue() == second.getvalue()
    assert len(first.getvalue()) % 4 == 0


def test_kmsg_record() -> None:
    record = parse_record(b"4,1203,5140900,-;kmh: tab\\x09here\n SUBSYSTEM=pci\n DEVICE=+pci:0000\n")
    assert record is not None
    assert (record.level, record.seq, record.usec) == (4, 1203, 5140900)
    assert record.text == "kmh: tab\there"
    assert record.line() == "[    5.140900] kmh: tab\there"
    assert parse_record(b"garbage") is None


def _pair() -> tuple[Channel, socket.socket]:
    host, guest = socket.socketpair()
    return Channel(host), guest


def test_channel_frames_split_anywhere() -> None:
    channel, guest = _pair()
    payload = bytes(range(256)) * 5000
    frame = b"O" + len(payload).to_bytes(4, "little") + payload + b"X\x01\x00\x00\x000"

    def trickle() -> None:
        for i in range(0, len(frame), 7777):
            guest.sendall(frame[i : i + 7777])

    threading.Thread(target=trickle).start()
    deadline = time.monotonic() + 10
    assert channel.receive(deadline) == (b"O", payload)
    assert channel.receive(deadline) == (b"X", b"0")


def test_channel_timeout_and_eof() -> None:
    channel, guest = _pair()
    started = time.monotonic()
    with pytest.raises(ChannelTimeout):
        channel.receive(time.monotonic() + 0.2)
    assert time.monotonic() - started < 1
    guest.close()
    with pytest.raises(ChannelClosed):
        channel.receive(time.monotonic() + 1)


def test_channel_send() -> None:
    channel, guest = _pair()
    channel.send(b"E", b"true\0")
    assert guest.recv(100) == b"E\x05\x00\x00\x00true\0"


def test_accel_forced_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KMH_CACHE", str(tmp_path))
    assert accel.choose("/usr/bin/true", "tcg").name == "tcg"
    with pytest.raises(HarnessError, match="unknown accelerator"):
        accel.choose("/usr/bin/true", "hvf")
    accel.record("/usr/bin/true", "tcg", "CPU has no vmx/svm")
    choice = accel.choose("/usr/bin/true")
    assert (choice.name, choice.reason) == ("tcg", "cached: CPU has no vmx/svm")
    assert "tcg" in str(choice)


def test_accel_static_check_gives_a_reason_or_a_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KMH_CACHE", str(tmp_path))
    problem = accel.static_kvm_check()
    choice = accel.choose("/usr/bin/true")
    if problem:
        assert choice.name == "tcg" and choice.reason == problem
    else:
        assert choice.name == "kvm" and choice.trial


def test_plain_command_strings_skip_the_shell() -> None:
    from harness.vm.guest import command_argv as _argv

    assert _argv("insmod /tmp/x.ko param=1") == ["insmod", "/tmp/x.ko", "param=1"]
    assert _argv(["printf", "%s", "a b"]) == ["printf", "%s", "a b"]
    for shell in ("FOO=1 insmod x", "echo hi", "cd /tmp", "lsmod | grep x", "ls ~", "a $b", "x > y", "true"):
        assert _argv(shell) == ["/bin/sh", "-c", shell], shell

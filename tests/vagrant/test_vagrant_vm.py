"""The Vagrant backend end to end: one real box VM builds, installs, loads and unloads modules.

One VM serves the whole module (``vagrant up`` costs about a minute under TCG); its teardown
checks that the domain and its volume are gone and that the host's interfaces, routes and libvirt
networks are as they were before it came up. The oops test poisons the VM, so it runs last but one.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.templates import write_module
from harness.vm.backend import VMBackend
from harness.vm.vagrant.box import Box
from harness.vm.vagrant.machine import VagrantVM
from tests.vagrant.vagrant_helpers import host_network_state, libvirt_state

pytestmark = pytest.mark.vagrant

NETWORK_BEFORE: dict[str, object] = {}
LIBVIRT_BEFORE: list[tuple[set[str], set[str]]] = []


@pytest.fixture(scope="module")
def vm(vagrant_box: Box) -> Iterator[VagrantVM]:
    NETWORK_BEFORE.update(host_network_state())
    libvirt_before = libvirt_state(vagrant_box)
    LIBVIRT_BEFORE.append(libvirt_before)
    machine = VagrantVM(box=vagrant_box)
    try:
        machine.start()
        yield machine
    finally:
        machine.close()
        assert libvirt_state(vagrant_box) == libvirt_before, "the VM's domain or volume was left behind"
        assert host_network_state() == NETWORK_BEFORE, "the host's network changed after the Vagrant run"
        print(f"Vagrant VM timings: {machine.timings}")


def test_is_a_vm_backend(vm: VagrantVM) -> None:
    assert isinstance(vm, VMBackend)


def test_libvirt_sees_the_vm(vm: VagrantVM, vagrant_box: Box) -> None:
    """The leftover check after the module is not vacuous: the VM's domain and disk are visible."""
    domains, volumes = libvirt_state(vagrant_box)
    assert vm.domain_id in domains - LIBVIRT_BEFORE[0][0]
    assert volumes - LIBVIRT_BEFORE[0][1], "the VM's disk volume is not in libvirt's pool"


def test_guest_is_the_box(vm: VagrantVM, vagrant_box: Box) -> None:
    result = vm.run("uname -r; id -u; cat /proc/1/comm")
    assert result.ok, result.stderr
    assert result.stdout.split() == [vagrant_box.release, "0", "systemd"]
    assert vm.run(["test", "-d", f"/lib/modules/{vagrant_box.release}/build"]).ok


def test_host_network_unchanged_while_running(vm: VagrantVM) -> None:
    assert host_network_state() == NETWORK_BEFORE


def test_guest_has_no_way_out(vm: VagrantVM) -> None:
    """restrict=on: the guest cannot even reach the host through QEMU's gateway (its forward port)."""
    assert vm.port is not None
    probe = f"timeout 5 bash -c 'exec 3<>/dev/tcp/10.0.2.2/{vm.port}'"
    assert vm.run(probe, timeout=30).exit_code != 0


def test_run_reports_exit_code_and_stderr(vm: VagrantVM) -> None:
    result = vm.run("echo out; echo err >&2; exit 3")
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert result.crash is None


def test_put_and_dmesg_since_mark(vm: VagrantVM, tmp_path: Path) -> None:
    payload = tmp_path / "payload.bin"
    payload.write_bytes(bytes(range(256)) * 4)
    vm.put(payload, "/root/deep/dir/payload.bin", mode=0o600)
    assert vm.run("stat -c %a /root/deep/dir/payload.bin").stdout.strip() == "600"
    assert (
        vm.run("md5sum < /root/deep/dir/payload.bin").stdout.split()[0]
        == subprocess.run(["md5sum"], input=payload.read_bytes(), capture_output=True, check=True)
        .stdout.split()[0]
        .decode()
    )
    mark = vm.mark()
    vm.run("echo kmh-vagrant-marker > /dev/kmsg")
    assert [line for line in vm.dmesg(since=mark) if "kmh-vagrant-marker" in line]
    assert not [line for line in vm.dmesg(since=vm.mark()) if "kmh-vagrant-marker" in line]


@pytest.fixture(scope="module")
def built(vm: VagrantVM, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """hello, an exporter/consumer pair and an oopsing module, built in one kbuild run in the box."""
    sources = tmp_path_factory.mktemp("vagrant-src")
    modules = [
        write_module("hello", "kmh_vhello", sources / "kmh_vhello", {"greeting": "Hello from Vagrant"}),
        write_module("exporter", "kmh_vexp", sources / "kmh_vexp", {"value": 11}),
        write_module("consumer", "kmh_vcon", sources / "kmh_vcon", {"exporter_prefix": "kmh_vexp"}),
        write_module("hello", "kmh_voops", sources / "kmh_voops", {"fault": "null-deref-init"}),
    ]
    kos = vm.build([m.directory for m in modules], tmp_path_factory.mktemp("vagrant-ko"))
    return {ko.stem: ko for ko in kos}


def test_build_inside_and_modprobe(vm: VagrantVM, built: dict[str, Path]) -> None:
    """kbuild in the box, .ko back on the host, installed into extra/, modprobe'd and removed."""
    assert list(built) == ["kmh_vhello", "kmh_vexp", "kmh_vcon", "kmh_voops"]
    built = {name: built[name] for name in ("kmh_vhello", "kmh_vexp", "kmh_vcon")}
    release = vm.run("uname -r").stdout.strip()
    for ko in built.values():  # the host can inspect what the box built
        assert ko.read_bytes()[:4] == b"\x7fELF"
        vermagic = subprocess.run(["modinfo", "-F", "vermagic", str(ko)], capture_output=True, text=True)
        assert vermagic.stdout.startswith(release + " ")
        vm.put(ko, f"/lib/modules/{release}/extra/{ko.name}")
    assert vm.run("depmod -a", timeout=120).ok

    mark = vm.mark()
    load = vm.run("modprobe kmh_vcon && modprobe kmh_vhello", timeout=60)
    assert load.ok, load.stderr
    loaded = vm.run("cut -d' ' -f1 /proc/modules").stdout.split()
    assert {"kmh_vhello", "kmh_vexp", "kmh_vcon"} <= set(loaded)  # modprobe pulled the exporter in
    log = "\n".join(vm.dmesg(since=mark))
    assert "Hello from Vagrant" in log
    assert "kmh_vcon" in log

    mark = vm.mark()
    unload = vm.run("modprobe -r kmh_vhello && modprobe -r kmh_vcon kmh_vexp", timeout=60)
    assert unload.ok, unload.stderr
    loaded = vm.run("cut -d' ' -f1 /proc/modules").stdout.split()
    assert not {"kmh_vhello", "kmh_vexp", "kmh_vcon"} & set(loaded)
    assert any("Goodbye" in line for line in vm.dmesg(since=mark))
    assert not [c for c in (load.crash, unload.crash) if c]


def test_build_failure_is_a_harness_error(vm: VagrantVM, tmp_path: Path) -> None:
    broken = write_module("hello", "kmh_vbroken", tmp_path / "kmh_vbroken", {"fault": "compile-error"})
    with pytest.raises(HarnessError, match="building kmh_vbroken inside the box failed") as caught:
        vm.build(broken.directory, tmp_path / "ko")
    assert "error" in caught.value.details


def test_oops_is_reported_from_the_console(vm: VagrantVM, built: dict[str, Path]) -> None:
    """An oops in a module's init comes back as the command's crash, read from the serial console."""
    vm.put(built["kmh_voops"], "/root/kmh_voops.ko", mode=0o600)
    result = vm.run("insmod /root/kmh_voops.ko", timeout=60)
    assert result.exit_code != 0
    assert result.crash is not None and result.crash.kind == "oops", vm.console[-3000:]
    assert result.crash.module == "kmh_voops"
    assert vm.poisoned and vm.crash == result.crash
    with pytest.raises(HarnessError, match="poisoned"):
        vm.run("true")
    assert vm.run("true", allow_poisoned=True).ok  # still alive enough to gather evidence


def test_timeout_is_killed_like_in_the_qemu_guest(vm: VagrantVM) -> None:
    """The same rule as the QEMU backend (one guest core): the kill brings it back, exit 137."""
    result = vm.run("sleep 60", timeout=2, allow_poisoned=True)
    assert result.timed_out and result.exit_code == 137
    assert result.duration < 15

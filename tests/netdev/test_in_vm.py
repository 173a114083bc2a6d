"""The netdev template's C and the netlink check against each other, in real guests of 6.1 and 6.12.

One VM with the Python layer per kernel. The same driver is checked with true expectations (all
pass, with the kernel's own words for a refused MTU) and with false ones (each fails with a line
that says what netlink reported), so the check is shown to notice what it claims to check.
"""

from __future__ import annotations

import pytest

from harness.kbuild import build_modules
from harness.kernels.target import KernelTarget
from harness.netcheck import LinkExpectation, check_links
from harness.templates import write_module
from harness.vm.qemu import VM, VMConfig

pytestmark = [pytest.mark.vm, pytest.mark.kbuild]

PARAMS = {
    "count": 3,
    "prefix": "kmhvm",
    "mac": "02:00:00:00:10:00",
    "mtu": 1400,
    "min_mtu": 1280,
    "max_mtu": 4000,
}


@pytest.fixture(scope="module")
def guest(kernel: KernelTarget, tmp_path_factory: pytest.TempPathFactory):
    source = write_module("netdev", "kmh_vmnet", tmp_path_factory.mktemp("netdev") / "kmh_vmnet", PARAMS)
    (built,) = build_modules([source.directory], kernel, werror=True)
    assert built.ok and not built.warnings, built.log[-3000:]
    with VM(kernel, VMConfig(python=True)) as vm:
        vm.put(built.modules[0].path, "/tmp/kmh_vmnet.ko")
        yield vm


@pytest.fixture
def loaded(guest: VM):
    assert guest.run("/sbin/insmod /tmp/kmh_vmnet.ko").ok
    yield guest
    guest.run("/sbin/rmmod kmh_vmnet")


def details(report, what: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [check.detail for check in report.checks if check.what == what]


def test_true_expectations_pass_with_the_kernels_words(loaded: VM) -> None:
    links = [
        LinkExpectation(
            "kmhvm0", mac="02:00:00:00:10:00", mtu=1400, up=True, set_mtu=4000, refuse_mtu=4001, tx_count=7
        ),
        LinkExpectation("kmhvm1", mac="02:00:00:00:10:01", refuse_mtu=1279),
        LinkExpectation("kmhvm2", mac="02:00:00:00:10:02", up=True),
    ]
    report = check_links(loaded, links, "loaded")
    assert report.ok, report.describe()
    assert details(report, "mtu") == ["MTU 1400 (kernel range 1280..4000)"]
    refused = details(report, "refuse_mtu")
    assert "EINVAL (Invalid argument): mtu greater than device maximum" in refused[0]
    assert "EINVAL (Invalid argument): mtu less than device minimum" in refused[1]
    assert details(report, "tx_count")[0].startswith("sent 7 frames of 60 bytes: tx_packets +7 (0 -> 7)")
    # The check left the links as it found them: down, first MTU.
    again = check_links(loaded, [LinkExpectation("kmhvm0", mtu=1400)], "loaded")
    assert again.ok, again.describe()
    assert loaded.run("cat /sys/class/net/kmhvm0/operstate").stdout.strip() == "down"


def test_false_expectations_fail_with_what_netlink_reported(loaded: VM) -> None:
    links = [
        LinkExpectation("kmhvm0", mac="02:00:00:00:10:09", mtu=1500),
        LinkExpectation("kmhvm1", set_mtu=4001, refuse_mtu=1500),
        LinkExpectation("kmhvm7"),
    ]
    report = check_links(loaded, links, "loaded")
    assert not report.ok
    assert report.problems == [
        "netlink: kmhvm0 mac: MAC 02:00:00:00:10:00, expected 02:00:00:00:10:09",
        "netlink: kmhvm0 mtu: MTU 1400 (kernel range 1280..4000), expected 1500",
        "netlink: kmhvm1 set_mtu: MTU 4001 refused: EINVAL (Invalid argument): "
        "mtu greater than device maximum",
        "netlink: kmhvm1 refuse_mtu: MTU 1500 was accepted (now 1500); expected a refusal "
        "(kernel range 1280..4000)",
        "netlink: kmhvm7 exists: no such link",
    ]


def test_links_are_gone_after_unload_and_present_before(guest: VM) -> None:
    links = [LinkExpectation(f"kmhvm{i}") for i in range(3)]
    assert guest.run("/sbin/insmod /tmp/kmh_vmnet.ko").ok
    present = check_links(guest, links, "unloaded")
    assert [p.split(" as index")[0] for p in present.problems] == [
        f"netlink: kmhvm{i} gone: still present" for i in range(3)
    ]
    assert guest.run("/sbin/rmmod kmh_vmnet").ok
    gone = check_links(guest, links, "unloaded")
    assert gone.ok, gone.describe()


def test_a_vm_without_the_python_layer_says_so(kernel: KernelTarget) -> None:
    with VM(kernel) as vm:
        report = check_links(vm, [LinkExpectation("lo")], "loaded")
    assert not report.ok
    assert report.problems == [
        "netlink check (loaded) did not run: the guest has no /usr/bin/python3.11: boot the VM with "
        "the Python layer (VMConfig(python=True))"
    ]

"""The netlink check from a driver developer's own pytest file, through the plugin's fixtures."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

USER_TEST = """
import pytest

@pytest.mark.kmh_module(template="netdev", name="plugnet", params={"prefix": "plug", "count": 1})
def test_my_nic(kmh_net_vm, kmh_module, kmh_netcheck):
    kmh_net_vm.put(kmh_module.path, "/tmp/plugnet.ko")
    assert kmh_net_vm.run("/sbin/insmod /tmp/plugnet.ko").ok
    report = kmh_netcheck([{"name": "plug0", "mtu": 1500, "up": True, "tx_count": 5}])
    assert report.ok, report.describe()
    assert kmh_net_vm.run("/sbin/rmmod plugnet").ok
    assert kmh_netcheck([{"name": "plug0"}], phase="unloaded").ok

def test_wrong_expectation_fails_readably(kmh_netcheck):
    report = kmh_netcheck([{"name": "plug9", "mtu": 1500}])
    assert report.ok, report.describe()
"""


@pytest.mark.vm
def test_user_checks_links_with_kmh_netcheck(pytester, kernel_61):
    pytester.makepyfile(test_nic=USER_TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--kmh-kernel", "bookworm")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*FAIL plug9 exists: no such link*"])

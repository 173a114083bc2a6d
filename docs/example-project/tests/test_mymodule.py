"""My module, built against a Debian kernel and loaded in a disposable VM by kmh's fixtures."""

import pytest


@pytest.mark.kmh_module("../mymodule")  # the module directory, relative to this file
def test_mymodule_loads_and_unloads(kmh_vm, kmh_module, kmh_dmesg):
    kmh_vm.put(kmh_module.path, "/tmp/mymodule.ko")
    assert kmh_vm.run("/sbin/insmod /tmp/mymodule.ko").ok
    assert kmh_vm.run("grep -q '^mymodule ' /proc/modules").ok
    assert kmh_vm.run("/sbin/rmmod mymodule").ok
    assert kmh_vm.run("! grep -q '^mymodule ' /proc/modules").ok
    log = kmh_dmesg()
    assert any("mymodule: loaded" in line for line in log)
    assert any("mymodule: unloaded" in line for line in log)

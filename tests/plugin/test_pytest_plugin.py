"""The pytest plugin, used the way a driver developer would: a test file of their own."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

USER_TEST = """
import pytest

@pytest.mark.kmh_module(template="chardev", name="plugchr")
def test_my_driver(kmh_vm, kmh_module, kmh_dmesg):
    kmh_vm.put(kmh_module.path, "/tmp/plugchr.ko")
    assert kmh_vm.run("/sbin/insmod /tmp/plugchr.ko").ok
    assert kmh_vm.run("test -c /dev/plugchr").ok
    assert any("plugchr: registered /dev/plugchr" in line for line in kmh_dmesg())
    assert kmh_vm.run("/sbin/rmmod plugchr").ok

@pytest.mark.kmh_module(template="bad_null_deref", name="plugoops")
def test_a_driver_that_oopses(kmh_vm, kmh_module):
    kmh_vm.put(kmh_module.path, "/tmp/plugoops.ko")
    result = kmh_vm.run("/sbin/insmod /tmp/plugoops.ko")
    assert result.crash is not None and result.crash.module == "plugoops"
    assert kmh_vm.poisoned

def test_the_next_test_gets_a_healthy_vm(kmh_vm):
    assert not kmh_vm.poisoned
    assert kmh_vm.run("true").ok

@pytest.mark.kmh_module("broken")
def test_broken_driver_fails_with_diagnostics(kmh_module):
    pass
"""


@pytest.mark.vm
def test_user_test_file_with_kmh_fixtures(pytester, kernel_61):
    broken = pytester.mkdir("broken")
    (broken / "Kbuild").write_text("obj-m := broken.o\n")
    (broken / "broken.c").write_text('#include <linux/module.h>\nint x = ;\nMODULE_LICENSE("GPL");\n')
    pytester.makepyfile(test_driver=USER_TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--kmh-kernel", "bookworm")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*broken.c:2:*error*"])

"""The templates' C does what the catalogue says, in a real guest of each kernel target.

One VM per kernel loads, exercises and unloads the good templates and the bad variants that leave
the guest usable (init error, held reference, leaked chardev, endless init). The crashing variants
(NULL dereference, BUG in exit) are run by the lifecycle tests, which replace the VM after a crash.
"""

from __future__ import annotations

import os

import pytest
from plumbum import local

from harness.kernels.target import KernelTarget
from harness.templates import write_module
from harness.vm.qemu import VM

pytestmark = [pytest.mark.vm, pytest.mark.kbuild]

MODULES = {
    "v_hello": ("hello", {"greeting": 'say "hi" 100%'}),
    "v_params": ("params", {}),
    "v_chardev": ("chardev", {"message": "initial\n", "mode": "0640", "inject_failures": True}),
    "v_misc": ("misc", {"message": "misc says hi\n"}),
    "v_procfs": ("procfs", {}),
    "v_exp": ("exporter", {"value": -3}),
    "v_cons": ("consumer", {"exporter_prefix": "v_exp", "a": 5, "b": -4}),
    "v_einval": ("hello", {"init_error": "EINVAL"}),
    "v_hold": ("bad_hold_ref", {}),
    "v_leak": ("bad_chardev_leak", {}),
    "v_loop": ("bad_loop_init", {}),
}


@pytest.fixture(scope="module")
def guest(kernel: KernelTarget, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp(f"vm-{kernel.release}")
    for name, (template, params) in MODULES.items():
        write_module(template, name, root / name, params)
    (root / "Kbuild").write_text("".join(f"obj-m += {name}/\n" for name in MODULES))
    make = local["make"]["-C", kernel.kbuild_dir, f"M={root}", f"-j{os.cpu_count() or 2}", "modules"]
    make["KCFLAGS=-Werror"]()
    with VM(kernel) as vm:
        for name in MODULES:
            vm.put(root / name / f"{name}.ko", f"/tmp/{name}.ko")
        yield vm


def sh(vm: VM, command: str, timeout: float = 30.0) -> str:
    result = vm.run(command, timeout=timeout)
    assert result.exit_code == 0, (command, result.stdout, result.stderr)
    return result.stdout


def dmesg_of(vm: VM, mark, module: str) -> list[str]:
    return [line.split(f"{module}: ", 1)[1] for line in vm.dmesg(since=mark) if f"] {module}: " in line]


def test_hello_prints_on_load_and_unload(guest: VM) -> None:
    mark = guest.mark()
    sh(guest, "insmod /tmp/v_hello.ko && rmmod v_hello")
    assert dmesg_of(guest, mark, "v_hello")[-2:] == ['say "hi" 100%', 'Goodbye: say "hi" 100%']


def test_params_defaults_load_args_and_sysfs_writes(guest: VM) -> None:
    mark = guest.mark()
    out = sh(
        guest,
        "insmod /tmp/v_params.ko && cd /sys/module/v_params/parameters && cat number enabled label values",
    )
    assert out.split() == ["42", "Y", "kmh", "1,2,3"]
    sh(guest, "rmmod v_params")
    sh(guest, "insmod /tmp/v_params.ko number=-5 enabled=0 label=abc values=9,8")
    assert sh(guest, "stat -c %a /sys/module/v_params/parameters/number").strip() == "644"
    sh(guest, "echo 77 > /sys/module/v_params/parameters/number && rmmod v_params")
    lines = dmesg_of(guest, mark, "v_params")
    assert "load: number=-5 enabled=N label=abc nr_values=2" in lines
    assert "unload: number=77 enabled=N label=abc nr_values=2" in lines
    assert "unload: values[1]=8" in lines
    assert sh(guest, "insmod /tmp/v_params.ko values=1,2,3,4,5,6,7,8,9; echo $?").strip() != "0"


def test_chardev_round_trip_and_clean_unload(guest: VM) -> None:
    sh(guest, "insmod /tmp/v_chardev.ko")
    assert sh(guest, "stat -c '%F %a' /dev/v_chardev").strip() == "character special file 640"
    assert sh(guest, "cat /dev/v_chardev") == "initial\n"
    assert sh(guest, "printf 'round trip' > /dev/v_chardev && cat /dev/v_chardev") == "round trip"
    assert sh(guest, "printf ' more' >> /dev/v_chardev && cat /dev/v_chardev") == "round trip more"
    assert " v_chardev" in sh(guest, "cat /proc/devices")
    sh(guest, "rmmod v_chardev")
    assert " v_chardev" not in sh(guest, "cat /proc/devices")
    assert "v_chardev" not in sh(guest, "ls /sys/class /dev")
    sh(guest, "insmod /tmp/v_chardev.ko && rmmod v_chardev")  # nothing survived the unload


KERNEL_STATE = "cat /proc/devices; ls /sys/class /dev; grep -c . /proc/kallsyms"


@pytest.mark.parametrize("step", [1, 2, 3, 4, 5])
def test_chardev_init_unwinds_every_failure(guest: VM, step: int) -> None:
    before = sh(guest, KERNEL_STATE)
    mark = guest.mark()
    result = guest.run(f"insmod /tmp/v_chardev.ko fail_at={step}")
    assert result.exit_code != 0
    expected = "Cannot allocate memory" if step == 1 else "Input/output error"
    assert expected in result.stderr
    assert f"injected failure at init step {step}" in dmesg_of(guest, mark, "v_chardev")
    # Exactly what init did was undone: no region, class, node or module left.
    assert sh(guest, KERNEL_STATE) == before
    sh(guest, "insmod /tmp/v_chardev.ko && rmmod v_chardev")


def test_misc_device(guest: VM) -> None:
    sh(guest, "insmod /tmp/v_misc.ko")
    assert sh(guest, "cat /dev/v_misc") == "misc says hi\n"
    sh(guest, "echo data > /dev/v_misc")
    assert "v_misc" in sh(guest, "cat /proc/misc")
    sh(guest, "rmmod v_misc")
    assert "v_misc" not in sh(guest, "cat /proc/misc; ls /dev")


def test_procfs_entry_counts_reads(guest: VM) -> None:
    sh(guest, "insmod /tmp/v_procfs.ko")
    assert sh(guest, "cat /proc/v_procfs; cat /proc/v_procfs") == (
        "Hello from /proc\nreads: 1\nHello from /proc\nreads: 2\n"
    )
    sh(guest, "rmmod v_procfs")
    assert sh(guest, "test -e /proc/v_procfs || echo gone").strip() == "gone"


def test_consumer_uses_the_exporter(guest: VM) -> None:
    mark = guest.mark()
    sh(guest, "insmod /tmp/v_exp.ko && insmod /tmp/v_cons.ko")
    assert sh(guest, "ls /sys/module/v_exp/holders").split() == ["v_cons"]
    assert guest.run("rmmod v_exp").exit_code != 0
    sh(guest, "rmmod v_cons && rmmod v_exp")
    assert dmesg_of(guest, mark, "v_cons")[:3] == [
        "v_exp_add(5, -4) = 1",
        "v_exp_multiply(5, -4) = -20",
        "v_exp_value = -3",
    ]


def test_init_error_is_returned_to_insmod(guest: VM) -> None:
    result = guest.run("insmod /tmp/v_einval.ko")
    # kmod's insmod words -EINVAL from init_module as "Invalid parameters".
    assert result.exit_code != 0 and "Invalid parameters" in result.stderr
    assert "v_einval" not in sh(guest, "cat /proc/modules")


def test_held_reference_blocks_rmmod(guest: VM) -> None:
    sh(guest, "insmod /tmp/v_hold.ko")
    assert sh(guest, "grep '^v_hold ' /proc/modules").split()[2] == "1"
    result = guest.run("rmmod v_hold")
    assert result.exit_code != 0 and "v_hold" in sh(guest, "cat /proc/modules")


def test_leaky_chardev_leaves_its_region_and_class(guest: VM) -> None:
    sh(guest, "insmod /tmp/v_leak.ko && rmmod v_leak")
    assert " v_leak" in sh(guest, "cat /proc/devices")
    assert "v_leak" in sh(guest, "ls /sys/class").split()
    result = guest.run("insmod /tmp/v_leak.ko")
    assert result.exit_code != 0 and "File exists" in result.stderr


def test_endless_init_gives_up_when_insmod_is_killed(guest: VM) -> None:
    mark = guest.mark()
    result = guest.run("insmod /tmp/v_loop.ko", timeout=3)
    assert result.exit_code != 0
    assert guest.run("true").exit_code == 0  # the guest survived
    assert "insmod was killed; init gives up" in dmesg_of(guest, mark, "v_loop")
    assert "v_loop" not in sh(guest, "cat /proc/modules")

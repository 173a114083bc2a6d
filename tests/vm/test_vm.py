"""Real guests of the 6.1 and 6.12 targets: commands, uploads, the kernel log, and every kind of
kernel trouble a module can cause, each detected and reported."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.kernels.target import KernelTarget
from harness.vm import VM, VMConfig
from harness.vm.result import NO_EXIT

pytestmark = pytest.mark.vm


@pytest.fixture(scope="module")
def vm(kernel: KernelTarget) -> Iterator[VM]:
    """One guest shared by the well-behaved tests of this file (per kernel target)."""
    with VM(kernel) as guest:
        yield guest


# -- commands --------------------------------------------------------------------------------


def test_exit_codes_and_streams(vm: VM, kernel: KernelTarget) -> None:
    result = vm.run("uname -r; echo oops >&2; exit 3")
    assert (result.exit_code, result.stdout, result.stderr) == (3, kernel.release + "\n", "oops\n")
    assert result.crash is None and not result.ok
    assert vm.run(["false"]).exit_code == 1
    assert vm.run(["true"]).ok
    missing = vm.run(["/no/such/program"])
    assert missing.exit_code == 127 and "No such file" in missing.stderr
    assert vm.run("kill -9 $$").exit_code == 137


def test_argv_is_not_reparsed(vm: VM) -> None:
    assert vm.run(["printf", "%s|", "a b", "$HOME", "'q'"]).stdout == "a b|$HOME|'q'|"


def test_plain_cat_served_by_the_agent_is_busybox_cat_byte_for_byte(vm: VM, tmp_path: Path) -> None:
    """The agent's child copies files for ``cat FILE...`` without exec'ing busybox (see plain_cat)."""
    blob = tmp_path / "blob.bin"
    blob.write_bytes(os.urandom(200_000))
    vm.put(blob, "/tmp/cat/blob.bin")
    files = ["/proc/modules", "/no/such/file", "/tmp/cat/blob.bin", "/proc/sys/kernel/tainted"]
    agent, busybox = vm.run(["cat", *files]), vm.run(["/bin/busybox", "cat", *files])
    assert agent.stdout_bytes == busybox.stdout_bytes and len(agent.stdout_bytes) > 200_000
    assert (agent.exit_code, agent.stderr) == (busybox.exit_code, busybox.stderr) == (
        1,
        "cat: can't open '/no/such/file': No such file or directory\n",
    )
    assert vm.run(["cat", "/proc/version"]).stdout == vm.run(["/bin/busybox", "cat", "/proc/version"]).stdout
    assert vm.run(["cat", "-n", "/proc/version"]).stdout.startswith("     1\t"), "options go to busybox"


def test_one_megabyte_of_output(vm: VM) -> None:
    result = vm.run("head -c 1048576 /dev/zero | tr '\\0' x")
    assert result.exit_code == 0
    assert result.stdout == "x" * 1048576


def test_binary_upload_and_download(vm: VM, tmp_path: Path) -> None:
    blob = os.urandom(700_000) + bytes(range(256))
    local = tmp_path / "blob.bin"
    local.write_bytes(blob)
    vm.put(local, "/tmp/deep/dir/blob.bin", mode=0o750)
    result = vm.run("sha256sum /tmp/deep/dir/blob.bin; stat -c %a /tmp/deep/dir/blob.bin")
    digest, mode = result.stdout.split()[0], result.stdout.split()[2]
    assert digest == hashlib.sha256(blob).hexdigest() and mode == "750"
    assert vm.run(["cat", "/tmp/deep/dir/blob.bin"]).stdout_bytes == blob


def test_upload_errors_are_user_errors(vm: VM, tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="cannot read"):
        vm.put(tmp_path / "missing.ko", "/tmp/x.ko")
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(HarnessError, match="absolute"):
        vm.put(tmp_path / "f", "relative/path")
    with pytest.raises(HarnessError, match="upload failed"):
        vm.put(tmp_path / "f", "/proc/version/x")


def test_dmesg_since_mark(vm: VM) -> None:
    before = vm.dmesg()
    assert any("Linux version" in line for line in before)
    mark = vm.mark()
    vm.run("echo kmh-marker-line > /dev/kmsg")
    new = vm.dmesg(since=mark)
    assert len(new) == 1 and new[0].endswith("kmh-marker-line")
    assert vm.dmesg(since=vm.mark()) == []


def test_real_kmod_tools(vm: VM) -> None:
    for tool in ("insmod", "rmmod", "lsmod", "modprobe", "depmod", "modinfo"):
        assert vm.run(f"readlink $(command -v {tool})").stdout.strip() == "/bin/kmod"
    assert "kmod version" in vm.run("kmod --version").stdout
    # busybox would answer with its own usage text; kmod's insmod says this:
    assert "missing filename" in vm.run("insmod").stderr
    assert "pvpanic" in vm.run("lsmod").stdout


def test_guest_has_no_network_and_no_host_files(vm: VM) -> None:
    assert vm.run("ls /sys/class/net").stdout.split() == ["lo"]
    from harness.paths import REPO_ROOT

    assert vm.run(["test", "-e", str(REPO_ROOT)]).exit_code == 1


def test_hello_cycle_and_insmod_failures(vm: VM, test_modules: dict[str, Path]) -> None:
    vm.put(test_modules["kmh_hello"], "/tmp/kmh_hello.ko")
    mark = vm.mark()
    assert vm.run("insmod /tmp/kmh_hello.ko").ok
    assert "kmh_hello" in vm.run("cat /proc/modules").stdout
    again = vm.run("insmod /tmp/kmh_hello.ko")
    assert again.exit_code == 1 and "File exists" in again.stderr and again.crash is None
    assert vm.run("rmmod kmh_hello").ok
    missing = vm.run("rmmod kmh_hello")
    assert missing.exit_code == 1 and "not currently loaded" in missing.stderr
    log = vm.dmesg(since=mark)
    assert any("kmh_hello: loaded" in line for line in log)
    assert any("kmh_hello: unloaded" in line for line in log)
    assert not vm.poisoned


def test_userspace_hang_times_out_and_vm_survives(vm: VM) -> None:
    started = time.monotonic()
    result = vm.run("sleep 100", timeout=1)
    assert time.monotonic() - started < 5
    assert result.timed_out and result.crash is not None and result.crash.kind == "timeout"
    assert result.exit_code == 137
    assert not vm.poisoned
    assert vm.run(["true"]).ok


# -- kernel trouble: a fresh VM each ---------------------------------------------------------


def _load(kernel: KernelTarget, module: Path, timeout: float = 60, **config: object) -> tuple[VM, object]:
    vm = VM(kernel, VMConfig(**config))  # type: ignore[arg-type]
    vm.start()
    vm.put(module, f"/tmp/{module.name}")
    return vm, vm.run(f"insmod /tmp/{module.name}", timeout=timeout)


def test_null_dereference_oops_poisons(kernel: KernelTarget, test_modules: dict[str, Path]) -> None:
    vm, result = _load(kernel, test_modules["kmh_null"])
    try:
        assert result.exit_code == 137  # insmod killed
        crash = result.crash
        assert crash is not None and crash.kind == "oops"
        assert (crash.function, crash.module) == ("kmh_null_read", "kmh_null")
        assert crash.command == "insmod /tmp/kmh_null.ko" and "O" in crash.taint
        assert vm.poisoned and vm.crash == crash
        with pytest.raises(HarnessError, match="poisoned"):
            vm.run("true")
        # evidence can still be gathered on request
        assert "Loading" in vm.run("grep kmh_null /proc/modules", allow_poisoned=True).stdout
        assert any("NULL pointer dereference" in line for line in vm.dmesg())
        vm.restart()
        assert not vm.poisoned and vm.run("lsmod").stdout.count("kmh_null") == 0
    finally:
        vm.close()


def test_bug_is_reported(kernel: KernelTarget, test_modules: dict[str, Path]) -> None:
    vm, result = _load(kernel, test_modules["kmh_bug"])
    with vm:
        assert result.exit_code == 139
        assert result.crash.kind == "BUG" and result.crash.function == "kmh_bug_trigger"
        assert result.crash.title.startswith("kernel BUG at ") and vm.poisoned


def test_general_protection_fault(kernel: KernelTarget, test_modules: dict[str, Path]) -> None:
    vm, result = _load(kernel, test_modules["kmh_gpf"])
    with vm:
        assert result.crash.kind == "oops" and result.crash.function == "kmh_gpf_read"
        assert "general protection fault" in result.crash.title


def test_panic_kills_the_guest(kernel: KernelTarget, test_modules: dict[str, Path]) -> None:
    vm, result = _load(kernel, test_modules["kmh_panic"])
    with vm:
        assert result.exit_code == NO_EXIT
        crash = result.crash
        assert crash.kind == "panic" and crash.panicked and crash.module == "kmh_panic"
        assert "deliberate panic" in crash.title
        assert vm.qemu_exit_code == 1, "pvpanic makes QEMU exit with failure"
        assert not vm.alive and vm.poisoned
        assert "Kernel panic" in vm.console
        with pytest.raises(HarnessError, match="gone"):
            vm.run("true")


def test_oops_with_panic_on_oops(kernel: KernelTarget, test_modules: dict[str, Path]) -> None:
    vm, result = _load(kernel, test_modules["kmh_null"], panic_on_oops=True)
    with vm:
        assert result.crash.kind == "oops" and result.crash.panicked and not vm.alive


def test_warning_taints_but_does_not_poison(kernel: KernelTarget, test_modules: dict[str, Path]) -> None:
    vm, result = _load(kernel, test_modules["kmh_warn"])
    with vm:
        assert result.exit_code == 0
        assert result.crash is None, "a WARNING is a finding, not a crash"
        (warning,) = result.warnings
        assert warning.kind == "WARNING" and warning.module == "kmh_warn"
        assert not vm.poisoned
        assert vm.run("rmmod kmh_warn").ok
        assert int(vm.run("cat /proc/sys/kernel/tainted").stdout) & (1 << 9), "TAINT_WARN"


def test_endless_loop_is_a_soft_lockup(kernel: KernelTarget, test_modules: dict[str, Path]) -> None:
    started = time.monotonic()
    vm, result = _load(kernel, test_modules["kmh_loop"], timeout=60, watchdog_thresh=2)
    with vm:
        assert result.exit_code == NO_EXIT
        assert result.crash.kind == "soft lockup" and result.crash.function == "kmh_loop_init"
        assert vm.poisoned
        assert time.monotonic() - started < 40, "the lockup report ends the wait early"


def test_uninterruptible_sleep_is_a_hung_task(kernel: KernelTarget, test_modules: dict[str, Path]) -> None:
    vm, result = _load(kernel, test_modules["kmh_hung"], timeout=60, hung_task_timeout=3)
    with vm:
        assert result.exit_code == NO_EXIT
        crash = result.crash
        assert crash.kind == "hung task" and (crash.function, crash.module) == ("kmh_hung_init", "kmh_hung")
        assert vm.poisoned


def test_unkillable_command_times_out(kernel: KernelTarget, test_modules: dict[str, Path]) -> None:
    # No hung-task report within the timeout: the plain timeout kind, and the VM is poisoned.
    vm, result = _load(kernel, test_modules["kmh_hung"], timeout=3)
    with vm:
        assert result.crash.kind == "timeout" and "could not be killed" in result.crash.title
        assert vm.poisoned


# -- lifecycle ---------------------------------------------------------------------------------


def test_kvm_trial_boot_falls_back_or_sticks(
    kernel: KernelTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where KVM only pretends to work (the trial boot fails), VMs still come up, on TCG."""
    from harness.vm import accel

    monkeypatch.setenv("KMH_CACHE", str(tmp_path))
    monkeypatch.setattr(accel, "static_kvm_check", lambda: None)
    with VM(kernel, VMConfig(snapshot=False)) as vm:
        assert vm.run(["true"]).ok
        decided = vm.accel
    assert decided is not None and not decided.trial
    import shutil

    cached = accel.choose(shutil.which(vm.config.qemu) or "")
    assert cached.name == decided.name and cached.reason.startswith("cached")


def test_snapshot_restore_is_a_clean_fresh_guest(kernel: KernelTarget, test_modules: dict[str, Path]) -> None:
    config = VMConfig(hung_task_timeout=7)  # a configuration of its own
    with VM(kernel, config) as first:
        first.run("touch /tmp/left-behind")
    with VM(kernel, config) as second:
        assert second.restored, "the first boot saved a snapshot of this configuration"
        assert second.run("test -e /tmp/left-behind").exit_code == 1, "restores the boot, not the last run"
        assert any("Linux version" in line for line in second.dmesg()), "boot log carried over"
        assert "pvpanic" in second.console, "and so is the boot's console"
        mark = second.mark()
        second.run("echo after-restore > /dev/kmsg")
        assert second.dmesg(since=mark)[-1].endswith("after-restore")
        second.put(test_modules["kmh_panic"], "/tmp/p.ko")
        result = second.run("insmod /tmp/p.ko")
        assert result.crash.kind == "panic" and second.qemu_exit_code == 1, "pvpanic works after restore"


def test_a_restored_guest_hands_over_the_listing_it_would_print(kernel: KernelTarget) -> None:
    """Issue 16: the saved guest's answer to the state listing stands in for the lifecycle's
    "before" snapshot only because it is what the restored guest itself prints, and only until
    the guest runs a command (uploads change no kernel state)."""
    from harness.vm import probes

    listing = probes.SAVED[0]
    config = VMConfig(hung_task_timeout=8)  # a configuration of its own
    with VM(kernel, config) as first:
        assert first.saved_answer(listing) is not None, "asked before saving, or loaded with the state"
    with VM(kernel, config) as second:
        assert second.restored
        saved = second.saved_answer(listing)
        assert saved is not None and saved.rstrip().endswith("@@end")
        assert "@@class" in saved and "/proc/modules:" in saved
        second.put_bytes(b"data", "/tmp/uploaded")
        assert second.saved_answer(listing) == saved
        assert second.run(listing).stdout == saved
        assert second.saved_answer(listing) is None, "after a command the answer may be stale"
        assert second.saved_answer("cat /proc/modules") is None, "only the probes are answered"


def test_two_vms_at_once(kernel: KernelTarget) -> None:
    results: dict[int, str] = {}

    def use(index: int) -> None:
        with VM(kernel) as guest:
            guest.run(f"echo {index} > /tmp/me")
            results[index] = guest.run("cat /tmp/me; uname -r").stdout

    threads = [threading.Thread(target=use, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert results == {i: f"{i}\n{kernel.release}\n" for i in range(2)}


def test_close_leaves_nothing_behind(kernel: KernelTarget) -> None:
    vm = VM(kernel).start()
    tmpdir, proc = Path(vm._tmpdir or ""), vm._proc
    assert tmpdir.is_dir() and (tmpdir / "agent.sock").exists()
    vm.close()
    assert proc is not None and proc.poll() == 0, "clean poweroff"
    assert not tmpdir.exists()
    assert "pvpanic" in vm.console, "the console log survives close()"
    vm.close()  # idempotent
    with pytest.raises(HarnessError, match="not running"):
        vm.run("true")


def test_boot_failure_is_reported_not_hung(kernel: KernelTarget) -> None:
    started = time.monotonic()
    with pytest.raises(HarnessError, match="did not boot") as info:
        VM(kernel, VMConfig(extra_params="rdinit=/no/such/init")).start()
    assert time.monotonic() - started < 30
    assert "Kernel panic" in info.value.details or "VFS" in info.value.details


def test_boot_watchdog(kernel: KernelTarget) -> None:
    with pytest.raises(HarnessError, match="no ready message"):
        VM(kernel, VMConfig(boot_timeout=0.5, snapshot=False)).start()


def test_vm_outlives_the_thread_that_booted_it(kernel: KernelTarget) -> None:
    booted: dict[str, VM] = {}
    thread = threading.Thread(target=lambda: booted.setdefault("vm", VM(kernel).start()))
    thread.start()
    thread.join()
    with booted["vm"] as vm:
        time.sleep(0.5)
        assert vm.alive and vm.run(["true"]).ok


def test_qemu_dies_with_a_killed_host_process(kernel: KernelTarget, tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    script = (
        "import os, signal, sys\n"
        "from harness.kernels.store import KernelStore\n"
        "from harness.vm import VM\n"
        f"vm = VM(KernelStore().get({kernel.release!r})).start()\n"
        "print(vm._proc.pid, vm._tmpdir, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL
    pid = int(child.stdout.split()[0])
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    leftover = Path(child.stdout.split()[1])
    VM(kernel).start().close()  # the next VM sweeps what the killed process left
    assert not leftover.exists()


def test_oops_between_commands_is_blamed_on_the_last_one(
    kernel: KernelTarget, test_modules: dict[str, Path]
) -> None:
    vm, result = _load(kernel, test_modules["kmh_delayed"])
    with vm:
        assert result.ok, "insmod itself returns before the work item runs"
        time.sleep(3)
        with pytest.raises(HarnessError, match="poisoned"):
            vm.run("true")
        crash = vm.crash
        assert crash is not None and crash.kind == "oops"
        assert (crash.function, crash.module) == ("kmh_delayed_fn", "kmh_delayed")
        assert crash.command == "insmod /tmp/kmh_delayed.ko (reported after it returned)"

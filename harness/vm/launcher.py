"""Starting and stopping one QEMU process: argv, spawn, snapshot restore and save, reaping.

The launcher knows nothing about commands or crashes. It boots a guest (or restores a saved
snapshot of an identical configuration) until the agent says it is ready, hands over the
connected channel and the boot's kernel log, and later kills QEMU and removes its temp dir.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harness.debugkernel.features import Features
from harness.errors import HarnessError
from harness.kernels.target import KernelTarget
from harness.processes import spawn_tied
from harness.vm import image
from harness.vm.channel import Channel, ChannelClosed, ChannelTimeout
from harness.vm.kmsg import LogRecord, parse_record
from harness.vm.qmp import QMP
from harness.vm.snapshot import SnapshotStore, snapshot_key

if TYPE_CHECKING:
    from harness.vm.qemu import VMConfig

QBOOT = Path("/usr/share/qemu/qboot.rom")
#: How long a snapshot restore may take before it is given up for a cold boot.
RESTORE_TIMEOUT = 15.0


@dataclass
class Booted:
    """A guest whose agent is ready."""

    channel: Channel
    #: The kernel log up to ready (for a restored guest: the saved boot's).
    records: list[LogRecord] = field(default_factory=list)
    #: The saved boot's console, for a restored guest (its console file starts empty).
    console_prefix: str = ""
    restored: bool = False
    seconds: float = 0.0
    #: Answers of the read-only probes, for a restored guest (see :mod:`harness.vm.probes`).
    answers: dict[str, str] = field(default_factory=dict)
    #: For a cold boot whose configuration has no snapshot yet: the key to save it under with
    #: :meth:`QemuLauncher.save_snapshot` (the VM first asks it the probes).
    save_key: str | None = None


def _reap(proc: subprocess.Popen[bytes] | None, tmpdir: str | None) -> None:
    """Last-resort cleanup (also run by the finalizer): kill QEMU, wait for it, remove the dir."""
    if proc is not None and proc.poll() is None:
        proc.kill()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    if tmpdir:
        shutil.rmtree(tmpdir, ignore_errors=True)




def _sweep_orphans() -> None:
    """Remove temp dirs of VMs whose harness process was killed (it could not clean up)."""
    for path in Path(tempfile.gettempdir()).glob("kmh-vm-*-*"):
        owner = path.name.split("-")[2]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            shutil.rmtree(path, ignore_errors=True)




class QemuLauncher:
    """One QEMU process at a time for KERNEL with CONFIG."""

    def __init__(self, kernel: KernelTarget, config: VMConfig) -> None:
        self.kernel = kernel
        self.config = config
        self.proc: subprocess.Popen[bytes] | None = None
        self.tmpdir: str | None = None
        self._finalizer: weakref.finalize | None = None

    @property
    def console_path(self) -> Path:
        return Path(self.tmpdir or "/nonexistent") / "console.log"

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def argv(self, qemu: str, accel_name: str, tmp: Path, initrd: Path | None = None) -> list[str]:
        cfg = self.config
        initrd = initrd or tmp / "initramfs.cpio"
        argv = [qemu, "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"]
        argv += ["-machine", "pc", "-accel", accel_name, "-m", str(cfg.memory_mb), "-smp", str(cfg.cpus)]
        if accel_name == "kvm":
            argv += ["-cpu", "host"]
        if QBOOT.is_file():
            argv += ["-bios", str(QBOOT)]
        argv += ["-kernel", str(self.kernel.boot_image), "-initrd", str(initrd)]
        detectors = Features.of(self.kernel).kernel_params()
        argv += ["-append", " ".join(filter(None, [cfg.kernel_params(), detectors]))]
        argv += ["-chardev", f"file,id=con,path={tmp / 'console.log'}", "-serial", "chardev:con"]
        argv += ["-chardev", f"socket,id=agent,path={tmp / 'agent.sock'}"]
        argv += ["-device", "virtio-serial-pci", "-device", "virtserialport,chardev=agent,name=kmh"]
        argv += ["-device", "pvpanic-pci", "-action", "panic=exit-failure"]
        argv += ["-qmp", f"unix:{tmp / 'qmp.sock'},server=on,wait=off"]
        return argv + list(cfg.extra_qemu_args)

    def boot(self, qemu: str, accel_name: str, timeout: float, *, use_snapshot: bool = True) -> Booted:
        """Start QEMU and wait for the agent's ready message; HarnessError when it never comes."""
        _sweep_orphans()
        self.tmpdir = tempfile.mkdtemp(prefix=f"kmh-vm-{os.getpid()}-")
        tmp = Path(self.tmpdir)
        started = time.monotonic()
        store = SnapshotStore(self.kernel)
        key = None
        restoring = False
        booted: Booted | None = None
        try:
            run_files = image.run_layer(self.config.files) if self.config.files else b""
            initrd = image.initramfs(
                self.kernel,
                tmp / "initramfs.cpio",
                extra_modules=self.config.extra_modules,
                run_files=run_files,
                python=self.config.python,
            )
            argv = self.argv(qemu, accel_name, tmp, initrd)
            if use_snapshot and self._snapshot_wanted():
                used = image.layers(
                    self.kernel, extra_modules=self.config.extra_modules, python=self.config.python
                )
                key = snapshot_key(qemu, argv, self.tmpdir, self.kernel, used)
                restoring = store.available(key)
            if restoring:
                assert key is not None
                argv += ["-incoming", f"exec:cat {shlex.quote(str(store.state(key)))}"]
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(str(tmp / "agent.sock"))
            listener.listen(1)
            listener.settimeout(0.05)
            started = time.monotonic()
            with (tmp / "qemu.log").open("wb") as log:
                self.proc = spawn_tied(argv, log)
            self._finalizer = weakref.finalize(self, _reap, self.proc, self.tmpdir)
            deadline = started + (min(timeout, RESTORE_TIMEOUT) if restoring else timeout)
            conn = None
            while conn is None:
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        raise self._boot_failure("QEMU never connected to the agent socket") from None
            listener.close()
            booted = Booted(Channel(conn), restored=restoring)
            if restoring:
                # The restored agent said "ready" long ago, in the saved boot: ask it to answer.
                assert key is not None
                store.touch(key)
                booted.records, booted.console_prefix, booted.answers = store.load_log(key)
                booted.channel.send(b"D")
                ready = b"D"
            else:
                ready = b"R"
            while True:
                kind, payload = booted.channel.receive(deadline)
                if kind == b"L":
                    record = parse_record(payload)
                    if record is not None:
                        booted.records.append(record)
                elif kind == ready:
                    break
        except (ChannelClosed, ChannelTimeout, HarnessError) as error:
            if booted is not None:
                booted.channel.close()
            if restoring:
                # A snapshot that does not come back is dropped; boot the slow way instead.
                assert key is not None
                store.discard(key)
                self.teardown()
                return self.boot(qemu, accel_name, timeout, use_snapshot=False)
            if isinstance(error, HarnessError):
                raise
            waited = time.monotonic() - started
            reason = (
                "QEMU exited" if isinstance(error, ChannelClosed) else f"no ready message in {waited:.0f} s"
            )
            raise self._boot_failure(f"the guest did not boot ({reason})") from None
        except BaseException:
            if booted is not None:
                booted.channel.close()
            self.teardown()
            raise
        booted.seconds = time.monotonic() - started
        if key is not None and not restoring:
            booted.save_key = key
        return booted

    def _snapshot_wanted(self) -> bool:
        if not self.config.snapshot or self.config.files:
            return False
        return os.environ.get("KMH_VM_SNAPSHOT", "1") not in ("0", "no", "off", "false")

    def save_snapshot(self, key: str, records: list[LogRecord], answers: dict[str, str]) -> None:
        """Save the running guest for later VMs of the same configuration, with its kernel log
        RECORDS so far and the ANSWERS it gave to the read-only probes; never fatal."""
        assert self.tmpdir is not None
        store = SnapshotStore(self.kernel)
        temp = store.temp_state(key)
        try:
            qmp = QMP(str(Path(self.tmpdir) / "qmp.sock"))
        except HarnessError:
            return
        try:
            qmp.execute("migrate", uri=f"exec:cat > {shlex.quote(str(temp))}")
            deadline = time.monotonic() + 60
            while True:
                status = qmp.execute("query-migrate").get("status")
                if status == "completed":
                    break
                if status in ("failed", "cancelled") or time.monotonic() > deadline:
                    raise HarnessError(f"snapshot migration {status}")
                time.sleep(0.01)
            console = self.console_path.read_bytes().decode("utf-8", "replace")
            store.commit(key, temp, records, console, answers)
        except (HarnessError, OSError):
            temp.unlink(missing_ok=True)
        finally:
            try:
                if qmp.execute("query-status").get("status") != "running":
                    qmp.execute("cont")
            except HarnessError:
                pass
            qmp.close()

    def _boot_failure(self, message: str) -> HarnessError:
        tmp = Path(self.tmpdir or ".")
        try:
            console = self.console_path.read_bytes().decode("utf-8", "replace")
        except OSError:
            console = ""
        qemu_log = (tmp / "qemu.log").read_text(errors="replace") if (tmp / "qemu.log").exists() else ""
        self.teardown()
        details = "--- console (last 40 lines) ---\n" + "\n".join(console.splitlines()[-40:])
        if qemu_log.strip():
            details += "\n--- qemu ---\n" + qemu_log.strip()
        return HarnessError(f"{self.kernel.release}: {message}", details=details)

    def wait(self, seconds: float) -> None:
        """Give a QEMU that is going down (poweroff, panic) up to SECONDS to exit."""
        if self.proc is not None:
            try:
                self.proc.wait(timeout=seconds)
            except subprocess.TimeoutExpired:
                pass

    def teardown(self) -> None:
        """Stop QEMU (terminate, then kill) and remove the temp dir; safe to call twice."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.wait(3)
        if self._finalizer is not None:
            self._finalizer()  # kills if still alive, waits, removes the temp dir
            self._finalizer = None
        elif self.tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
        self.tmpdir = None

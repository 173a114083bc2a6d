"""The QEMU backend: one disposable guest per :class:`VM`, in its own temp dir with its own sockets.

Boot: the uncompressed vmlinux through qboot (no firmware delay, no decompressor), an initramfs
concatenated from cached layers, no network and nothing shared from the host. The command
channel is a virtio-serial port wired to a unix socket the host listens on, with QEMU as the
client, so there is no connect race. The serial console goes to a file for post-mortems.

Trouble is detected from four independent signals: the agent's exit codes and streamed kernel
log, channel EOF (QEMU gone), QEMU's exit code (pvpanic makes a panic exit 1, a clean poweroff
exits 0), and deadlines on every wait.
"""

from __future__ import annotations

import ctypes
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import IO

from harness.errors import HarnessError, ToolMissing
from harness.kernels.target import KernelTarget
from harness.vm import accel, image
from harness.vm.backend import LogMark
from harness.vm.channel import Channel, ChannelClosed, ChannelTimeout
from harness.vm.console import parse_crashes, primary
from harness.vm.crash import Crash
from harness.vm.kmsg import LogRecord, parse_record
from harness.vm.qmp import QMP
from harness.vm.result import NO_EXIT, CommandResult
from harness.vm.snapshot import SnapshotStore, snapshot_key

QBOOT = Path("/usr/share/qemu/qboot.rom")

#: Kernel parameters measured to shave boot time under TCG (see the VM notes), plus ours.
#: ``norandmaps`` turns off *userspace* ASLR in the guest: QEMU's TCG caches translated code
#: by virtual address, so a dynamically linked program whose libraries move on every exec is
#: re-translated every time (dash: 29 ms -> 7 ms per start, kmod: 35 ms -> 13 ms). Kernel
#: and module address randomisation are unaffected.
FAST_PARAMS = (
    "console=ttyS0 quiet panic=-1 mitigations=off cryptomgr.notests no_timer_check "
    "rcupdate.rcu_expedited=1 i8042.noaux i8042.nokbd i8042.nopnp 8250.nr_uarts=1 "
    "initcall_blacklist=crypto_kdf108_init,init_kprobe_trace norandmaps"
)

#: How long a snapshot restore may take before it is given up for a cold boot.
RESTORE_TIMEOUT = 15.0
#: How long a killed command gets to come back before the guest counts as hung.
KILL_GRACE = 3.0
#: How often a running command's console and kernel log are checked for lockup reports.
HANG_POLL = 0.5
#: After a lockup/hung-task report, how long the rest of the report gets to arrive.
STUCK_GRACE = 2.0


@dataclass(frozen=True)
class VMConfig:
    """Everything that shapes a guest; equal configs boot identical guests."""

    memory_mb: int = 256
    cpus: int = 1
    #: "kvm" or "tcg" to force; None decides (and caches) automatically.
    accel: str | None = None
    #: Boot watchdog: seconds from starting QEMU to the agent's ready message.
    boot_timeout: float = 60.0
    #: More of the target's own modules to install in the guest (with dependencies; not loaded).
    extra_modules: tuple[str, ...] = ()
    #: Turn every oops into a panic (QEMU exits); off by default so the guest can be inspected.
    panic_on_oops: bool = False
    #: Soft lockups are reported after 2x this many seconds (kernel default 10).
    watchdog_thresh: int | None = None
    #: Hung tasks are reported after this many seconds (Debian default 120).
    hung_task_timeout: int | None = None
    #: Files placed in the image for this run only: guest path -> (bytes, permissions).
    files: dict[str, tuple[bytes, int]] = field(default_factory=dict, compare=False)
    qemu: str = "qemu-system-x86_64"
    #: Appended to the kernel command line.
    extra_params: str = ""
    #: Appended to QEMU's command line (e.g. ("-cpu", "max")).
    extra_qemu_args: tuple[str, ...] = ()
    #: Start from a saved snapshot of this exact configuration when there is one (and save one
    #: after a cold boot). Off when ``files`` are given; ``KMH_VM_SNAPSHOT=0`` turns it off too.
    snapshot: bool = True
    #: Add Debian's python3 and pyroute2 to the image (netlink checks); costs boot time, so off.
    python: bool = False

    def kernel_params(self) -> str:
        params = [FAST_PARAMS]
        if self.panic_on_oops:
            params.append("oops=panic")
        if self.watchdog_thresh is not None:
            params.append(f"watchdog_thresh={self.watchdog_thresh}")
        if self.hung_task_timeout is not None:
            params.append(f"sysctl.kernel.hung_task_timeout_secs={self.hung_task_timeout}")
        if self.extra_params:
            params.append(self.extra_params)
        return " ".join(params)


def _die_with_parent() -> None:
    """In the QEMU child: get SIGKILL if the harness dies, so no guest outlives its host process."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


#: QEMU is started from this one long-lived thread: PR_SET_PDEATHSIG fires when the *thread*
#: that forked the child exits, so a VM booted in a short-lived worker thread would otherwise be
#: killed when that thread ends.
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kmh-qemu-spawner")


def _spawn(argv: list[str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    return _SPAWNER.submit(
        subprocess.Popen,
        argv,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent,
    ).result()


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


_PLAIN_WORDS = re.compile(r"[A-Za-z0-9_./:,+@%-][A-Za-z0-9_./:,+@%=-]*(?:\s+[A-Za-z0-9_./:,+@%=-]+)*")
_SHELL_WORDS = frozenset(
    ". : [ alias bg break cd command continue echo eval exec exit export false fg getopts hash jobs kill "
    "local printf pwd read readonly return set shift test times trap true type ulimit umask unalias unset "
    "wait".split()
)


def _argv(command: str | Sequence[str]) -> list[str]:
    """The argv to execute: a list as given; a string through ``sh -c`` unless it is plain words.

    A string with no quoting, expansion, redirection or builtin (``insmod /tmp/x.ko``) means the
    same with or without a shell, and skipping the shell saves a process start (~5 ms under TCG).
    """
    if not isinstance(command, str):
        return list(command)
    words = command.split()
    plain = words and _PLAIN_WORDS.fullmatch(command.strip()) and "=" not in words[0]
    if plain and words[0] not in _SHELL_WORDS:
        return words
    return ["/bin/sh", "-c", command]


def _sweep_orphans() -> None:
    """Remove temp dirs of VMs whose harness process was killed (it could not clean up)."""
    for path in Path(tempfile.gettempdir()).glob("kmh-vm-*-*"):
        owner = path.name.split("-")[2]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            shutil.rmtree(path, ignore_errors=True)


def _display(command: str | Sequence[str]) -> str:
    return command if isinstance(command, str) else shlex.join(command)


class VM:
    """A disposable QEMU guest booted from a kernel target. See :mod:`harness.vm` for the API."""

    def __init__(self, kernel: KernelTarget, config: VMConfig | None = None, **options: object) -> None:
        self.kernel = kernel
        self.config = config or VMConfig(**options)  # type: ignore[arg-type]
        self.accel: accel.AccelChoice | None = None
        #: Seconds from starting QEMU to the agent's ready message.
        self.boot_seconds = 0.0
        #: True when the guest was restored from a snapshot rather than booted.
        self.restored = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmpdir: str | None = None
        self._channel: Channel | None = None
        self._records: list[LogRecord] = []
        self._console_final = ""
        self._console_prefix = ""
        self._crash: Crash | None = None
        self._poisoned = False
        self._dead = False
        self._finalizer: weakref.finalize | None = None
        #: Records up to this index were already checked for crash reports.
        self._scanned = 0
        self._last_command = ""
        self._console_seen = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> VM:
        """Boot (unless ``start`` already did); the VM is closed when the block ends."""
        if self._proc is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> VM:
        """Boot the guest; returns when the agent is ready. Raises HarnessError if it can't boot."""
        if self._proc is not None and not self._dead:
            raise HarnessError("this VM is already running")
        if not self.kernel.vmlinux.is_file():
            raise HarnessError(
                f"kernel target {self.kernel.release} has no uncompressed vmlinux",
                details=f"expected {self.kernel.vmlinux}; re-add the target with 'kmh kernel add'",
            )
        qemu = shutil.which(self.config.qemu)
        if not qemu:
            raise ToolMissing(self.config.qemu, "qemu-system-x86", "VMs boot with it")
        self.accel = accel.choose(qemu, self.config.accel)
        try:
            self._boot(qemu, self.accel.name, self.config.boot_timeout if not self.accel.trial else 15.0)
            if self.accel.trial:
                accel.record(qemu, "kvm", "trial boot succeeded")
        except HarnessError:
            if not self.accel.trial:
                raise
            accel.record(qemu, "tcg", "KVM trial boot did not get ready")
            self.accel = accel.AccelChoice("tcg", "KVM trial boot did not get ready")
            self._boot(qemu, "tcg", self.config.boot_timeout)
        return self

    def _qemu_argv(self, qemu: str, accel_name: str, tmp: Path) -> list[str]:
        cfg = self.config
        argv = [qemu, "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"]
        argv += ["-machine", "pc", "-accel", accel_name, "-m", str(cfg.memory_mb), "-smp", str(cfg.cpus)]
        if accel_name == "kvm":
            argv += ["-cpu", "host"]
        if QBOOT.is_file():
            argv += ["-bios", str(QBOOT)]
        argv += ["-kernel", str(self.kernel.vmlinux), "-initrd", str(tmp / "initramfs.cpio")]
        argv += ["-append", cfg.kernel_params()]
        argv += ["-chardev", f"file,id=con,path={tmp / 'console.log'}", "-serial", "chardev:con"]
        argv += ["-chardev", f"socket,id=agent,path={tmp / 'agent.sock'}"]
        argv += ["-device", "virtio-serial-pci", "-device", "virtserialport,chardev=agent,name=kmh"]
        argv += ["-device", "pvpanic-pci", "-action", "panic=exit-failure"]
        argv += ["-qmp", f"unix:{tmp / 'qmp.sock'},server=on,wait=off"]
        return argv + list(cfg.extra_qemu_args)

    def _boot(self, qemu: str, accel_name: str, timeout: float, *, use_snapshot: bool = True) -> None:
        _sweep_orphans()
        self._tmpdir = tempfile.mkdtemp(prefix=f"kmh-vm-{os.getpid()}-")
        tmp = Path(self._tmpdir)
        started = time.monotonic()
        self._records, self._console_final, self._crash = [], "", None
        self._console_prefix = ""  # the saved boot's console, for a restored guest
        self._poisoned = self._dead = False
        store = SnapshotStore(self.kernel)
        key = None
        restoring = False
        try:
            run_files = image.run_layer(self.config.files) if self.config.files else b""
            image.assemble(
                self.kernel,
                tmp / "initramfs.cpio",
                extra_modules=self.config.extra_modules,
                run_files=run_files,
                python=self.config.python,
            )
            argv = self._qemu_argv(qemu, accel_name, tmp)
            if use_snapshot and self._snapshot_wanted():
                used = image.layers(
                    self.kernel, extra_modules=self.config.extra_modules, python=self.config.python
                )
                key = snapshot_key(qemu, argv, self._tmpdir, self.kernel, used)
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
                self._proc = _spawn(argv, log)
            self._finalizer = weakref.finalize(self, _reap, self._proc, self._tmpdir)
            deadline = started + (min(timeout, RESTORE_TIMEOUT) if restoring else timeout)
            conn = None
            while conn is None:
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    if self._proc.poll() is not None or time.monotonic() > deadline:
                        raise self._boot_failure("QEMU never connected to the agent socket") from None
            listener.close()
            self._channel = Channel(conn)
            if restoring:
                # The restored agent said "ready" long ago, in the saved boot: ask it to answer.
                assert key is not None
                store.touch(key)
                self._records, self._console_prefix = store.load_log(key)
                self._channel.send(b"D")
                ready = b"D"
            else:
                ready = b"R"
            while True:
                kind, payload = self._channel.receive(deadline)
                if kind == b"L":
                    self._add_record(payload)
                elif kind == ready:
                    break
        except (ChannelClosed, ChannelTimeout, HarnessError) as error:
            if restoring:
                # A snapshot that does not come back is dropped; boot the slow way instead.
                assert key is not None
                store.discard(key)
                self._teardown()
                self._boot(qemu, accel_name, timeout, use_snapshot=False)
                return
            if isinstance(error, HarnessError):
                raise
            waited = time.monotonic() - started
            reason = (
                "QEMU exited" if isinstance(error, ChannelClosed) else f"no ready message in {waited:.0f} s"
            )
            raise self._boot_failure(f"the guest did not boot ({reason})") from None
        except BaseException:
            self._teardown()
            raise
        self.boot_seconds = time.monotonic() - started
        self.restored = restoring
        self._scanned, self._last_command = len(self._records), ""
        self._console_seen = len(self.console.encode())
        if key is not None and not restoring:
            self._save_snapshot(store, key)

    def _snapshot_wanted(self) -> bool:
        if not self.config.snapshot or self.config.files:
            return False
        return os.environ.get("KMH_VM_SNAPSHOT", "1") not in ("0", "no", "off", "false")

    def _save_snapshot(self, store: SnapshotStore, key: str) -> None:
        """Save the just-booted guest for later VMs of the same configuration; never fatal."""
        assert self._tmpdir is not None
        temp = store.temp_state(key)
        try:
            qmp = QMP(str(Path(self._tmpdir) / "qmp.sock"))
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
            store.commit(key, temp, self._records, self.console)
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
        tmp = Path(self._tmpdir or ".")
        console = self.console
        qemu_log = (tmp / "qemu.log").read_text(errors="replace") if (tmp / "qemu.log").exists() else ""
        self._teardown()
        details = "--- console (last 40 lines) ---\n" + "\n".join(console.splitlines()[-40:])
        if qemu_log.strip():
            details += "\n--- qemu ---\n" + qemu_log.strip()
        return HarnessError(f"{self.kernel.release}: {message}", details=details)

    def restart(self) -> None:
        """Throw the current guest away and boot a fresh one with the same settings."""
        self.close()
        self.start()

    def close(self) -> None:
        """Power the guest off (cleanly if it still answers), reap QEMU, remove the temp dir."""
        if self._proc is None:
            return
        if self._proc.poll() is None and self._channel is not None and not self._dead:
            try:
                self._channel.send(b"Q")
                self._proc.wait(timeout=5)
            except (ChannelClosed, subprocess.TimeoutExpired):
                pass
        self._teardown()

    def _teardown(self) -> None:
        self._console_final = self.console
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                pass
        if self._finalizer is not None:
            self._finalizer()  # kills if still alive, waits, removes the temp dir
            self._finalizer = None
        elif self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
        self._tmpdir = None
        self._dead = True

    # -- state -------------------------------------------------------------------------------

    @property
    def console(self) -> str:
        """The full serial console log so far (kept after the VM is closed)."""
        if self._tmpdir:
            path = Path(self._tmpdir) / "console.log"
            if path.exists():
                return self._console_prefix + path.read_bytes().decode("utf-8", "replace")
        return self._console_final

    @property
    def poisoned(self) -> bool:
        return self._poisoned

    @property
    def crash(self) -> Crash | None:
        return self._crash

    @property
    def alive(self) -> bool:
        return self._proc is not None and not self._dead and self._proc.poll() is None

    @property
    def qemu_exit_code(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def _add_record(self, payload: bytes) -> LogRecord | None:
        record = parse_record(payload)
        if record is not None:
            self._records.append(record)
        return record

    def _usable(self, allow_poisoned: bool) -> Channel:
        if self._channel is None or not self.alive:
            if self._crash is not None:
                raise HarnessError(f"the VM is gone after {self._crash.summary()}; start a fresh VM")
            raise HarnessError("the VM is not running")
        if self._poisoned and not allow_poisoned:
            assert self._crash is not None
            raise HarnessError(
                f"the VM is poisoned by {self._crash.summary()}; start a fresh VM (vm.restart())"
            )
        return self._channel

    # -- commands ----------------------------------------------------------------------------

    def run(
        self,
        command: str | Sequence[str],
        *,
        timeout: float = 60.0,
        allow_poisoned: bool = False,
    ) -> CommandResult:
        """Run COMMAND as root: a string goes through ``sh -c``, a list is executed directly."""
        self._catch_up()
        channel = self._usable(allow_poisoned)
        argv = _argv(command)
        shown = _display(command)
        first_record = len(self._records)
        console_start = len(self.console.encode())
        out, err = bytearray(), bytearray()
        started = time.monotonic()
        exit_code = NO_EXIT
        timed_out = died = stuck = False
        try:
            channel.send(b"E", b"".join(arg.encode() + b"\0" for arg in argv))
            deadline = started + timeout
            while True:
                try:
                    kind, payload = channel.receive(min(deadline, time.monotonic() + HANG_POLL))
                except ChannelTimeout:
                    if time.monotonic() < deadline:
                        # Still running: if the kernel already reported a lockup or hung task,
                        # don't sit out the whole timeout; give the report a moment to finish.
                        if not stuck and self._kernel_stuck(first_record, console_start):
                            stuck = True
                            deadline = min(deadline, time.monotonic() + STUCK_GRACE)
                        continue
                    if timed_out:
                        break  # the kill did not bring it back: the guest is stuck
                    timed_out = True
                    channel.send(b"K", b"9")
                    deadline = time.monotonic() + KILL_GRACE
                    continue
                if kind == b"O":
                    out += payload
                elif kind == b"W":
                    err += payload
                elif kind == b"L":
                    self._add_record(payload)
                elif kind == b"X":
                    exit_code = int(payload)
                    break
        except ChannelClosed:
            died = True
        duration = time.monotonic() - started
        crash = self._diagnose(shown, first_record, console_start, timeout, timed_out, died, exit_code)
        return CommandResult(
            command=shown,
            exit_code=exit_code,
            stdout=out.decode("utf-8", "replace"),
            stderr=err.decode("utf-8", "replace"),
            duration=duration,
            crash=crash,
            stdout_bytes=bytes(out),
        )

    def _kernel_stuck(self, first_record: int, console_start: int) -> bool:
        """Whether the kernel reported a soft lockup or hung task since the command started."""
        console = self.console.encode()[console_start:].decode("utf-8", "replace")
        text = console + "\n".join(r.text for r in self._records[first_record:])
        return "BUG: soft lockup" in text or " blocked for more than " in text

    def _diagnose(
        self,
        shown: str,
        first_record: int,
        console_start: int,
        timeout: float,
        timed_out: bool,
        died: bool,
        exit_code: int,
    ) -> Crash | None:
        """Decide what, if anything, the command did to the kernel, and poison the VM if needed."""
        if died and self._proc is not None:
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if died or (timed_out and exit_code == NO_EXIT):
            # The agent can't tell us any more: the console holds the last words.
            console = self.console.encode()[console_start:].decode("utf-8", "replace")
            lines = [r.line() for r in self._records[first_record:]] + console.splitlines()
        else:
            lines = [r.line() for r in self._records[first_record:]]
        crash = primary(parse_crashes(lines, command=shown))
        if died:
            rc = self.qemu_exit_code
            if crash is None:
                title = f"the guest died while running {shown!r} (QEMU exit code {rc})"
                crash = Crash(kind="panic", title=title, command=shown, panicked=True)
            elif rc == 1 and not crash.panicked:
                crash = replace(crash, panicked=True)
            self._teardown()
        elif timed_out and crash is None:
            how = "was killed" if exit_code != NO_EXIT else "could not be killed: the guest is stuck"
            crash = Crash(
                kind="timeout", title=f"command did not finish within {timeout:g} s and {how}", command=shown
            )
        if crash is not None and (crash.poisons and crash.kind != "timeout" or exit_code == NO_EXIT):
            self._poisoned = True
            self._crash = crash
        self._scanned, self._last_command = len(self._records), shown
        self._console_seen = len(self.console.encode())
        return crash

    def _catch_up(self) -> None:
        """Take in kernel log records the idle agent streamed, and check them for crashes."""
        if self._channel is None or self._dead:
            return
        try:
            while True:
                kind, payload = self._channel.receive(time.monotonic())
                if kind == b"L":
                    self._add_record(payload)
        except ChannelTimeout:
            pass
        except ChannelClosed:
            # The guest died between commands (a module's timer or work item panicked).
            self._diagnose(self._last_command, self._scanned, self._console_seen, 0, False, True, NO_EXIT)
            return
        self._scan_background()

    def _scan_background(self) -> None:
        """Crash reports logged after the last command returned are blamed on that command."""
        crash = primary(parse_crashes([r.line() for r in self._records[self._scanned :]]))
        self._scanned = len(self._records)
        if crash is None:
            return
        blamed = f"{self._last_command} (reported after it returned)" if self._last_command else ""
        crash = replace(crash, command=blamed)
        if crash.poisons and not self._poisoned:
            self._poisoned, self._crash = True, crash

    def put(self, local: str | Path, guest_path: str, *, mode: int = 0o644) -> None:
        """Upload the host file LOCAL to GUEST_PATH (parents created); raises HarnessError on failure."""
        source = Path(local)
        try:
            data = source.read_bytes()
        except OSError as error:
            raise HarnessError(f"cannot read {source}: {error.strerror}") from None
        self.put_bytes(data, guest_path, mode=mode)

    def put_bytes(self, data: bytes, guest_path: str, *, mode: int = 0o644) -> None:
        """Write DATA to GUEST_PATH in the guest."""
        channel = self._usable(allow_poisoned=True)
        if not guest_path.startswith("/"):
            raise HarnessError(f"guest path must be absolute: {guest_path!r}")
        channel.send(b"P", guest_path.encode() + b"\0" + f"{mode:o}".encode() + b"\0" + data)
        payload = self._await_reply(
            channel, b"A", 30 + len(data) / 1e6, f"upload to {guest_path} got no answer from the guest"
        )
        if payload:
            raise HarnessError(f"upload failed: {payload.decode(errors='replace')}")

    # -- kernel log --------------------------------------------------------------------------

    def _sync_log(self) -> None:
        channel = self._usable(allow_poisoned=True)
        channel.send(b"D")
        self._await_reply(channel, b"D", 10, "the guest did not answer a kernel log request")

    def _await_reply(self, channel: Channel, reply: bytes, seconds: float, silence: str) -> bytes:
        """The payload of the guest's next REPLY message, keeping the kernel log records that
        arrive before it; HarnessError(SILENCE) when none comes within SECONDS."""
        deadline = time.monotonic() + seconds
        try:
            while True:
                kind, payload = channel.receive(deadline)
                if kind == b"L":
                    self._add_record(payload)
                elif kind == reply:
                    return payload
        except (ChannelClosed, ChannelTimeout):
            raise HarnessError(silence) from None

    def mark(self) -> LogMark:
        """The sequence number of the newest kernel log record (after fetching new ones)."""
        if self.alive:
            self._sync_log()
            self._scan_background()
        return self._records[-1].seq if self._records else -1

    def dmesg(self, since: LogMark | None = None) -> list[str]:
        """Kernel log lines as ``dmesg`` prints them; only those after SINCE when given."""
        if self.alive:
            self._sync_log()
            self._scan_background()
        return [r.line() for r in self._records if since is None or r.seq > since]

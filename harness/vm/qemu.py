"""The QEMU backend: one disposable guest per :class:`VM`, in its own temp dir with its own sockets.

Boot: the uncompressed vmlinux through qboot (no firmware delay, no decompressor), an initramfs
concatenated from cached layers, no network and nothing shared from the host
(:mod:`harness.vm.launcher`). The command channel is a virtio-serial port wired to a unix socket
the host listens on, with QEMU as the client, so there is no connect race
(:mod:`harness.vm.agent`). The serial console goes to a file for post-mortems.

What a command did to the kernel is judged by the guest core (:mod:`harness.vm.guest`), the same
for every backend, from the agent's streamed kernel log, its exit codes, channel EOF (QEMU gone)
and deadlines on every wait; pvpanic makes a panic exit QEMU with code 1.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from types import TracebackType

from harness.errors import HarnessError, ToolMissing
from harness.kernels.target import KernelTarget
from harness.vm import accel, probes
from harness.vm.agent import AgentTransport
from harness.vm.guest import Guest
from harness.vm.launcher import QemuLauncher

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


class VM(Guest):
    """A disposable QEMU guest booted from a kernel target. See :mod:`harness.vm` for the API."""

    def __init__(self, kernel: KernelTarget, config: VMConfig | None = None, **options: object) -> None:
        self.kernel = kernel
        self.config = config or VMConfig(**options)  # type: ignore[arg-type]
        self.accel: accel.AccelChoice | None = None
        #: Seconds from starting QEMU to the agent's ready message.
        self.boot_seconds = 0.0
        #: True when the guest was restored from a snapshot rather than booted.
        self.restored = False
        self.launcher = QemuLauncher(kernel, self.config)
        self._console_final = ""
        super().__init__()

    # -- lifecycle ---------------------------------------------------------------------------

    def _boot_timeout(self) -> float:
        """A debug kernel (KASAN, lockdep, kmemleak instrument everything) boots ~10x slower
        under TCG: 99 s measured at load 8, where the stock kernel takes a few seconds."""
        return self.config.boot_timeout * (6 if self.kernel.flavour == "debug" else 1)

    def __enter__(self) -> VM:
        """Boot (unless ``start`` already did); the VM is closed when the block ends."""
        if self.launcher.proc is None:
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
        if self.launcher.running() and self.transport is not None:
            raise HarnessError("this VM is already running")
        if not self.kernel.boot_image.is_file():
            raise HarnessError(
                f"kernel target {self.kernel.release} has no uncompressed vmlinux",
                details=f"expected {self.kernel.vmlinux}; re-add the target with 'kmh kernel add'",
            )
        qemu = shutil.which(self.config.qemu)
        if not qemu:
            raise ToolMissing(self.config.qemu, "qemu-system-x86", "VMs boot with it")
        self.accel = accel.choose(qemu, self.config.accel)
        try:
            self._boot(qemu, self.accel.name, self._boot_timeout() if not self.accel.trial else 15.0)
            if self.accel.trial:
                accel.record(qemu, "kvm", "trial boot succeeded")
        except HarnessError:
            if not self.accel.trial:
                raise
            accel.record(qemu, "tcg", "KVM trial boot did not get ready")
            self.accel = accel.AccelChoice("tcg", "KVM trial boot did not get ready")
            self._boot(qemu, "tcg", self._boot_timeout())
        return self

    def _boot(self, qemu: str, accel_name: str, timeout: float) -> None:
        self._console_final = ""
        booted = self.launcher.boot(qemu, accel_name, timeout)
        transport = AgentTransport(booted.channel, self.launcher.console_path, self.launcher.running)
        transport.set_console_prefix(booted.console_prefix)
        self.transport = transport
        self._reset(booted.records)
        self.boot_seconds = booted.seconds
        self.restored = booted.restored
        if booted.save_key is not None:
            answers = self._answer_probes()
            self._sync()
            self.launcher.save_snapshot(booted.save_key, list(self._records), answers)
            self._saved_answers = answers
        else:
            self._saved_answers = dict(booted.answers)

    def _answer_probes(self) -> dict[str, str]:
        """The read-only probes' output in this just-booted guest, for the snapshot about to be
        saved; a probe that fails or finds trouble is left out (its users run it themselves)."""
        answers = {}
        for command in probes.SAVED:
            result = self.run(command, timeout=60)
            if result.exit_code == 0 and result.crash is None and not result.warnings:
                answers[command] = result.stdout
        return answers

    def restart(self) -> None:
        """Throw the current guest away and boot a fresh one with the same settings."""
        self.close()
        self.start()

    def close(self) -> None:
        """Power the guest off (cleanly if it still answers), reap QEMU, remove the temp dir."""
        if self.launcher.proc is None:
            return
        transport = self.transport
        if isinstance(transport, AgentTransport) and transport.channel is not None and self.alive:
            try:
                transport.channel.send(b"Q")
                self.launcher.wait(5)
            except Exception:  # noqa: BLE001 - a guest that can't be asked is stopped below
                pass
        self._teardown()

    def abort(self) -> None:
        """Kill QEMU at once (from any thread): the run was interrupted. ``close`` still cleans up."""
        proc = self.launcher.proc
        if proc is not None and proc.poll() is None:
            proc.kill()

    def _teardown(self) -> None:
        if self.transport is not None:
            self._console_final = self.transport.console()
            self.transport.close()
        self.launcher.teardown()
        self._dead = True

    def _guest_died(self) -> None:
        self.launcher.wait(10)
        self._teardown()

    # -- state -------------------------------------------------------------------------------

    @property
    def console(self) -> str:
        """The full serial console log so far (kept after the VM is closed)."""
        if self.transport is not None and self.launcher.tmpdir:
            return self.transport.console()
        return self._console_final

    @property
    def alive(self) -> bool:
        return self.transport is not None and not self._dead and self.launcher.running()

    @property
    def qemu_exit_code(self) -> int | None:
        return self.launcher.exit_code

    # Tests and tools look at the process and its directory.
    @property
    def _proc(self):  # type: ignore[no-untyped-def]
        return self.launcher.proc

    @property
    def _tmpdir(self) -> str | None:
        return self.launcher.tmpdir

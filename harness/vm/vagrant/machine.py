"""VagrantVM: a disposable Vagrant box behind the same interface as the QEMU backend.

Each VM is its own Vagrant project in a fresh temporary directory holding a copy of the shipped
``Vagrantfile`` (so the tests exercise exactly what users run), the box's kernel and initrd (so
libvirt's QEMU user can read them wherever the box lives) and the serial console log. ``vagrant
up`` boots it; every command then goes over one multiplexed SSH connection as root;
``vagrant destroy -f`` removes it, with a virsh fallback so no domain or volume is left behind
even when Vagrant itself fails. Crashes are read from the serial console, where the box sends
every kernel message, with the QEMU backend's parser.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

from harness.errors import HarnessError
from harness.kernels.unpack import say
from harness.paths import cache_root
from harness.vm import accel
from harness.vm.guest import Guest
from harness.vm.vagrant import pool
from harness.vm.vagrant.access import check_qemu_can_reach
from harness.vm.vagrant.box import Box, box_for
from harness.vm.vagrant.connection import GuestConnection, SshTarget
from harness.vm.vagrant.daemons import check_daemons, kvm_device_mismatch
from harness.vm.vagrant.env import PROJECT_VAGRANTFILE, vagrant
from harness.vm.vagrant.keys import check_key_usable
from harness.vm.vagrant.ports import check_port_free, free_port
from harness.vm.vagrant.transport import SshTransport

Progress = Callable[[str], None]
#: Name prefix of each VM's project directory (and so of its libvirt domain).
PROJECT_PREFIX = "kmh-vagrant-"
#: The file in a project directory naming the process that owns the VM.
OWNER_FILE = "kmh.pid"
#: Where in the guest uploaded sources are built.
GUEST_BUILD_ROOT = "/root/kmh-build"
#: Seconds ``vagrant destroy`` may take before the virsh fallback removes the domain.
DESTROY_TIMEOUT = 180.0


def libvirt_driver(forced: str | None = None) -> str:
    """``kvm`` where KVM really works (the QEMU backend's cached verdict), else ``qemu`` (TCG)."""
    if forced:
        return forced
    qemu = shutil.which("qemu-system-x86_64") or "qemu-system-x86_64"
    return "kvm" if accel.choose(qemu).name == "kvm" else "qemu"


class VagrantVM(Guest):
    """A booted Vagrant box driven like a remote root shell (see :class:`harness.vm.VMBackend`).

    What a command did to the kernel is judged by the guest core (:class:`Guest`), exactly as for
    the QEMU backend; only the transport (:class:`SshTransport`) is the box's own.
    """

    def __init__(
        self,
        kernel_spec: str = "bookworm",
        *,
        box: Box | None = None,
        cpus: int = 2,
        memory_mib: int = 2048,
        boot_timeout: float = 300.0,
        ssh_port: int | None = None,
        driver: str | None = None,
        progress: Progress | None = say,
    ) -> None:
        self.kernel_spec = kernel_spec
        self.box = box
        self.cpus = cpus
        self.memory_mib = memory_mib
        self.boot_timeout = boot_timeout
        self.requested_port = ssh_port
        self.driver = driver
        self.progress = progress or (lambda _message: None)
        self.project: Path | None = None
        self.port: int | None = None
        self.domain_id: str | None = None
        self.timings: dict[str, float] = {}
        self._ssh: GuestConnection | None = None
        self._driver = driver or "qemu"
        super().__init__()

    # -- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> VagrantVM:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Bring the VM up; on any failure everything created so far is removed again."""
        check_daemons()
        slow = kvm_device_mismatch()
        if slow:
            self.progress(f"warning: {slow}; run vm/box/setup.sh")
        if self.box is None:
            self.box = box_for(self.kernel_spec, progress=self.progress)
        check_key_usable(self.box.key)
        port = self.requested_port or free_port()
        check_port_free(port)
        self.port = port
        try:
            self._up()
            self._connect()
        except BaseException:
            self.close()
            raise

    def _up(self) -> None:
        assert self.box is not None and self.port is not None
        for stale in pool.sweep_stale(PROJECT_PREFIX, _project_is_stale):
            self.progress(f"removed the stale VM {stale} (the kmh process that made it was killed)")
        project = Path(tempfile.mkdtemp(prefix=PROJECT_PREFIX))
        (project / OWNER_FILE).write_text(f"{os.getpid()}\n")
        self.project = project
        project.chmod(0o755)  # libvirt's QEMU user reads the kernel and writes the console here
        shutil.copy(PROJECT_VAGRANTFILE, project / "Vagrantfile")
        kernel = shutil.copy(self.box.kernel, project / "vmlinuz")
        initrd = shutil.copy(self.box.initrd, project / "initrd.img")
        check_qemu_can_reach(Path(kernel), Path(initrd), self.console_path)
        driver = self._driver = libvirt_driver(self.driver)
        self.progress(
            f"vagrant up: box {self.box.name} (kernel {self.box.release}, {driver}), "
            f"ssh on 127.0.0.1:{self.port}"
        )
        start = time.monotonic()
        try:
            vagrant(
                ["up", "--provider", "libvirt", "--no-provision"],
                cwd=project,
                env=self._environment(driver),
                timeout=self.boot_timeout + 120,
                what=f"vagrant up ({self.box.name})",
            )
        except HarnessError as error:
            raise self._explain_up_failure(error) from error
        finally:
            self.domain_id = self._read_domain_id()
        self.timings["up"] = round(time.monotonic() - start, 1)
        self.progress(f"  up in {self.timings['up']:.0f} s")

    def _environment(self, driver: str) -> dict[str, str]:
        assert self.box is not None and self.project is not None
        return {
            "KMH_BOX": self.box.name,
            "KMH_SSH_PORT": str(self.port),
            "KMH_KERNEL": str(self.project / "vmlinuz"),
            "KMH_INITRD": str(self.project / "initrd.img"),
            "KMH_CONSOLE_LOG": str(self.console_path),
            "KMH_CPUS": str(self.cpus),
            "KMH_MEMORY": str(self.memory_mib),
            "KMH_LIBVIRT_DRIVER": driver,
            "KMH_BOOT_TIMEOUT": str(int(self.boot_timeout)),
        }

    def _explain_up_failure(self, error: HarnessError) -> HarnessError:
        """Turn the known failure modes of ``vagrant up`` into one clear sentence."""
        text = error.details
        if "host forwarding rule" in text or "Could not set up host forwarding" in text:
            return HarnessError(
                f"QEMU could not forward 127.0.0.1:{self.port} to the guest: the port was taken "
                "after kmh checked it; try again",
                details=text,
            )
        if "Permission denied" in text and ("vmlinuz" in text or "initrd" in text or "console" in text):
            return HarnessError("libvirt's QEMU user cannot read the box's files", details=text)
        if "Timed out while waiting for the machine to boot" in text:
            return HarnessError(
                f"the box did not answer SSH within {self.boot_timeout:.0f} s",
                details=text + self._console_tail(),
            )
        return HarnessError(error.message, details=text + self._console_tail())

    def _console_tail(self) -> str:
        lines = self.console.splitlines()[-30:]
        return ("\n--- serial console (last lines) ---\n" + "\n".join(lines)) if lines else ""

    def _read_domain_id(self) -> str | None:
        if self.project is None:
            return None
        marker = self.project / ".vagrant" / "machines" / "default" / "libvirt" / "id"
        try:
            return marker.read_text().strip() or None
        except OSError:
            return None

    def _connect(self) -> None:
        assert self.project is not None
        start = time.monotonic()
        config = vagrant(["ssh-config"], cwd=self.project, env=self._environment(self._driver), timeout=120)
        target = SshTarget.parse(config)
        self._ssh = GuestConnection(target, self.project / "ssh.sock")
        self.transport = SshTransport(self._ssh, self.console_path, self._guest_gone)
        self._reset()
        self.timings["connect"] = round(time.monotonic() - start, 1)

    def _guest_gone(self) -> bool:
        """After ssh's own exit code 255: is the domain no longer running?"""
        return bool(self.domain_id) and pool.domain_state(self.domain_id or "") != "running"

    def restart(self) -> None:
        """Destroy this VM and bring up a fresh one with the same settings."""
        self.close()
        self._reset()
        self.start()

    def close(self) -> None:
        """Destroy the VM and remove its project; safe to call twice and after a failed start."""
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        self._ssh = None
        project, self.project = self.project, None
        if project is None:
            return
        self.domain_id = self.domain_id or self._read_domain_id_of(project)
        start = time.monotonic()
        try:
            if (project / ".vagrant").is_dir():
                vagrant(
                    ["destroy", "-f"],
                    cwd=project,
                    env=self._environment_for(project),
                    timeout=DESTROY_TIMEOUT,
                )
        except HarnessError as error:
            self.progress(f"vagrant destroy failed ({error.message}); removing the domain with virsh")
        finally:
            if self.domain_id and self.domain_id in pool.domain_ids():
                pool.remove_domain(self.domain_id)
            self.domain_id = None
            shutil.rmtree(project, ignore_errors=True)
        self.timings["destroy"] = round(time.monotonic() - start, 1)

    def _read_domain_id_of(self, project: Path) -> str | None:
        marker = project / ".vagrant" / "machines" / "default" / "libvirt" / "id"
        try:
            return marker.read_text().strip() or None
        except OSError:
            return None

    def _environment_for(self, project: Path) -> dict[str, str]:
        saved, self.project = self.project, project
        try:
            return self._environment(self._driver)
        finally:
            self.project = saved

    # -- VMBackend --------------------------------------------------------------------------

    @property
    def console_path(self) -> Path:
        if self.project is None:
            raise HarnessError("the Vagrant VM is not running")
        return self.project / "console.log"

    @property
    def console(self) -> str:
        if self.project is None:
            return ""
        try:
            return self.console_path.read_text(errors="replace")
        except OSError:
            return ""

    def abort(self) -> None:
        """Cut the SSH connection at once (the run was interrupted); ``close`` destroys the box."""
        if self.transport is not None:
            self.transport.close()

    def _guest_died(self) -> None:
        """The box went away under a command; its domain is destroyed by ``close``."""

    # -- building inside the box ------------------------------------------------------------

    def build(
        self, sources: Path | Sequence[Path], out_dir: Path | None = None, *, timeout: float = 900.0
    ) -> list[Path]:
        """Build module source directories inside the box against its own headers; fetch the .ko files.

        Like the host's batched kbuild, all directories go into one umbrella directory whose
        Kbuild descends into each (``obj-y += a/ b/``), so one ``make`` builds them all (each make
        costs tens of seconds of fixed overhead under emulation) and one modpost run resolves an
        exporter's symbols for its consumer. The .ko files come back to OUT_DIR/<source dir
        name>/ (default: ``<cache>/vagrant/ko/<kernel release>``) for inspection on the host, in
        the order of SOURCES. A failed build raises a HarnessError carrying the compiler's output.
        """
        dirs = [Path(sources)] if isinstance(sources, (str, Path)) else [Path(s) for s in sources]
        names = [d.name for d in dirs]
        if len(set(names)) != len(names):
            raise HarnessError(f"module source directories need distinct names to build together: {names}")
        for source in dirs:
            if not source.is_dir():
                raise HarnessError(f"module source directory {source} does not exist")
        release = self.box.release if self.box else "unknown"
        out = Path(out_dir) if out_dir else cache_root() / "vagrant" / "ko" / release
        umbrella = f"{GUEST_BUILD_ROOT}/batch"
        self._upload_tree(dirs, umbrella)
        make = f'make -C "/lib/modules/$(uname -r)/build" M={umbrella} modules'
        result = self.run(make, timeout=timeout)
        if result.exit_code != 0:
            raise HarnessError(
                f"building {', '.join(names)} inside the box failed (exit {result.exit_code})",
                details=(result.stdout + result.stderr)[-6000:],
            )
        built: list[Path] = []
        for name in names:
            built += self._download_kos(f"{umbrella}/{name}", out / name)
        return built

    def _upload_tree(self, sources: list[Path], guest_dir: str) -> None:
        buffer = _tar_bytes(sources)
        script = 'rm -rf "$1" && mkdir -p "$1" && tar -xf - -C "$1"'
        result = self.run(["/bin/sh", "-c", script, "upload", guest_dir], stdin=buffer, timeout=120)
        if result.exit_code != 0:
            raise HarnessError(
                f"cannot upload the module sources to the guest's {guest_dir}", details=result.stderr
            )

    def _download_kos(self, guest_dir: str, destination: Path) -> list[Path]:
        script = 'cd "$1" && find . -maxdepth 1 -name "*.ko" -print0 | xargs -0 -r tar -cf -'
        result = self.run(["/bin/sh", "-c", script, "fetch", guest_dir], timeout=120)
        if result.exit_code != 0 or not result.stdout_bytes:
            raise HarnessError(f"the guest build in {guest_dir} produced no .ko", details=result.stderr)
        destination.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(result.stdout_bytes)) as archive:
            members = [m for m in archive.getmembers() if m.isfile() and m.name.endswith(".ko")]
            archive.extractall(destination, members=members, filter="data")
        return sorted(destination / Path(m.name).name for m in members)


def _project_is_stale(project: str) -> bool:
    """True when the VM project PROJECT (a directory name) is gone or its owning process is dead."""
    directory = Path(tempfile.gettempdir()) / project
    try:
        pid = int((directory / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return not directory.exists()
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        shutil.rmtree(directory, ignore_errors=True)
        return True
    except PermissionError:
        return False
    return False


def _tar_bytes(sources: list[Path]) -> bytes:
    """An uncompressed tar of each source directory under its own name, plus the umbrella Kbuild.

    Build products and hidden files are left out, so a directory built before builds afresh.
    """
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        umbrella = f"obj-y += {' '.join(source.name + '/' for source in sources)}\n".encode()
        info = tarfile.TarInfo("Kbuild")
        info.size = len(umbrella)
        archive.addfile(info, io.BytesIO(umbrella))
        for source in sources:
            for path in sorted(source.rglob("*")):
                relative = path.relative_to(source)
                if any(part.startswith(".") for part in relative.parts) or path.suffix in (
                    ".o",
                    ".ko",
                    ".cmd",
                ):
                    continue
                if path.is_file():
                    archive.add(path, arcname=f"{source.name}/{relative}", recursive=False)
    return buffer.getvalue()

"""The snapshot fast path: boot a configuration once, restore it for every later VM.

Under TCG a cold boot costs ~2 s; restoring a migration stream saved right after the agent said
ready costs a fraction of that. A snapshot is valid only for the exact QEMU binary, device and
kernel command line, vmlinux and initramfs bytes, so its file name is a hash of all of them; any
change simply makes a new one. The boot-time kernel log the restored guest will never resend is
kept beside it. Saved atomically (temp file + rename), so parallel VMs never read half a file;
a snapshot that fails to restore is deleted and the VM boots cold.

Restored guests are clones: same RNG state, same boot log, guest clock continuing from the save.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

from harness.kernels.target import KernelTarget
from harness.paths import cache_root
from harness.vm.kmsg import LogRecord

#: Bump when the guest side changes in a way the inputs below don't capture.
FORMAT = "3"  # 3: saved with the answers of harness.vm.probes

#: Snapshots kept per kernel target (each is ~90 MB); the least recently used go first.
KEEP = 6


def _identity(path: Path) -> str:
    st = path.stat()
    return f"{path}:{st.st_size}:{st.st_mtime_ns}"


def snapshot_key(
    qemu: str, argv: Sequence[str], tmpdir: str, kernel: KernelTarget, layers: Sequence[Path]
) -> str:
    """Hash of everything the saved state depends on (per-VM temp paths factored out).

    The initramfs is identified by its layers' file names, which are hashes of their inputs.
    """
    digest = hashlib.sha256(FORMAT.encode())
    digest.update(_identity(Path(qemu)).encode())
    digest.update(_identity(kernel.boot_image).encode())
    digest.update("\0".join(arg.replace(tmpdir, "@TMP@") for arg in argv).encode())
    digest.update("\0".join(_identity(layer) for layer in layers).encode())
    return digest.hexdigest()[:20]


class SnapshotStore:
    """Snapshots of one kernel target under ``<cache>/images/<release>/snapshots``."""

    def __init__(self, kernel: KernelTarget) -> None:
        self.root = cache_root() / "images" / kernel.release / "snapshots"

    def state(self, key: str) -> Path:
        return self.root / f"{key}.state"

    def records(self, key: str) -> Path:
        return self.root / f"{key}.log.json"

    def available(self, key: str) -> bool:
        return self.state(key).is_file() and self.records(key).is_file()

    def temp_state(self, key: str) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root / f"{key}.state.{os.getpid()}.{id(self)}.part"

    def commit(
        self,
        key: str,
        temp: Path,
        records: list[LogRecord],
        console: str = "",
        answers: dict[str, str] | None = None,
    ) -> None:
        """Publish a saved state, its boot log, console and the answers of the read-only probes
        it gave right before it was saved (log first, so ``available`` sees both)."""
        log_tmp = self.records(key).with_suffix(f".{os.getpid()}.part")
        kmsg = [[r.seq, r.level, r.usec, r.text] for r in records]
        log_tmp.write_text(json.dumps({"kmsg": kmsg, "console": console, "answers": answers or {}}))
        os.replace(log_tmp, self.records(key))
        os.replace(temp, self.state(key))
        self._prune()

    def touch(self, key: str) -> None:
        """Mark a snapshot as just used, so pruning keeps it."""
        try:
            os.utime(self.state(key))
        except OSError:
            pass

    def _prune(self) -> None:
        states = sorted(self.root.glob("*.state"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in states[KEEP:]:
            self.discard(old.stem)

    def load_log(self, key: str) -> tuple[list[LogRecord], str, dict[str, str]]:
        """The boot's kernel log records, serial console text and probe answers, as saved."""
        data = json.loads(self.records(key).read_text())
        records = [LogRecord(seq=s, level=lv, usec=u, text=t) for s, lv, u, t in data["kmsg"]]
        answers = data.get("answers", {})
        return records, data["console"], answers if isinstance(answers, dict) else {}

    def discard(self, key: str) -> None:
        for path in (self.state(key), self.records(key)):
            path.unlink(missing_ok=True)

"""The box's own SSH key, and a check that Vagrant can actually use a key.

kmh generates a fresh ed25519 key per box instead of shipping Vagrant's public "insecure" key.
The check matters because Debian's net-ssh 7 on OpenSSL 3 cannot load an OpenSSH-format RSA key,
and Vagrant then only prints "Connection reset. Retrying..." until ``boot_timeout``: loading the
key with net-ssh itself (what ``vagrant up`` will do) turns that hang into an immediate error.
"""

from __future__ import annotations

from pathlib import Path

from plumbum import ProcessTimedOut, local

from harness.errors import HarnessError
from harness.vm.vagrant.env import require_tool

_LOAD_WITH_NET_SSH = (
    'require "net/ssh"; begin; Net::SSH::KeyFactory.load_private_key(ARGV[0], nil, false); '
    'rescue Exception => e; warn "#{e.class}: #{e.message}"; exit 1; end'
)


def generate_key(path: Path) -> Path:
    """Write a new passphrase-less ed25519 key pair at PATH and PATH.pub; returns PATH."""
    ssh_keygen = local[require_tool("ssh-keygen", "openssh-client")]
    for stale in (path, path.with_name(path.name + ".pub")):
        stale.unlink(missing_ok=True)
    ssh_keygen["-q", "-t", "ed25519", "-N", "", "-C", "kmh-box", "-f", str(path)]()
    path.chmod(0o600)
    return path


def check_key_usable(path: Path) -> None:
    """Raise a HarnessError unless Vagrant's SSH library can load the private key at PATH."""
    if not path.is_file():
        raise HarnessError(
            f"the box's SSH key {path} is missing; rebuild the box with 'kmh box build --rebuild'"
        )
    if path.stat().st_mode & 0o077:
        raise HarnessError(f"the SSH key {path} is readable by others and ssh refuses it; chmod 600 it")
    ruby = local[require_tool("ruby", "ruby")]
    try:
        code, _out, err = ruby["-e", _LOAD_WITH_NET_SSH, str(path)].run(retcode=None, timeout=30)
    except ProcessTimedOut as error:
        raise HarnessError(f"loading the SSH key {path} with net-ssh hung") from error
    if code != 0:
        raise HarnessError(
            f"Vagrant cannot use the SSH key {path} (it would retry until boot_timeout): {err.strip()}; "
            "use an ed25519 key or an RSA key in PEM format (ssh-keygen -m PEM)"
        )

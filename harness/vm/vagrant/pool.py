"""libvirt storage and domains that kmh's Vagrant use leaves behind, found and removed with virsh.

vagrant-libvirt uploads a box's disk once into libvirt's ``default`` pool and gives each VM a
copy-on-write volume on top of it. A rebuilt box must drop the old upload (vagrant-libvirt would
reuse it by name), and a VM whose ``vagrant destroy`` failed must still not leave its domain or
volume behind: these helpers do both, by name, touching nothing that is not kmh's.
"""

from __future__ import annotations

from collections.abc import Callable

from plumbum import ProcessTimedOut, local

from harness.vm.vagrant.env import LIBVIRT_URI

POOL = "default"


def virsh(*args: str, timeout: float = 60.0) -> tuple[int, str, str]:
    """Run virsh against the system libvirt; never raises for a non-zero exit."""
    try:
        return local["virsh"]["-c", LIBVIRT_URI, *args].run(retcode=None, timeout=timeout)
    except ProcessTimedOut:
        return 124, "", f"virsh {' '.join(args)} timed out"


def volumes(pool: str = POOL) -> list[str]:
    """Names of the volumes in POOL (empty when the pool does not exist yet)."""
    code, out, _err = virsh("vol-list", "--pool", pool)  # this virsh has no --name here
    if code != 0:
        return []
    rows = out.splitlines()[2:]  # after the " Name  Path" header and its dashes
    return [row.split()[0] for row in rows if row.strip()]


def domains() -> list[str]:
    """Names of all libvirt domains, running or not."""
    code, out, _err = virsh("list", "--all", "--name")
    return [line.strip() for line in out.splitlines() if line.strip()] if code == 0 else []


def box_volume_prefix(box_name: str) -> str:
    """How vagrant-libvirt names a box's uploaded disk(s): ``<box>_vagrant_box_image_<ver>_...``."""
    return box_name.replace("/", "-VAGRANTSLASH-") + "_vagrant_box_image_"


def delete_box_volumes(box_name: str) -> list[str]:
    """Delete the pool volumes uploaded from BOX_NAME; returns their names."""
    doomed = [name for name in volumes() if name.startswith(box_volume_prefix(box_name))]
    for name in doomed:
        virsh("vol-delete", "--pool", POOL, name)
    return doomed


def remove_domain(name: str) -> None:
    """Stop and undefine domain NAME with its storage (the fallback when ``vagrant destroy`` failed)."""
    virsh("destroy", name, timeout=30)
    virsh("undefine", name, "--remove-all-storage", "--nvram", timeout=60)
    for volume in volumes():
        if volume.startswith(name + ".") or volume.startswith(name + "-"):
            virsh("vol-delete", "--pool", POOL, volume)


def domain_ids() -> list[str]:
    """UUIDs of all libvirt domains (what ``.vagrant/machines/*/libvirt/id`` holds)."""
    code, out, _err = virsh("list", "--all", "--uuid")
    return [line.strip() for line in out.splitlines() if line.strip()] if code == 0 else []


def domain_state(domain: str) -> str:
    """``running``, ``shut off``, ``crashed``... or ``gone`` when libvirt does not know DOMAIN."""
    code, out, _err = virsh("domstate", domain, timeout=15)
    return out.strip() if code == 0 else "gone"


def sweep_stale(prefix: str, is_stale: Callable[[str], bool]) -> list[str]:
    """Remove the domains ``<PREFIX>*_default`` whose project IS_STALE (given the project name).

    A process killed outright (SIGKILL, a CI time-out) cannot run ``vagrant destroy``; its
    domain and disk would stay forever. The next VM cleans them up, by name, touching only
    domains of kmh projects whose owner is gone.
    """
    removed = []
    for name in domains():
        project, _, machine = name.rpartition("_")
        if name.startswith(prefix) and machine == "default" and is_stale(project):
            remove_domain(name)
            removed.append(name)
    return removed

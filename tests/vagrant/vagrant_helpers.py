"""Snapshots of host state that the Vagrant tests compare before, during and after a VM."""

from __future__ import annotations

import json
import subprocess

from harness.vm.vagrant import pool
from harness.vm.vagrant.box import Box


def libvirt_state(box: Box) -> tuple[set[str], set[str]]:
    """Domains and pool volumes, less the box's own uploaded image (a cache, kept on purpose)."""
    prefix = pool.box_volume_prefix(box.name)
    return set(pool.domain_ids()), {v for v in pool.volumes() if not v.startswith(prefix)}


def _json(*command: str) -> object:
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout or "[]")


def host_network_state() -> dict[str, object]:
    """The host's interfaces with their addresses, all routes, and libvirt's networks."""
    interfaces = sorted(
        (
            link["ifname"],
            tuple(sorted((a["family"], a["local"], a["prefixlen"]) for a in link.get("addr_info", []))),
        )
        for link in _json("ip", "-j", "addr")  # type: ignore[union-attr]
    )
    routes = sorted(
        json.dumps({k: r.get(k) for k in ("dst", "gateway", "dev", "table", "type")}, sort_keys=True)
        for family in ("-4", "-6")
        for r in _json("ip", family, "-j", "route", "show", "table", "all")  # type: ignore[union-attr]
    )
    networks = subprocess.run(
        ["virsh", "-c", "qemu:///system", "net-list", "--all"], check=True, capture_output=True, text=True
    ).stdout
    return {"interfaces": interfaces, "routes": routes, "libvirt networks": networks.split()}

"""Guest side of the netlink check: run by the guest's python3 with pyroute2, prints JSON.

This file is uploaded into the guest and run there (``python3.11 guest.py REQUEST.json``); it
imports nothing from the harness, only the standard library and pyroute2. It asks the kernel
what a person would ask ``ip link`` — over rtnetlink, the way the kernel announces network
devices — and reports each check as ``{"what", "ok", "detail"}`` so the host can put failures
and evidence into the same step report as every other expectation.

Request: ``{"phase": "loaded" | "unloaded", "links": [{"name", "mac", "mtu", "up", "set_mtu",
"refuse_mtu", "tx_count"}, ...]}`` (absent keys are not checked). Phase ``loaded`` checks each
link and leaves it as it found it (down, original MTU); phase ``unloaded`` checks every link is
gone. Output: ``{"phase", "links": [{"name", "checks": [...]}], "error"}`` on stdout.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import time
import traceback

#: IFF_UP / IFF_RUNNING from <linux/if.h>.
IFF_UP = 0x1
IFF_RUNNING = 0x40
#: An EtherType reserved for local experiments (IEEE 802 "Local Experimental Ethertype 1").
ETH_P_LOCAL_EXP = 0x88B5
#: A minimum-size Ethernet frame without FCS.
FRAME_LEN = 60


class Link:
    """One link's checks, collected in order."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.checks: list[dict[str, object]] = []

    def add(self, what: str, ok: bool, detail: str) -> bool:
        self.checks.append({"what": what, "ok": bool(ok), "detail": detail})
        return ok

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "checks": self.checks}


def _error_text(error: Exception) -> str:
    """A NetlinkError as 'EINVAL (Invalid argument): <extack message>' when the kernel gave one."""
    code = getattr(error, "code", 0) or 0
    text = f"{errno.errorcode.get(code, code)} ({os.strerror(code)})" if code else repr(error)
    args: tuple[object, ...] = getattr(error, "args", ())
    extack = args[1] if len(args) > 1 and args[1] and args[1] != os.strerror(code) else ""
    return f"{text}: {extack}" if extack else text


def _link(ip, index: int):  # type: ignore[no-untyped-def]
    return ip.get_links(index)[0]


def _stats(msg) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    stats = msg.get_attr("IFLA_STATS64") or msg.get_attr("IFLA_STATS")
    if stats is None:
        return -1, -1
    return int(stats["tx_packets"]), int(stats["tx_bytes"])


def _quiet_ipv6(name: str) -> None:
    """Stop IPv6 autoconfiguration sending its own frames on this link (only this link)."""
    path = f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6"
    if os.path.exists(path):
        with open(path, "w") as stream:
            stream.write("1\n")


def check_loaded(ip, want: dict) -> Link:  # type: ignore[no-untyped-def]
    from pyroute2.netlink.exceptions import NetlinkError

    name = str(want["name"])
    link = Link(name)
    indexes = ip.link_lookup(ifname=name)
    if not link.add("exists", bool(indexes), f"index {indexes[0]}" if indexes else "no such link"):
        return link
    index = indexes[0]
    msg = _link(ip, index)
    mac = str(msg.get_attr("IFLA_ADDRESS") or "")
    mtu = int(msg.get_attr("IFLA_MTU") or 0)
    limits = (msg.get_attr("IFLA_MIN_MTU"), msg.get_attr("IFLA_MAX_MTU"))
    bounds = f" (kernel range {limits[0]}..{limits[1]})" if None not in limits else ""
    if want.get("mac") is not None:
        expected = str(want["mac"]).lower()
        link.add(
            "mac",
            mac.lower() == expected,
            f"MAC {mac}" + ("" if mac == expected else f", expected {expected}"),
        )
    if want.get("mtu") is not None:
        link.add(
            "mtu",
            mtu == int(want["mtu"]),
            f"MTU {mtu}{bounds}" + ("" if mtu == want["mtu"] else f", expected {want['mtu']}"),
        )
    up = bool(want.get("up")) or want.get("tx_count") is not None
    if up:
        _quiet_ipv6(name)
        try:
            ip.link("set", index=index, state="up")
            flags = int(_link(ip, index)["flags"])
            state = _link(ip, index).get_attr("IFLA_OPERSTATE")
            link.add("up", bool(flags & IFF_UP), f"brought up: flags {flags:#x}, operstate {state}")
        except NetlinkError as error:
            link.add("up", False, f"bringing it up was refused: {_error_text(error)}")
    if want.get("set_mtu") is not None:
        new = int(want["set_mtu"])
        try:
            ip.link("set", index=index, mtu=new)
            now = int(_link(ip, index).get_attr("IFLA_MTU"))
            link.add("set_mtu", now == new, f"MTU {mtu} -> {new} accepted, now {now}")
        except NetlinkError as error:
            link.add("set_mtu", False, f"MTU {new} refused: {_error_text(error)}")
    if want.get("refuse_mtu") is not None:
        bad = int(want["refuse_mtu"])
        before = int(_link(ip, index).get_attr("IFLA_MTU"))
        try:
            ip.link("set", index=index, mtu=bad)
            now = int(_link(ip, index).get_attr("IFLA_MTU"))
            link.add("refuse_mtu", False, f"MTU {bad} was accepted (now {now}); expected a refusal{bounds}")
        except NetlinkError as error:
            now = int(_link(ip, index).get_attr("IFLA_MTU"))
            link.add(
                "refuse_mtu", now == before, f"MTU {bad} refused with {_error_text(error)}; MTU stays {now}"
            )
    if want.get("tx_count") is not None:
        _check_tx(ip, index, name, int(want["tx_count"]), link)
    _restore(ip, index, mtu, up, link)
    return link


def _check_tx(ip, index: int, name: str, count: int, link: Link) -> None:  # type: ignore[no-untyped-def]
    """Send COUNT raw frames through an AF_PACKET socket; tx counters must rise by exactly that."""
    msg = _link(ip, index)
    packets, octets = _stats(msg)
    source = bytes.fromhex(str(msg.get_attr("IFLA_ADDRESS")).replace(":", ""))
    frame = b"\xff" * 6 + source + ETH_P_LOCAL_EXP.to_bytes(2, "big")
    frame += b"kmh netcheck".ljust(FRAME_LEN - len(frame), b"\0")
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
        sock.bind((name, 0))
        for _ in range(count):
            sock.send(frame)
    deadline = time.monotonic() + 2
    while True:
        after_packets, after_octets = _stats(_link(ip, index))
        if after_packets - packets >= count or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    sent, sent_bytes = after_packets - packets, after_octets - octets
    ok = sent == count and sent_bytes == count * FRAME_LEN
    link.add(
        "tx_count",
        ok,
        f"sent {count} frames of {FRAME_LEN} bytes: tx_packets +{sent} ({packets} -> {after_packets}), "
        f"tx_bytes +{sent_bytes}",
    )


def _restore(ip, index: int, mtu: int, was_brought_up: bool, link: Link) -> None:  # type: ignore[no-untyped-def]
    """Leave the link as found: original MTU, down again (which also exercises the driver's stop)."""
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        if int(_link(ip, index).get_attr("IFLA_MTU")) != mtu:
            ip.link("set", index=index, mtu=mtu)
        if was_brought_up:
            ip.link("set", index=index, state="down")
            flags = int(_link(ip, index)["flags"])
            link.add("down", not flags & IFF_UP, f"brought down again: flags {flags:#x}")
    except NetlinkError as error:
        link.add("restore", False, f"could not restore MTU {mtu} / bring it down: {_error_text(error)}")


def check_unloaded(ip, want: dict) -> Link:  # type: ignore[no-untyped-def]
    name = str(want["name"])
    link = Link(name)
    indexes = ip.link_lookup(ifname=name)
    link.add("gone", not indexes, "no such link" if not indexes else f"still present as index {indexes[0]}")
    return link


def main(argv: list[str]) -> int:
    with open(argv[1]) as stream:
        request = json.load(stream)
    phase = request["phase"]
    links: list[dict[str, object]] = []
    report: dict[str, object] = {"phase": phase, "links": links, "error": None}
    try:
        from pyroute2 import IPRoute

        check = check_loaded if phase == "loaded" else check_unloaded
        # ext_ack: the kernel then says why it refused (e.g. "mtu greater than device maximum").
        with IPRoute(ext_ack=True) as ip:
            for want in request["links"]:
                links.append(check(ip, want).as_dict())
    except Exception:  # noqa: BLE001 - every failure goes back to the host as data
        report["error"] = traceback.format_exc()
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

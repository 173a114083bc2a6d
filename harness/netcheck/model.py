"""The values of a netlink check: what a link must be (from a spec or a test) and what was found.

A :class:`LinkExpectation` is one ``[[expect.links]]`` table of a spec; a :class:`NetReport` is
the guest's JSON answer turned into :class:`Check` values, one per thing looked at, so a failure
reads as one line ("netlink: kmhnet0 mac: MAC 02:..:01, expected 02:..:00") and the whole list
is the evidence.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.errors import HarnessError
from harness.vm.crash import Crash

#: Keys of one ``[[expect.links]]`` table, with what each one checks (also the spec docs).
LINK_KEYS = {
    "name": "the interface name (required)",
    "mac": "its MAC address, xx:xx:xx:xx:xx:xx",
    "mtu": "its MTU right after loading",
    "up": "it can be brought up (and down again)",
    "set_mtu": "an MTU the driver must accept",
    "refuse_mtu": "an MTU the kernel must refuse (out of min_mtu..max_mtu); the error is reported",
    "tx_count": "send this many raw frames: tx_packets must rise by exactly this (implies up)",
}
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
_IFNAME = re.compile(r"[^/:\s]{1,15}")


@dataclass(frozen=True)
class LinkExpectation:
    """What one network interface must look like and do while the module is loaded."""

    name: str
    mac: str | None = None
    mtu: int | None = None
    up: bool = False
    set_mtu: int | None = None
    refuse_mtu: int | None = None
    tx_count: int | None = None

    def request(self) -> dict[str, Any]:
        """The guest script's view of this expectation (None means: not checked)."""
        return asdict(self)


def link_from_table(table: Any, where: str) -> LinkExpectation:
    """Validate one ``[[expect.links]]`` table; a mistake is a HarnessError naming the key."""
    if not isinstance(table, dict):
        raise HarnessError(f'{where}: each entry of links must be a table such as {{ name = "kmhnet0" }}')
    unknown = sorted(set(table) - set(LINK_KEYS))
    if unknown:
        raise HarnessError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(LINK_KEYS)}")
    name = table.get("name")
    if not isinstance(name, str) or not _IFNAME.fullmatch(name):
        raise HarnessError(f"{where}: name must be an interface name (1-15 characters, no '/', ':' or space)")
    values: dict[str, Any] = {"name": name}
    if "mac" in table:
        mac = str(table["mac"]).lower()
        if not _MAC.fullmatch(mac):
            raise HarnessError(f"{where} {name}: mac {table['mac']!r} is not of the form 02:00:00:00:00:01")
        values["mac"] = mac
    for key in ("mtu", "set_mtu", "refuse_mtu", "tx_count"):
        if key in table:
            value = table[key]
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or value < (1 if key == "tx_count" else 0)
            ):
                raise HarnessError(f"{where} {name}: {key} must be a positive integer, not {value!r}")
            values[key] = value
    if "up" in table:
        if not isinstance(table["up"], bool):
            raise HarnessError(f"{where} {name}: up must be true or false")
        values["up"] = table["up"]
    return LinkExpectation(**values)


@dataclass(frozen=True)
class Check:
    """One thing looked at on one link."""

    link: str
    what: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.link} {self.what}: {self.detail}"


@dataclass
class NetReport:
    """The guest's answer for one phase ("loaded" or "unloaded")."""

    phase: str
    checks: list[Check] = field(default_factory=list)
    #: Why the check itself could not run (no Python in the guest, a traceback, bad output).
    error: str = ""
    #: Set when running the check crashed the guest kernel (the parsed report).
    crash: Crash | None = None

    @property
    def ok(self) -> bool:
        return not self.error and self.crash is None and all(check.ok for check in self.checks)

    @property
    def problems(self) -> list[str]:
        """One line per failure, for a step's message and evidence."""
        lines = [
            f"netlink: {check.link} {check.what}: {check.detail}" for check in self.checks if not check.ok
        ]
        if self.error:
            lines.insert(
                0, f"netlink check ({self.phase}) did not run: {self.error.strip().splitlines()[-1]}"
            )
        if self.crash is not None:
            what = "timed out" if self.crash.kind == "timeout" else "crashed the kernel"
            lines.insert(0, f"netlink check ({self.phase}) {what}: {self.crash.summary()}")
        return lines

    def summary(self) -> str:
        passed = sum(check.ok for check in self.checks)
        links = len({check.link for check in self.checks})
        return f"netlink ({self.phase}): {passed}/{len(self.checks)} checks passed on {links} link(s)"

    def describe(self) -> str:
        """Every check, one per line (the evidence), then the error if there was one."""
        lines = [self.summary(), *(check.line() for check in self.checks)]
        if self.error:
            lines.append(self.error.rstrip())
        return "\n".join(lines)

    @classmethod
    def from_json(cls, phase: str, data: dict[str, Any]) -> NetReport:
        checks = [
            Check(str(link["name"]), str(item["what"]), bool(item["ok"]), str(item["detail"]))
            for link in data.get("links", [])
            for item in link.get("checks", [])
        ]
        return cls(phase=phase, checks=checks, error=str(data.get("error") or ""))

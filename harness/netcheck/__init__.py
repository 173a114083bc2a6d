"""Network-device checks over rtnetlink, run inside the guest with pyroute2.

A network driver's effect is not a file but what the kernel announces over netlink, so these
checks ask the kernel the way ``ip link`` would: links exist with the right MAC and MTU, come up,
accept and refuse MTU changes, count transmitted frames, and are gone after unload. The guest
part (:mod:`harness.netcheck.guest`) runs with Debian's python3 + pyroute2 from the optional
Python layer of the guest image; results come back as JSON.
"""

from harness.netcheck.model import LINK_KEYS, Check, LinkExpectation, NetReport, link_from_table
from harness.netcheck.run import check_links

__all__ = ["LINK_KEYS", "Check", "LinkExpectation", "NetReport", "check_links", "link_from_table"]

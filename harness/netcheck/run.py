"""Host side of the netlink check: upload the guest script, run it with the guest's Python, read JSON.

The guest needs the Python layer (``VMConfig(python=True)``); without it the report says so
instead of raising, like every other expectation that cannot be met. The check talks to the
guest only through the VM backend's ``put`` and ``run``, so it works from the lifecycle cycle,
from the pytest plugin and from a user's script alike.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from harness.netcheck.model import LinkExpectation, NetReport
from harness.vm.backend import VMBackend
from harness.vm.python_layer import GUEST_PYTHON

GUEST_SCRIPT = Path(__file__).with_name("guest.py")
GUEST_DIR = "/kmh/netcheck"
Phase = Literal["loaded", "unloaded"]


def check_links(
    vm: VMBackend, links: Sequence[LinkExpectation], phase: Phase = "loaded", *, timeout: float = 120.0
) -> NetReport:
    """Check LINKS in the guest over rtnetlink.

    ``loaded``: each link exists with its MAC and MTU, comes up, accepts ``set_mtu``, refuses
    ``refuse_mtu`` (the kernel's error is reported), counts ``tx_count`` sent frames, and is left
    down with its first MTU. ``unloaded``: each link is gone.
    """
    request = {"phase": phase, "links": [link.request() for link in links]}
    with tempfile.TemporaryDirectory(prefix="kmh-netcheck-") as tmp:
        path = Path(tmp) / "request.json"
        path.write_text(json.dumps(request))
        vm.put(GUEST_SCRIPT, f"{GUEST_DIR}/guest.py")
        vm.put(path, f"{GUEST_DIR}/{phase}.json")
    command = [GUEST_PYTHON, "-B", f"{GUEST_DIR}/guest.py", f"{GUEST_DIR}/{phase}.json"]
    result = vm.run(command, timeout=timeout, allow_poisoned=True)
    if result.crash is not None:
        return NetReport(phase=phase, crash=result.crash, error=result.stderr)
    if result.exit_code == 127 or ("No such file" in result.stderr and not result.stdout):
        missing = f"the guest has no {GUEST_PYTHON}: boot the VM with the Python layer"
        return NetReport(phase=phase, error=f"{missing} (VMConfig(python=True))")
    try:
        data = json.loads(result.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        output = (result.stdout + result.stderr).strip() or f"exit code {result.exit_code}, no output"
        return NetReport(phase=phase, error=f"the guest check gave no JSON:\n{output}")
    return NetReport.from_json(phase, data)

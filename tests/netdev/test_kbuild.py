"""The netdev template builds warning-free with -Werror on 6.1 and 6.12, in every shape it can take.

One batched kbuild per kernel: defaults, the edges of every parameter (16 interfaces, a 13-character
prefix, the widest MTU range, a Proprietary license: no GPL-only symbol may be used) and the leaky
preset. The API differences it handles (``dev->lltx`` vs ``NETIF_F_LLTX`` in 6.12,
``eth_hw_addr_set``, ``WRITE_ONCE(dev->mtu)``) are therefore compiled on both sides.
"""

from __future__ import annotations

import pytest

from harness.kbuild import build_modules
from harness.kernels.target import KernelTarget
from harness.templates import write_module

pytestmark = pytest.mark.kbuild

VARIANTS = {
    "nd_default": ("netdev", {}),
    "nd_edge": (
        "netdev",
        {
            "count": 16,
            "prefix": "abcdefghijklm",
            "mac": "fe:ff:ff:ff:ff:ef",
            "mtu": 68,
            "min_mtu": 68,
            "max_mtu": 65535,
            "license": "Proprietary",
            "description": '"); evil(); /*',
        },
    ),
    "nd_single": (
        "netdev",
        {"count": 1, "mtu": 9000, "min_mtu": 9000, "max_mtu": 9000, "license": "Dual MIT/GPL"},
    ),
    "nd_leak": ("bad_netdev_leak", {}),
}


def test_every_variant_builds_warning_free(kernel: KernelTarget, tmp_path) -> None:  # type: ignore[no-untyped-def]
    directories = [
        write_module(template, name, tmp_path / name, params).directory
        for name, (template, params) in VARIANTS.items()
    ]
    results = build_modules(directories, kernel, werror=True)
    for name, result in zip(VARIANTS, results, strict=True):
        assert result.ok, (name, "\n".join(str(d) for d in result.diagnostics) or result.log[-3000:])
        assert not result.warnings, (name, [str(w) for w in result.warnings])
        assert [module.name for module in result.modules] == [name]

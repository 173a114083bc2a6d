"""Issue 14 (7): a failed load's headline names the errno and carries the kernel's reason.

Inputs are real: the errno.h of each target's headers in the kernel store, and kmod's error and
the kernel log of a duplicate export and of an init returning -EPROBE_DEFER, as a 6.1 guest
printed them (tests/lifecycle/test_load_together.py produces them live).
"""

from __future__ import annotations

import pytest

from harness.kernels.store import KernelStore
from harness.lifecycle.loaderrors import explain_load_error, kernel_errno_names, kernel_reasons

DUPLICATE_STDERR = (
    "insmod: ERROR: could not insert module /lib/modules/6.1.0-56-amd64/extra/kmh_dup_video.ko: "
    "Invalid module format\n"
)
DUPLICATE_LOG = [
    "[   10.065098] mc: Linux media interface: v0.10",
    "[   10.159094] videodev: Linux video capture interface: v2.00",
    "[   10.191349] kmh_dup_video: loading out-of-tree module taints kernel.",
    "[   10.191747] kmh_dup_video: module verification failed: signature and/or required key missing - "
    "tainting kernel",
    "[   10.192192] kmh_dup_video: exports duplicate symbol v4l2_prio_init (owned by videodev)",
]
DEFER_STDERR = (
    "insmod: ERROR: could not insert module /lib/modules/6.1.0-56-amd64/extra/kmh_defer.ko: "
    "Unknown error 517\n"
)


@pytest.mark.parametrize("suite", ["bullseye", "bookworm", "trixie", "sid"])
def test_kernel_internal_errnos_512_to_530_are_named_from_the_headers(suite: str) -> None:
    release = KernelStore().ensure(suite).release
    names = kernel_errno_names(release)
    assert names[512] == "ERESTARTSYS" and names[517] == "EPROBE_DEFER" and names[524] == "ENOTSUPP"
    # 520 has never been defined; every other number up to 530 has a name.
    assert [number for number in range(512, 531) if number not in names] == [520]


def test_unknown_error_517_is_eprobe_defer() -> None:
    release = KernelStore().ensure("bookworm").release
    message = explain_load_error(DEFER_STDERR, [], release, "kmh_defer")
    assert message.endswith("kmh_defer.ko: Unknown error 517 (EPROBE_DEFER)"), message


def test_headline_carries_the_kernels_reason() -> None:
    release = KernelStore().ensure("bookworm").release
    message = explain_load_error(DUPLICATE_STDERR, DUPLICATE_LOG, release, "kmh_dup_video")
    assert message.endswith(
        "Invalid module format (ENOEXEC); kernel: kmh_dup_video: exports duplicate symbol v4l2_prio_init "
        "(owned by videodev)"
    ), message
    # Another module's lines are not this module's reason.
    assert kernel_reasons(DUPLICATE_LOG, "videodev") == []

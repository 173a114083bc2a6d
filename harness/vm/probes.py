"""Read-only commands a saved guest answers ahead of time.

Every guest restored from one saved state starts from the same memory image, so a command that
only reads kernel state gives each of them the answer the saved guest gave, until something
changes that state. The VM runs these commands once, right before it saves the state, and keeps
the answers with it; a restored guest that has run nothing yet hands an answer out instead of
running the command. Under TCG the first run of a command in a restored guest pays for
translating all of its code again (translated code is not part of the saved state): the state
listing below took 0.24-0.37 s as the first command of a restored guest and 0.04 s once warm.
"""

from __future__ import annotations

#: The kernel state visible from userspace: device classes and their devices, /proc entries,
#: the majors, misc minors, loaded modules and taint mask, device nodes and the top of debugfs
#: (parsed and compared by :mod:`harness.lifecycle.state`). Every guest process start costs
#: ~5-10 ms under TCG, so it starts two: one ``grep`` prints the small /proc files (each line
#: prefixed by its file name) and one ``find`` walks /dev and the top two levels of debugfs; the
#: rest are shell builtins. The debugfs mount check is a glob (an unmounted /sys/kernel/debug is
#: an empty directory).
STATE_LISTING = r"""
set -- /sys/kernel/debug/*; [ -e "$1" ] || mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
echo @@class; for d in /sys/class/* /sys/class/*/*; do echo "$d"; done
echo @@proc; for e in /proc/* /proc/driver/* /proc/bus/*; do
  case "$e" in /proc/[0-9]*) ;; *) echo "$e";; esac
done
echo @@files; grep -H '' /proc/devices /proc/misc /proc/modules /proc/sys/kernel/tainted
echo @@paths; find /dev /sys/kernel/debug -path '/sys/kernel/debug/*/*/*' -prune -o -print 2>/dev/null
"""
#: Printed last: a listing without it was cut short and must never be compared.
LISTING_END = "echo @@end"

#: What a VM answers before its state is saved (the state listing as the lifecycle's "before").
SAVED = (STATE_LISTING + LISTING_END,)

"""The Vagrant backend: a full Debian VM (systemd, udev, real modprobe) built from Debian packages.

Public API::

    from harness.vm.vagrant import VagrantVM, BoxBuilder

    BoxBuilder("bookworm").ensure()             # the box, built (or rebuilt) only when needed
    with VagrantVM("bookworm") as vm:            # vagrant up; same interface as harness.vm.VM
        kos = vm.build([exporter_dir, consumer_dir], out_dir)  # kbuild inside, .ko back on the host
        vm.put(kos[0], "/lib/modules/<release>/extra/x.ko")
        r = vm.run("modprobe x", timeout=60)    # CommandResult; crash/timeout as with QEMU
        vm.dmesg(since=vm.mark()), vm.console, vm.poisoned, vm.restart()
                                                 # vagrant destroy -f on exit, always

Layout: ``box`` builds and caches boxes, ``machine`` is the VM, ``connection`` the multiplexed
SSH link, ``env`` runs vagrant, ``daemons``/``access``/``keys``/``ports`` turn each known pitfall
into a clear error before anything waits, ``pool`` cleans libvirt up when Vagrant could not.
"""

from harness.vm.vagrant.box import Box, BoxBuilder
from harness.vm.vagrant.machine import VagrantVM

__all__ = ["Box", "BoxBuilder", "VagrantVM"]

"""kmod-harness: the whole life of a Linux loadable kernel module, done for real and checked.

The package is laid out as the pipeline a module travels through: ``kernels`` (targets),
``templates`` (sources), ``build`` (kbuild), ``elf`` (inspection), ``vm`` (disposable guests),
``lifecycle`` (load/verify/unload runs) and ``report``.
"""

from harness.errors import HarnessError

__all__ = ["HarnessError"]
__version__ = "0.1.0"

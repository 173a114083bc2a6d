"""DKMS source trees (a directory with a ``dkms.conf``) as input: read the package's declaration
the way dkms does and build every module it declares, with its own ``MAKE[0]``."""

from harness.dkms.build import DkmsBuild, build_dkms, build_sources, skipped_build
from harness.dkms.conf import DkmsConf, declared_modules, is_dkms_tree, read_dkms_conf
from harness.dkms.spec import dkms_spec

__all__ = [
    "DkmsBuild", "DkmsConf", "build_dkms", "build_sources", "declared_modules", "dkms_spec", "is_dkms_tree",
    "read_dkms_conf", "skipped_build",
]  # fmt: skip

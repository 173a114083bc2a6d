"""Build stage: batched out-of-tree kbuild runs and their diagnostics."""

from harness.build.diagnostics import Diagnostic
from harness.build.kbuild import BuildResult, BuiltModule, build_modules

__all__ = ["BuildResult", "BuiltModule", "Diagnostic", "build_modules"]

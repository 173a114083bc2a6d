"""Build stage: batched out-of-tree kbuild runs and their diagnostics."""

from harness.kbuild.diagnostics import Diagnostic
from harness.kbuild.kbuild import BuildResult, BuiltModule, build_modules, pick_module

__all__ = ["BuildResult", "BuiltModule", "Diagnostic", "build_modules", "pick_module"]

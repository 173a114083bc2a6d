"""pytest plugin (entry point ``pytest11``): fixtures over the harness library.

Thin on purpose: every fixture calls the same library the CLI uses, and the library never
imports pytest.
"""

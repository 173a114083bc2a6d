"""The one exception type of the project.

Every error a user can cause (a bad name, a missing kernel, C that does not compile, a corrupt
``.ko``) is raised as :class:`HarnessError` with a message written for a person; the CLI prints
that message on one line and exits 2, so no user mistake ever ends in a traceback.
"""


class HarnessError(Exception):
    """An error whose message is meant for the person running the harness."""

    def __init__(self, message: str, *, details: str = "") -> None:
        super().__init__(message)
        self.message = message
        #: Longer evidence (compiler diagnostics, logs) shown below the one-line message.
        self.details = details

    def __str__(self) -> str:
        return self.message


class ToolMissing(HarnessError):
    """A host program (or file) kmh needs is not installed.

    Raised where the tool is first needed, so the one-line message names it, its Debian package
    and ``kmh doctor``, which checks everything at once instead of one failure per attempt.
    """

    def __init__(self, tool: str, package: str, purpose: str) -> None:
        super().__init__(
            f"{tool} is not installed ({purpose}); apt-get install {package}, "
            "or run `kmh doctor` to see everything this host is missing"
        )
        self.tool = tool
        self.package = package

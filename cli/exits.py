"""The command line's exit codes, and the error that ends a command with one."""

from __future__ import annotations

OK, FAILED, INVALID, NOT_FOUND, UNAVAILABLE = 0, 1, 2, 3, 4


class CommandError(Exception):
    """Ends the command with ``code`` after printing ``message`` to stderr."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code

"""The one exception base of charlens. Every error a user can cause (a bad flag, an unusable file, a
damaged checkpoint, an output that cannot be written) is a `CharlensError` subclass with a one-line
message; the CLIs catch the base, print the line and exit with status 2."""
from __future__ import annotations


class CharlensError(Exception):
    """A problem with the user's input or environment, explained in one line (no traceback)."""


class UsageError(CharlensError):
    """Bad command-line arguments, refused before any work."""


class CorpusError(CharlensError):
    """A corpus or text file that cannot be read or used."""

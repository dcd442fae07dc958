"""The project's exceptions, in one place.

Every error a user can cause (a bad option, a missing or corrupt file) is a `NextsongError`; the
command line prints its message on one line and exits with code 2. Anything else is a bug and
keeps its traceback.
"""


class NextsongError(Exception):
    """Base of the errors caused by input: the message names the value and what is valid."""


class ConfigError(NextsongError, ValueError):
    """A setting out of range or inconsistent with another (a preset, a size, a split)."""


class DataError(NextsongError):
    """An artifact on disk that is missing, corrupt, or does not match its manifest or schema."""

"""User-facing errors.

Every problem a user can cause (a malformed genome, a missing dataset file, a bad config)
raises a subclass of :class:`RwenasError` with a one-line message naming the problem. The CLI
prints that line and exits non-zero; it never shows a traceback for these.
"""


class RwenasError(Exception):
    """Base class of every error caused by user input rather than by a bug."""


class GenomeError(RwenasError, ValueError):
    """A genome or genotype is malformed or out of range."""


class DataError(RwenasError):
    """A dataset is missing, corrupt or inconsistent."""


class ConfigError(RwenasError, ValueError):
    """A configuration value or command-line option is invalid."""

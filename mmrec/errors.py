"""Exception types shared by every mmrec component.

The CLI maps them to exit codes: `InputError` (bad data, bad config, bad request) exits 2,
anything else exits 1. Services map `InputError` to HTTP 4xx. Messages name the offending
value and say what would be valid, so that a user can fix the input without reading code.
"""

from __future__ import annotations


class MmrecError(Exception):
    """Base class of mmrec's own errors."""


class InputError(MmrecError):
    """The caller gave something invalid (file, row, field, option). Exit code 2 / HTTP 4xx."""


class ConfigError(InputError):
    """A configuration file or override is invalid."""


class ArtifactError(MmrecError):
    """An artifact directory is missing, incomplete or does not match its manifest."""


class ArtifactNotFound(ArtifactError, InputError):
    """The requested artifact kind or version does not exist (user-fixable: build it first)."""

"""Typed exceptions raised on bad input.

The CLI turns each of them into a one-line message and a non-zero exit code, so
the message names the file, column or field that is wrong and what to do.
"""

from __future__ import annotations


class L1RecalError(Exception):
    """Base class of the errors the CLI reports without a traceback."""


class InputFileError(L1RecalError):
    """An input file is missing, unreadable, or does not have the expected layout."""


class ConfigError(L1RecalError):
    """A ``params.yaml`` section or a command-line setting is invalid."""


class ModelError(L1RecalError):
    """A saved model is missing, incomplete, or of an unknown kind."""

"""Exceptions whose message is a complete one-line explanation for the user.

The CLI prints ``error: <message>`` and exits with status 2 for any of them; anything else is a bug.
"""


class Bert4RecError(Exception):
    """Base class: the message names the file, column or value at fault."""


class DataError(Bert4RecError):
    """Input data is missing, malformed or empty after filtering."""


class DownloadError(Bert4RecError):
    """A release could not be fetched or failed its integrity check."""
